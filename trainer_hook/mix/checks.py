"""Checks on a resolved plan: repetition that is not allowed (an error) and the warnings.

* ``repeats``: a source would be read more than ``max_epochs`` times (default 4: up to about four
  epochs, repeated data trains almost as well as new data; Muennighoff et al. 2023, "Scaling
  Data-Constrained Language Models").
* ``too-small``: a source cannot fill one sample of ``seq_length`` tokens, or its share of the run
  is below one training sample.

``allow_repeat`` and ``max_epochs`` are inherited down the tree from the nearest entry that sets
them, else taken from ``[mix]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from trainer_hook.mix.spec import MixPlanError, MixPlanSpec

if TYPE_CHECKING:
    from trainer_hook.mix.resolve import PlannedChannel


@dataclass(frozen=True, kw_only=True, slots=True)
class MixWarning:
    """A plan that works but deserves a look."""

    kind: Literal["repeats", "too-small"]
    channel: str
    message: str


def fmt_amount(value: Fraction) -> str:
    """An exact amount for messages: integers with separators, else 6 significant digits."""
    return f"{float(value):,.6g}" if value.denominator != 1 else f"{value.numerator:,}"


def _setting(spec: MixPlanSpec, name: str, key: str) -> object:
    """A per-entry setting, inherited from the nearest ancestor that sets it."""
    parts = name.split("/")
    nodes = {n.name: n for n in spec.root.walk()}
    for depth in range(len(parts), 0, -1):
        value = getattr(nodes["/".join(parts[:depth])], key)
        if value is not None:
            return value
    return getattr(spec, key)


def check_plan(spec: MixPlanSpec, planned: Sequence[PlannedChannel]) -> list[MixWarning]:
    """Warnings for the resolved leaves; raises when a leaf repeats but may not."""
    warnings: list[MixWarning] = []
    seq = spec.seq_length
    for node in planned:
        if not node.is_leaf:
            continue
        epochs = node.epochs
        if epochs > 1 and not _setting(spec, node.name, "allow_repeat"):
            raise MixPlanError(
                f"{spec.source}: entry {node.name!r}: its budget of "
                f"{fmt_amount(node.tokens)} tokens ({fmt_amount(node.documents)} samples) is "
                f"{float(epochs):.3g} epochs of its data ({node.data.tokens} tokens, "
                f"{node.data.documents} samples) and repetition is not allowed; lower it "
                f"to at most {node.data.tokens} tokens / {node.data.documents} samples, add "
                "data, or set allow_repeat = true"
            )
        max_epochs = float(str(_setting(spec, node.name, "max_epochs")))
        if epochs > Fraction(str(max_epochs)):
            warnings.append(
                MixWarning(
                    kind="repeats",
                    channel=node.name,
                    message=(
                        f"{node.name}: repeats {float(epochs):.2f} times (more than "
                        f"max_epochs = {max_epochs:g}); add data or lower its share"
                    ),
                )
            )
        if node.data.tokens < seq + 1:
            warnings.append(
                MixWarning(
                    kind="too-small",
                    channel=node.name,
                    message=(
                        f"{node.name}: too small for its share: {node.data.tokens} tokens "
                        f"cannot fill one sample of seq_length {seq} without repeating "
                        "inside the sample; add data"
                    ),
                )
            )
        elif node.megatron_samples < 1:
            warnings.append(
                MixWarning(
                    kind="too-small",
                    channel=node.name,
                    message=(
                        f"{node.name}: its share is {float(node.megatron_samples):.2f} of one "
                        "training sample; it may get none: raise its budget or drop it"
                    ),
                )
            )
    return warnings
