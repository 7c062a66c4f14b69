"""Resolve a plan tree into planned tokens per channel and Megatron blend weights per prefix.

Megatron semantics (megatron-core 0.16.1, checked in ``blended_megatron_dataset_builder.py``,
``blended_dataset.py``, ``gpt_dataset.py``, ``utils.normalize``): the ``--data-path`` weights are
normalised, ``w_p = a_p / sum(a)``, and used as the probability of each training *sample* (one
sequence of ``seq_length`` tokens) coming from prefix ``p``; every GPTDataset builds its samples
from its own tokens, repeating epochs as needed. All samples have the same length, so the token
share equals the sample share, and

    w_p = planned_tokens_p / sum_q planned_tokens_q,    epochs_p = planned_tokens_p / tokens_p

with ``tokens_p`` the tokens of one epoch of the prefix (its train split). A budget in samples
(documents of the source) converts at the leaf's mean document length:
``planned_tokens = samples * tokens_leaf / documents_leaf``. All arithmetic is exact (fractions).

Budgets resolve top-down; each node's amount carries a unit, tokens or samples:
  * children with ``tokens``/``samples`` take that amount; children with ``ratio`` share what is
    left of the parent in proportion; children with no budget (all of them) share the parent in
    proportion to their data (documents for a samples budget, tokens for a tokens budget);
  * with no total in ``[mix]``, the total is the sum of the top-level absolute budgets, and an
    entry with no budget anywhere above it takes all its data once (Megatron's unweighted blend).
Prefixes of one leaf share the leaf's tokens in proportion to their tokens (equal epochs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from trainer_hook.mix.checks import MixWarning, check_plan, fmt_amount
from trainer_hook.mix.sizes import DataSize, read_data_size
from trainer_hook.mix.spec import ChannelSpec, MixPlanError, MixPlanSpec

Unit = Literal["tokens", "samples"]


@dataclass(frozen=True, slots=True)
class _Amount:
    value: Fraction
    unit: Unit


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedPrefix:
    """One ``--data-path`` entry."""

    prefix: str
    """The prefix exactly as printed in ``--data-path``."""
    channel: str
    """The leaf channel it belongs to."""
    data: DataSize
    tokens: Fraction
    """Planned tokens drawn from this prefix."""
    weight: Fraction
    """Normalised blend weight = planned token share."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedChannel:
    """One node of the resolved tree (leaves and inner nodes)."""

    name: str
    depth: int
    is_leaf: bool
    data: DataSize
    """Training data below this node (one epoch)."""
    tokens: Fraction
    """Planned tokens."""
    share: Fraction
    """Planned token share of the whole run."""
    documents: Fraction
    """Planned samples: documents of the sources drawn (with repeats)."""
    megatron_samples: Fraction
    """Planned Megatron training samples: tokens / seq_length."""

    @property
    def epochs(self) -> Fraction:
        """How many times the data repeats (planned tokens / tokens of one epoch)."""
        return self.tokens / self.data.tokens


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolvedPlan:
    spec: MixPlanSpec
    channels: tuple[PlannedChannel, ...]
    """Every node, depth first in plan order (root excluded)."""
    prefixes: tuple[PlannedPrefix, ...]
    """``--data-path`` entries in plan order."""
    warnings: tuple[MixWarning, ...]
    total_tokens: Fraction

    @property
    def train_samples(self) -> int:
        """Megatron ``--train-samples`` that consumes the planned total."""
        return math.ceil(self.total_tokens / self.spec.seq_length)

    def channel(self, name: str) -> PlannedChannel:
        for node in self.channels:
            if node.name == name:
                return node
        raise KeyError(name)


def resolve_plan(
    spec: MixPlanSpec,
    sizes: Mapping[str, DataSize] | None = None,
) -> ResolvedPlan:
    """Resolve ``spec``; ``sizes`` maps printed prefix -> size (None: read the ``.idx`` files)."""
    leaves = [n for n in spec.root.walk()[1:] if n.is_leaf]
    owner: dict[str, str] = {}
    data: dict[str, DataSize] = {}
    for leaf in leaves:
        if not leaf.prefixes:
            raise MixPlanError(
                f"{spec.source}: entry {leaf.name!r} is a leaf with no data; give it "
                'prefix = "path/to/name_text_document" or sub-entries, or remove it'
            )
        total = DataSize(documents=0, tokens=0)
        for raw in leaf.prefixes:
            prefix = spec.resolve_prefix(raw)
            if prefix in owner:
                raise MixPlanError(
                    f"{spec.source}: prefix {prefix!r} is listed under both {owner[prefix]!r} "
                    f"and {leaf.name!r}; a prefix belongs to exactly one channel"
                )
            owner[prefix] = leaf.name
            if sizes is not None and prefix not in sizes:
                raise MixPlanError(f"entry {leaf.name!r}: no size known for prefix {prefix!r}")
            data[prefix] = (
                sizes[prefix]
                if sizes is not None
                else read_data_size(prefix, train_fraction=spec.train_fraction, entry=leaf.name)
            )
            total = total + data[prefix]
        if total.tokens <= 0 or total.documents <= 0:
            raise MixPlanError(
                f"{spec.source}: entry {leaf.name!r} is a leaf with no data: its prefixes hold "
                f"no training documents (split {spec.split!r}); add data or remove the entry"
            )
    return _Resolver(spec, data).run()


class _Resolver:
    def __init__(self, spec: MixPlanSpec, data: dict[str, DataSize]) -> None:
        self.spec = spec
        self.data = data
        self.amounts: dict[str, _Amount] = {}

    def node_data(self, node: ChannelSpec) -> DataSize:
        total = DataSize(documents=0, tokens=0)
        for leaf in node.walk():
            for raw in leaf.prefixes:
                total = total + self.data[self.spec.resolve_prefix(raw)]
        return total

    def run(self) -> ResolvedPlan:
        root = self.spec.root
        self.assign(root, self.implied(root))
        leaf_tokens = {n.name: self.to_tokens(n) for n in root.walk()[1:] if n.is_leaf}
        total = sum(leaf_tokens.values(), Fraction(0))
        prefixes: list[PlannedPrefix] = []
        planned: list[PlannedChannel] = []
        for node in root.walk()[1:]:
            size = self.node_data(node)
            tokens = Fraction(0)
            documents = Fraction(0)
            for leaf in node.walk():
                if not leaf.is_leaf:
                    continue
                leaf_size = self.node_data(leaf)
                tokens += leaf_tokens[leaf.name]
                documents += leaf_tokens[leaf.name] * leaf_size.documents / leaf_size.tokens
            planned.append(
                PlannedChannel(
                    name=node.name,
                    depth=node.name.count("/"),
                    is_leaf=node.is_leaf,
                    data=size,
                    tokens=tokens,
                    share=tokens / total,
                    documents=documents,
                    megatron_samples=tokens / self.spec.seq_length,
                )
            )
            if node.is_leaf:
                for raw in node.prefixes:
                    prefix = self.spec.resolve_prefix(raw)
                    part = leaf_tokens[node.name] * self.data[prefix].tokens / size.tokens
                    prefixes.append(
                        PlannedPrefix(
                            prefix=prefix,
                            channel=node.name,
                            data=self.data[prefix],
                            tokens=part,
                            weight=part / total,
                        )
                    )
        warnings = check_plan(self.spec, planned)
        return ResolvedPlan(
            spec=self.spec,
            channels=tuple(planned),
            prefixes=tuple(p for p in prefixes if p.tokens > 0),
            warnings=tuple(warnings),
            total_tokens=total,
        )

    # ---- budgets -------------------------------------------------------------------------
    def own(self, node: ChannelSpec) -> _Amount | None:
        if node.tokens is not None:
            return _Amount(node.tokens, "tokens")
        if node.samples is not None:
            return _Amount(node.samples, "samples")
        return None

    def implied(self, node: ChannelSpec) -> _Amount:
        """The amount of a node whose parent has no budget to split (bottom-up)."""
        own = self.own(node)
        if own is not None:
            return own
        if node.ratio is not None:
            raise MixPlanError(
                f"{self.spec.source}: ratios do not resolve: entry {node.name!r} has ratio "
                f"{node.ratio} but no budget above it to share; give [mix] tokens = N or "
                "samples = N, or an absolute tokens/samples to an entry above it"
            )
        if node.is_leaf:
            return _Amount(Fraction(self.node_data(node).tokens), "tokens")
        parts = [self.implied(child) for child in node.children]
        units = {p.unit for p in parts}
        if len(units) > 1:
            raise MixPlanError(
                f"{self.spec.source}: ratios do not resolve: the entries under "
                f"{node.name or '[channels]'!r} mix tokens and samples budgets with no total to "
                "relate them; give the parent a total, or use one unit"
            )
        return _Amount(sum((p.value for p in parts), Fraction(0)), parts[0].unit)

    def assign(self, node: ChannelSpec, amount: _Amount) -> None:
        self.amounts[node.name] = amount
        if node.is_leaf:
            return
        where = repr(node.name) if node.name else "[channels]"
        kids = node.children
        absolute = [(k, a) for k in kids if (a := self.own(k)) is not None]
        ratios = [k for k in kids if k.ratio is not None]
        bare = [k for k in kids if self.own(k) is None and k.ratio is None]
        if bare and (absolute or ratios):
            raise MixPlanError(
                f"{self.spec.source}: ratios do not resolve under {where}: "
                f"{', '.join(repr(k.name) for k in bare)} "
                f"{'has' if len(bare) == 1 else 'have'} no budget while "
                f"{'their' if len(bare) > 1 else 'its'} siblings have one; give "
                f"{'each' if len(bare) > 1 else 'it'} a ratio (or tokens/samples)"
            )
        if bare:
            weights = [self.natural(k, amount.unit) for k in kids]
            for kid, weight in zip(kids, weights, strict=True):
                self.assign(kid, _Amount(amount.value * weight / sum(weights), amount.unit))
            return
        for kid, own in absolute:
            if own.unit != amount.unit:
                raise MixPlanError(
                    f"{self.spec.source}: ratios do not resolve under {where}: its budget is in "
                    f"{amount.unit} but {kid.name!r} gives {own.unit}; use one unit among "
                    "siblings and their parent, or give ratios"
                )
        rest = amount.value - sum((a.value for _, a in absolute), Fraction(0))
        if ratios and rest <= 0:
            raise MixPlanError(
                f"{self.spec.source}: ratios do not resolve under {where}: the absolute budgets "
                f"of its entries use all of its {fmt_amount(amount.value)} {amount.unit}, leaving "
                f"nothing for {', '.join(repr(k.name) for k in ratios)}; lower them or raise "
                "the parent's budget"
            )
        if not ratios and rest != 0:
            total = fmt_amount(amount.value - rest)
            raise MixPlanError(
                f"{self.spec.source}: budgets do not add up under {where}: its entries sum to "
                f"{total} {amount.unit} but it has {fmt_amount(amount.value)}; make them sum to "
                "the parent, or give ratios instead"
            )
        ratio_sum = sum((k.ratio for k in ratios if k.ratio is not None), Fraction(0))
        for kid in kids:
            kid_own = self.own(kid)
            if kid_own is not None:
                self.assign(kid, kid_own)
            elif kid.ratio is not None:
                self.assign(kid, _Amount(rest * kid.ratio / ratio_sum, amount.unit))

    def natural(self, node: ChannelSpec, unit: Unit) -> Fraction:
        size = self.node_data(node)
        return Fraction(size.documents if unit == "samples" else size.tokens)

    def to_tokens(self, leaf: ChannelSpec) -> Fraction:
        amount = self.amounts[leaf.name]
        if amount.unit == "tokens":
            return amount.value
        size = self.node_data(leaf)
        return amount.value * size.tokens / size.documents
