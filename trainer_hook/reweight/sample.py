"""Sample-level loss reweighting (Sow et al., ICLR 2025), computed on device without host sync.

Per global micro-batch of N samples (all data-parallel ranks; CP partial sums completed first):

1. ``l_i`` = mean token loss of sample i (detached);
2. optional robust clipping of ``l`` to ``[lo, hi]`` (``quantile``: the q and 1-q quantiles;
   ``mad``: median -/+ k * 1.4826 * MAD) so that one outlier cannot take the batch's weight;
3. min-max normalisation ``h_i = (2 l_i - l_max - l_min) / (l_max - l_min)`` in [-1, 1];
4. a strategy ``f``: ``linupper`` min(h+1, 1), ``quadratic`` 1-h^2, ``extremes`` |h|, ``uniform`` 0;
5. ``w = softmax(f / r)`` over the N samples (``r`` = temperature; ratio of weights <= e^(1/r));
6. every token of sample i gets the factor ``N * w_i``; so the loss for backward is
   ``sum_i N w_i S_i`` where ``S_i`` is the sample's token-loss sum, and uniform weights give
   the ordinary token-weighted sum.

Exactness: the ``uniform`` strategy, the uniform warm-up and a degenerate batch (l_max == l_min,
or no sample) use the factor 1 exactly, so the ordinary loss and gradient are reproduced bit for
bit. Samples with a non-finite loss get h = 0 and are left out of l_min/l_max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

SampleStrategy = Literal["uniform", "linupper", "quadratic", "extremes"]
RobustNorm = Literal["minmax", "quantile", "mad"]
SampleWarmup = Literal["uniform", "anneal"]


@dataclass(kw_only=True, slots=True)
class SampleReweightConfig:
    """Sample-level reweighting settings."""

    strategy: SampleStrategy = "linupper"
    """Weighting function of the normalised loss h: linupper, quadratic, extremes or uniform."""
    temperature: float = 0.5
    """r in softmax(f / r); small = strong reweighting, 100 = nearly uniform."""
    warmup_steps: int = 0
    """Optimizer steps of warm-up before the full strength applies."""
    warmup: SampleWarmup = "uniform"
    """uniform: factor 1 (and no collective) during warm-up; anneal: r goes linearly from
    ``warmup_temperature`` to ``temperature`` over the warm-up."""
    warmup_temperature: float = 100.0
    """Starting r of the ``anneal`` warm-up."""
    normalization: RobustNorm = "minmax"
    """minmax (as the paper), or a robust clipping first: quantile or mad."""
    quantile: float = 0.05
    """q of the ``quantile`` normalisation: losses are clipped to [q, 1-q] quantiles."""
    mad_k: float = 3.0
    """k of the ``mad`` normalisation: losses are clipped to median +/- k * 1.4826 * MAD."""

    def __post_init__(self) -> None:
        if self.strategy not in ("uniform", "linupper", "quadratic", "extremes"):
            raise ValueError(
                f"SampleReweightConfig.strategy={self.strategy!r} is unknown; "
                "use 'uniform', 'linupper', 'quadratic' or 'extremes'"
            )
        if self.warmup not in ("uniform", "anneal"):
            raise ValueError(
                f"SampleReweightConfig.warmup={self.warmup!r} is unknown; use 'uniform' or 'anneal'"
            )
        if self.normalization not in ("minmax", "quantile", "mad"):
            raise ValueError(
                f"SampleReweightConfig.normalization={self.normalization!r} is unknown; "
                "use 'minmax', 'quantile' or 'mad'"
            )
        for name in ("temperature", "warmup_temperature", "mad_k"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(
                    f"SampleReweightConfig.{name}={value!r} must be a finite number > 0"
                )
        if not 0.0 <= self.quantile < 0.5:
            raise ValueError(
                f"SampleReweightConfig.quantile={self.quantile!r} must be in [0, 0.5), e.g. 0.05"
            )
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(
                f"SampleReweightConfig.warmup_steps={self.warmup_steps!r} must be an int >= 0"
            )

    def active(self, step: int) -> bool:
        """Whether the factors differ from 1 at optimizer step ``step`` (0-based)."""
        if self.strategy == "uniform":
            return False
        return not (self.warmup == "uniform" and step < self.warmup_steps)

    def temperature_at(self, step: int) -> float:
        """r at optimizer step ``step``: linear from warmup_temperature during an anneal warm-up."""
        if self.warmup == "anneal" and step < self.warmup_steps:
            frac = step / self.warmup_steps
            return self.warmup_temperature + (self.temperature - self.warmup_temperature) * frac
        return self.temperature


def _clip_robust(loss: torch.Tensor, config: SampleReweightConfig) -> torch.Tensor:
    """Clip ``loss`` (NaN = missing) to robust bounds; NaN stays NaN."""
    if config.normalization == "quantile" and config.quantile > 0:
        lo = torch.nanquantile(loss, config.quantile)
        hi = torch.nanquantile(loss, 1.0 - config.quantile)
    elif config.normalization == "mad":
        med = torch.nanmedian(loss)
        mad = torch.nanmedian((loss - med).abs())
        lo = med - config.mad_k * 1.4826 * mad
        hi = med + config.mad_k * 1.4826 * mad
    else:
        return loss
    return torch.minimum(torch.maximum(loss, lo), hi)


def strategy_values(h: torch.Tensor, strategy: SampleStrategy) -> torch.Tensor:
    """f(h) of the strategy, for h in [-1, 1]."""
    if strategy == "linupper":
        return torch.clamp(h + 1.0, max=1.0)
    if strategy == "quadratic":
        return 1.0 - h * h
    if strategy == "extremes":
        return h.abs()
    return torch.zeros_like(h)


def sample_factors(
    sample_loss: torch.Tensor, present: torch.Tensor, config: SampleReweightConfig, step: int
) -> torch.Tensor:
    """Per-sample loss factors ``N * w_i`` (1 for empty slots); see the module docstring.

    ``sample_loss`` ``[S]``: mean token loss of each slot; ``present`` ``[S]`` bool: the slot
    holds a sample (>= 1 unmasked token). Runs on the tensors' device with no host sync.
    """
    dtype = sample_loss.dtype
    nan = torch.tensor(float("nan"), dtype=dtype, device=sample_loss.device)
    usable = present & torch.isfinite(sample_loss)
    loss = _clip_robust(torch.where(usable, sample_loss, nan), config)
    inf = torch.tensor(float("inf"), dtype=dtype, device=sample_loss.device)
    lmax = torch.where(usable, loss, -inf).max()
    lmin = torch.where(usable, loss, inf).min()
    spread = lmax - lmin
    ok = spread > 0  # False also when no usable sample (inf - inf = nan)
    h = torch.where(usable & ok, (2.0 * loss - lmax - lmin) / torch.where(ok, spread, 1.0), 0.0)
    f = strategy_values(h, config.strategy)
    logits = torch.where(present, f / config.temperature_at(step), -inf)
    w = torch.softmax(logits, dim=0)
    n = present.to(dtype).sum()
    one = torch.ones((), dtype=dtype, device=sample_loss.device)
    return torch.where(present & ok, n * w, one)
