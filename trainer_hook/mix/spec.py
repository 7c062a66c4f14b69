"""The data-mix plan as data: a tree of channels with budgets, and the plan-wide settings.

A node's budget is exactly one of: ``ratio`` (relative to its siblings), ``tokens`` or ``samples``
(absolute), or nothing (its parent splits in proportion to the data each child holds). Leaves hold
Megatron dataset prefixes; inner nodes hold children. "samples" are documents (rows) of the source,
the sequences of its ``.idx`` file, as teams count SFT samples, not Megatron's packed sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path


class MixPlanError(ValueError):
    """A plan that cannot be resolved; the message names the entry and the fix."""


@dataclass(kw_only=True, slots=True)
class ChannelSpec:
    """One entry of the plan tree."""

    name: str
    """Full channel name with ``/`` for hierarchy (``finance/slow/credit``); ``""`` for the root."""
    ratio: Fraction | None = None
    """Share relative to the siblings that also give a ratio."""
    tokens: Fraction | None = None
    """Absolute budget in tokens."""
    samples: Fraction | None = None
    """Absolute budget in samples (documents of the source)."""
    prefixes: tuple[str, ...] = ()
    """Megatron dataset prefixes (``path/name`` of ``name.bin`` + ``name.idx``); leaves only."""
    children: tuple[ChannelSpec, ...] = ()
    """Sub-channels, in file order (which is the ``--data-path`` order)."""
    allow_repeat: bool | None = None
    """Override of the plan's ``allow_repeat`` for this subtree (None: inherit)."""
    max_epochs: float | None = None
    """Override of the plan's ``max_epochs`` warning threshold for this subtree (None: inherit)."""

    def __post_init__(self) -> None:
        where = f"entry {self.name or '[mix]'!r}"
        given = [k for k in ("ratio", "tokens", "samples") if getattr(self, k) is not None]
        if len(given) > 1:
            raise MixPlanError(
                f"{where} gives both {given[0]} and {given[1]}; keep exactly one budget "
                "(ratio relative to siblings, or tokens/samples absolute)"
            )
        for key in given:
            if getattr(self, key) <= 0:
                raise MixPlanError(
                    f"{where}: {key} must be > 0, got {float(getattr(self, key))}; "
                    "remove the entry to leave it out of the mix"
                )
        if self.prefixes and self.children:
            raise MixPlanError(
                f"{where} has both a prefix and sub-entries "
                f"({', '.join(c.name for c in self.children)}); move its prefix into a "
                f"sub-entry such as {self.name + '/rest'!r}"
            )
        if not self.name and self.ratio is not None:
            raise MixPlanError("[mix] cannot have a ratio: give tokens or samples, or nothing")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise MixPlanError(f"{where}: max_epochs must be > 0, got {self.max_epochs}")

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def walk(self) -> list[ChannelSpec]:
        """This node and all below it, depth first, in file order."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


@dataclass(kw_only=True, slots=True)
class MixPlanSpec:
    """A whole plan: the channel tree plus how Megatron will read the data."""

    root: ChannelSpec
    """The ``[mix]`` node: its tokens/samples are the total budget; its children the channels."""
    seq_length: int
    """Megatron ``--seq-length``: tokens per training sample."""
    split: str = "100,0,0"
    """Megatron ``--split``; only the train fraction (the first documents) counts as data."""
    max_epochs: float = 4.0
    """Warn when a source would repeat more than this many times."""
    allow_repeat: bool = True
    """When false, a budget larger than its data is an error instead of a repeat."""
    data_root: Path = field(default_factory=Path)
    """Relative prefixes are resolved against this folder (default: the plan file's folder)."""
    source: str = "<plan>"
    """Where the plan came from, for messages."""

    def __post_init__(self) -> None:
        if self.seq_length <= 0:
            raise MixPlanError(
                f"{self.source}: [mix] seq_length must be a positive integer (Megatron's "
                f"--seq-length), got {self.seq_length}"
            )
        if self.max_epochs <= 0:
            raise MixPlanError(f"{self.source}: [mix] max_epochs must be > 0")
        train_fraction(self.split, self.source)  # raises on a bad --split
        if not self.root.children:
            raise MixPlanError(
                f"{self.source}: the plan has no channels; add a [channels.NAME] table "
                "with a prefix"
            )

    @property
    def train_fraction(self) -> float:
        """Train share of Megatron's ``--split`` (``"969,30,1"`` -> 0.969)."""
        return train_fraction(self.split, self.source)

    def resolve_prefix(self, prefix: str) -> str:
        """A prefix as Megatron will see it: absolute, relative ones taken from ``data_root``."""
        path = Path(prefix).expanduser()
        return str(path if path.is_absolute() else (self.data_root / path))


def train_fraction(split: str, source: str = "<plan>") -> float:
    """Parse ``--split`` the way megatron-core does (numbers, normalised); return the train part."""
    import re

    parts = [float(p) for p in re.findall(r"[.0-9]+", split)]
    if not parts or len(parts) > 3 or sum(parts) <= 0:
        raise MixPlanError(
            f"{source}: [mix] split {split!r} is not Megatron's --split form; write e.g. "
            "'969,30,1' or '100,0,0'"
        )
    if parts[0] <= 0:
        raise MixPlanError(f"{source}: [mix] split {split!r} leaves no training data")
    return parts[0] / sum(parts)
