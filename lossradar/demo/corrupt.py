"""Corrupting one channel's data from a chosen step on (``--corrupt finance@150:shuffle``).

Kinds, applied to every sample of the channel in the batch (``dataset_id`` selects them):

- ``shuffle``: the sample's tokens in a random order (word salad, same unigram statistics);
- ``language``: a window of text in a language absent from the blend;
- ``duplicate``: the sample's first 16 tokens repeated over the whole sequence (massively
  duplicated documents);
- ``empty``: empty documents: only EOD tokens and no loss-bearing token (the channel's
  ``tokens`` fall to 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

KINDS: tuple[str, ...] = ("shuffle", "language", "duplicate", "empty")
_SPEC = re.compile(r"^(?P<channel>[^@:\s]+)@(?P<step>\d+):(?P<kind>[a-z]+)$")
DUPLICATE_PERIOD = 16


@dataclass(kw_only=True, slots=True, frozen=True)
class Corruption:
    """Corrupt ``channel`` with ``kind`` from ``step`` (inclusive) on."""

    channel: str
    """the channel name, e.g. ``finance``."""
    step: int
    """the first corrupted step (0-based)."""
    kind: str
    """one of :data:`KINDS`."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            kinds = ", ".join(KINDS)
            raise ValueError(f"unknown corruption kind {self.kind!r}; use one of {kinds}")
        if self.step < 0:
            raise ValueError(f"corruption step must be >= 0, got {self.step}")

    @classmethod
    def parse(cls, spec: str, channels: Sequence[str]) -> Corruption:
        """``"finance@150:shuffle"`` -> Corruption; errors name the problem and the fix."""
        match = _SPEC.match(spec.strip())
        if not match:
            raise ValueError(
                f"bad corruption spec {spec!r}; write CHANNEL@STEP:KIND, e.g. finance@150:shuffle"
            )
        if match["channel"] not in channels:
            raise ValueError(
                f"unknown channel {match['channel']!r} in {spec!r}; channels: {', '.join(channels)}"
            )
        return cls(channel=match["channel"], step=int(match["step"]), kind=match["kind"])

    def spec(self) -> str:
        return f"{self.channel}@{self.step}:{self.kind}"


def corrupt_batch(
    batch: dict[str, torch.Tensor],
    *,
    channel_id: int,
    kind: str,
    eod: int,
    foreign_tokens: np.ndarray,
    rng: np.random.Generator,
) -> int:
    """Corrupt, in place, the samples of ``channel_id`` in ``batch``; returns how many."""
    rows = (batch["dataset_id"] == channel_id).nonzero().flatten().tolist()
    tokens, labels, mask = batch["tokens"], batch["labels"], batch["loss_mask"]
    length = tokens.shape[1]
    for r in rows:
        stream = torch.cat([tokens[r], labels[r, -1:]])  # the sample's length+1 tokens
        if kind == "shuffle":
            stream = stream[torch.from_numpy(rng.permutation(length + 1))]
        elif kind == "language":
            start = int(rng.integers(0, len(foreign_tokens) - length - 1))
            stream = torch.from_numpy(foreign_tokens[start : start + length + 1].copy())
        elif kind == "duplicate":
            stream = stream[:DUPLICATE_PERIOD].repeat(length // DUPLICATE_PERIOD + 1)[: length + 1]
        elif kind == "empty":
            stream = torch.full((length + 1,), eod, dtype=tokens.dtype)
            mask[r] = 0.0
        else:  # pragma: no cover - Corruption validates kinds
            raise ValueError(f"unknown corruption kind {kind!r}")
        tokens[r] = stream[:-1]
        labels[r] = stream[1:]
    return len(rows)
