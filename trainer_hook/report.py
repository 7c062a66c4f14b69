"""The reduced statistics of one optimizer step, and their conversion to metric dicts.

The report holds device tensors; the only host/device sync is in :meth:`StepReport.host_values`
(one ``.tolist()``), called by ``run_metrics()``/``channel_metrics()`` on logging steps only.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import torch

logger = logging.getLogger("trainer_hook")

# Columns of the per-channel statistics [C+1, 5]; row C is the overflow bucket.
LOSS, TOKENS, NONFINITE, SAMPLE_MEAN_SUM, SAMPLES = 0, 1, 2, 3, 4
NUM_FIELDS = 5
# Entries of the run-level extras [4]. The sample-factor range is written by group rank 0 only
# (every rank computed the same global factors), so the SUM all-reduce leaves it unchanged.
WEIGHTED_LOSS, SEGMENT_OVERFLOW, SAMPLE_FACTOR_MAX, SAMPLE_FACTOR_MIN = 0, 1, 2, 3
NUM_EXTRAS = 4


class ChannelIdOutOfRangeWarning(UserWarning):
    """Tokens carried a channel id outside ``[0, len(channels))``; they were not attributed."""


class SegmentIdOutOfRangeWarning(UserWarning):
    """Tokens belonged to a document that did not fit the per-row sample slots."""


class StepReport:
    """Reduced statistics of one optimizer step (identical on every rank of the group)."""

    __slots__ = (
        "_host",
        "channels",
        "clipped",
        "extras",
        "reweighted",
        "sample_reweighted",
        "stats",
        "step",
        "weights",
    )

    def __init__(
        self,
        *,
        step: int,
        channels: Sequence[str],
        stats: torch.Tensor,
        extras: torch.Tensor,
        weights: torch.Tensor,
        reweighted: bool,
        sample_reweighted: bool = False,
        clipped: torch.Tensor | None = None,
    ) -> None:
        self.step = step
        """0-based index of the optimizer step."""
        self.channels = list(channels)
        self.stats = stats
        """[C+1, 5] device tensor: loss sum, tokens, non-finite tokens, sum of sample means,
        samples; row C is the overflow bucket."""
        self.extras = extras
        """[4] device tensor: reweighted loss sum, segment-overflow tokens, largest and smallest
        sample factor of the step."""
        self.weights = weights
        """[C] device tensor: the channel weights in force during this step."""
        self.clipped = clipped
        """[C] device tensor (channel reweighting on): 1 where a bound (max_ratio, floor, ceiling,
        target) moved the weight in force when it was computed, else 0; None without it."""
        self.reweighted = reweighted
        self.sample_reweighted = sample_reweighted
        """Whether sample factors were computed in this step (after a uniform warm-up)."""
        self._host: list[float] | None = None

    def host_values(self) -> list[float]:
        """All numbers on the host; the step's only host/device sync (cached)."""
        if self._host is None:
            parts = [self.stats.reshape(-1), self.extras, self.weights.to(self.stats)]
            if self.clipped is not None:
                parts.append(self.clipped.to(self.stats))
            flat = torch.cat(parts)
            self._host = flat.tolist()  # HOST SYNC: logging step only
            self._warn()
        return self._host

    def _row(self, c: int) -> list[float]:
        values = self.host_values()
        return values[c * NUM_FIELDS : (c + 1) * NUM_FIELDS]

    def _extra(self, i: int) -> float:
        return self.host_values()[(len(self.channels) + 1) * NUM_FIELDS + i]

    def _warn(self) -> None:
        overflow = self._row(len(self.channels))[TOKENS]
        if overflow > 0:
            msg = (
                f"step {self.step}: {int(overflow)} tokens had a channel id outside "
                f"[0, {len(self.channels)}) and were counted as overflow_tokens, not in any "
                f"channel; pass channels= with one name per data-path entry (ids are indices)"
            )
            logger.warning(msg)
            warnings.warn(ChannelIdOutOfRangeWarning(msg), stacklevel=5)
        bad_segments = self._extra(SEGMENT_OVERFLOW)
        if bad_segments > 0:
            msg = (
                f"step {self.step}: {int(bad_segments)} tokens belonged to documents beyond "
                "max_segments_per_row (or, under CP, had a segment id outside [0, that)); they "
                "count in their channel but form no sample. Under CP segment ids must be each "
                "document's index inside the full (unsliced) row"
            )
            logger.warning(msg)
            warnings.warn(SegmentIdOutOfRangeWarning(msg), stacklevel=5)

    def run_metrics(self) -> dict[str, float]:
        """Run-level metrics: lm_loss, tokens_total, overflow_tokens, and extras.

        ``lm_loss`` is the plain token-weighted loss over every unmasked token of the global batch
        (overflow tokens included): the number Megatron logs as ``lm loss`` without reweighting.
        ``lm_loss_reweighted`` (reweighting configured) is the loss that was back-propagated,
        divided by the same token count. ``lm_loss`` is omitted when the step had no tokens.
        ``sample_factor_max``/``sample_factor_min``: the range of the factors N*w_i over the
        step's samples, when sample-level reweighting ran.
        """
        rows = [self._row(c) for c in range(len(self.channels) + 1)]
        loss = math.fsum(r[LOSS] for r in rows)
        tokens = math.fsum(r[TOKENS] for r in rows)
        out: dict[str, float] = {
            "tokens_total": tokens,
            "overflow_tokens": rows[-1][TOKENS],
            "nonfinite_tokens": math.fsum(r[NONFINITE] for r in rows),
        }
        if tokens > 0:
            out["lm_loss"] = loss / tokens
            if self.reweighted:
                out["lm_loss_reweighted"] = self._extra(WEIGHTED_LOSS) / tokens
        bad_segments = self._extra(SEGMENT_OVERFLOW)
        if bad_segments > 0:
            out["segment_overflow_tokens"] = bad_segments
        if self.sample_reweighted and tokens > 0:
            out["sample_factor_max"] = self._extra(SAMPLE_FACTOR_MAX)
            out["sample_factor_min"] = self._extra(SAMPLE_FACTOR_MIN)
        return out

    def channel_metrics(self) -> dict[str, dict[str, float]]:
        """Per-channel metrics; channels without tokens in the step are omitted (absent).

        ``loss`` = loss sum / tokens; ``loss_sample_mean`` = mean of the samples' mean losses;
        ``token_share`` = tokens / tokens of all channels (overflow excluded); ``weight`` = the
        channel weight in force; ``weight_clipped`` (channel reweighting on) = 1.0 when a bound
        of the reweighting moved that weight, else 0.0; ``nonfinite_tokens`` appears when > 0.
        """
        c = len(self.channels)
        rows = [self._row(i) for i in range(c)]
        start = (c + 1) * NUM_FIELDS + NUM_EXTRAS
        weights = self.host_values()[start : start + c]
        clipped = self.host_values()[start + c :] if self.clipped is not None else None
        total = math.fsum(r[TOKENS] for r in rows)
        out: dict[str, dict[str, float]] = {}
        for i, (name, row, weight) in enumerate(zip(self.channels, rows, weights, strict=True)):
            if row[TOKENS] <= 0:
                continue
            metrics = {
                "loss": row[LOSS] / row[TOKENS],
                "loss_sample_mean": (
                    row[SAMPLE_MEAN_SUM] / row[SAMPLES] if row[SAMPLES] > 0 else math.nan
                ),
                "tokens": row[TOKENS],
                "samples": row[SAMPLES],
                "token_share": row[TOKENS] / total,
                "weight": weight,
            }
            if clipped is not None:
                metrics["weight_clipped"] = clipped[i]
            if row[NONFINITE] > 0:
                metrics["nonfinite_tokens"] = row[NONFINITE]
            out[name] = metrics
        return out
