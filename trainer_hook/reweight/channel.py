"""Channel-level loss reweighting from running per-channel statistics (device tensors, no sync).

State per channel c, updated once per optimizer step from the *reduced* channel loss
``x_c = loss_sum_c / tokens_c`` (a channel without tokens, or with a non-finite loss, is not
observed that step and keeps its state):

- ``ema_c <- beta * ema_c + (1 - beta) * x_c``; bias-corrected ``m_c = ema_c / (1 - beta^n_c)``
  with ``n_c`` the number of observations;
- ``init_c`` = mean of the first ``init_steps`` observations;
- progress ``p_c = m_c / init_c`` (1 = nothing learned yet, < 1 = learned);
- ``s_c``: bias-corrected EMA of the channel's token share (the normalisation weights).

Strategies give raw weights ``u_c`` (unobserved channels: 1):

- ``progress``: ``u_c = p_c^(1/T) * (m_c / mbar)^(loss_coef/T)`` with ``mbar = sum_c s_c m_c``:
  channels that made little progress (or have a high loss) go up, learned ones go down.
- ``doremi`` (Xie et al., 2023, loss-reweighting form): domain weights ``alpha`` start at the
  sampling prior ``pi`` (``prior``, or the observed token shares); each step
  ``alpha <- normalize(alpha * exp(eta * max(x_c - ref_c, 0)))``, then
  ``alpha <- (1 - eps) alpha + eps / C``; the loss weight is the importance ratio
  ``u_c = alpha_c / pi_c`` (the data is sampled with pi, DoReMi wants it sampled with alpha).
  ``ref_c`` is ``reference_losses`` or the channel's initial loss.

Post-processing, in order: normalise (``sum_c s_c u_c = 1``: the token-share weighted mean weight
is 1, so the loss scale stays that of the plain loss), smooth toward uniform
``u <- (1 - lam) u + lam``, bound ``max/min <= max_ratio`` (raise the small ones), normalise
again, then per-channel ``floor``/``ceiling`` and ``targets`` (never below 1). The last three may
move the mean away from exactly 1; that is the price of hard limits. ``clipped_c`` (1 or 0)
records whether one of these bounds bound channel c in the last update: the ``max_ratio``
raise (``u_c < max(u) / max_ratio``), the floor (``u_c < floor_c``), the ceiling
(``u_c > ceiling_c``) or a target's 1 (``u_c < 1``), each judged on the value it was applied
to; a value already at a bound is not clipped. During the first
``warmup_steps`` steps the weights stay 1 (statistics are still gathered). Weights computed at
the end of step k are applied during step k+1, identically on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

ChannelStrategy = Literal["progress", "doremi"]


@dataclass(kw_only=True, slots=True)
class ChannelReweightConfig:
    """Channel-level reweighting settings."""

    strategy: ChannelStrategy = "progress"
    """progress (hard channels up, learned ones down) or doremi (exponentiated excess loss)."""
    ema_beta: float = 0.9
    """Decay of the per-channel loss and token-share EMAs, in [0, 1)."""
    init_steps: int = 1
    """The initial loss of a channel is the mean of its first init_steps observations."""
    temperature: float = 0.5
    """T of the progress strategy: u = p^(1/T); smaller = stronger."""
    loss_coef: float = 0.0
    """Weight of the relative loss level in the progress strategy (0 = progress only)."""
    eta: float = 1.0
    """DoReMi step size (0 keeps alpha at the prior: importance weights only)."""
    doremi_smoothing: float = 1e-3
    """DoReMi's eps: alpha is mixed with uniform by this much each step."""
    prior: Sequence[float] | None = None
    """Sampling prior per channel (the blend's target token shares); default: observed shares."""
    reference_losses: Sequence[float] | None = None
    """DoReMi reference loss per channel; default: each channel's initial loss."""
    smoothing: float = 0.1
    """lam: weights are mixed with uniform (1) by this much."""
    max_ratio: float = 5.0
    """Bound on max(weight) / min(weight)."""
    warmup_steps: int = 0
    """Optimizer steps with weights fixed at 1."""
    floor: Mapping[str, float] = field(default_factory=dict)
    """Per-channel lower bound on the weight, by channel name."""
    ceiling: Mapping[str, float] = field(default_factory=dict)
    """Per-channel upper bound on the weight, by channel name."""
    targets: Sequence[str] = ()
    """Channels (by name) that are never weighted below 1."""

    def __post_init__(self) -> None:
        if self.strategy not in ("progress", "doremi"):
            raise ValueError(
                f"ChannelReweightConfig.strategy={self.strategy!r} is unknown; "
                "use 'progress' or 'doremi'"
            )
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"ChannelReweightConfig.ema_beta={self.ema_beta!r} must be in [0, 1)")
        if not (isinstance(self.eta, (int, float)) and math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"ChannelReweightConfig.eta={self.eta!r} must be a number >= 0")
        for name in ("temperature", "max_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ChannelReweightConfig.{name}={value!r} must be a number > 0")
        if self.max_ratio < 1:
            raise ValueError(f"ChannelReweightConfig.max_ratio={self.max_ratio!r} must be >= 1")
        for name in ("smoothing", "doremi_smoothing"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ChannelReweightConfig.{name}={value!r} must be in [0, 1]")
        if not isinstance(self.loss_coef, (int, float)) or not math.isfinite(self.loss_coef):
            raise ValueError(f"ChannelReweightConfig.loss_coef={self.loss_coef!r} must be finite")
        for name in ("init_steps", "warmup_steps"):
            value = getattr(self, name)
            minimum = 1 if name == "init_steps" else 0
            if not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"ChannelReweightConfig.{name}={value!r} must be an int >= {minimum}"
                )
        for name in ("prior", "reference_losses"):
            values = getattr(self, name)
            if values is not None and any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(
                    f"ChannelReweightConfig.{name} must hold finite numbers >= 0, got {values!r}"
                )
        for name in ("floor", "ceiling"):
            for ch, value in getattr(self, name).items():
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(
                        f"ChannelReweightConfig.{name}[{ch!r}]={value!r} must be a number > 0"
                    )
        for ch, lo in self.floor.items():
            hi = self.ceiling.get(ch)
            if hi is not None and hi < lo:
                raise ValueError(
                    f"ChannelReweightConfig: floor[{ch!r}]={lo} > ceiling[{ch!r}]={hi}; "
                    "make the floor <= the ceiling"
                )
        if isinstance(self.targets, str):
            raise ValueError(
                "ChannelReweightConfig.targets must be a list of channel names, not one string"
            )

    def check_channels(self, channels: Sequence[str]) -> None:
        """Raise when a name or a per-channel list does not match ``channels``."""
        known = set(channels)
        for name, names in (
            ("floor", list(self.floor)),
            ("ceiling", list(self.ceiling)),
            ("targets", list(self.targets)),
        ):
            unknown = sorted(set(names) - known)
            if unknown:
                raise ValueError(
                    f"ChannelReweightConfig.{name} names unknown channels {unknown}; "
                    f"known channels: {list(channels)}"
                )
        for name in ("prior", "reference_losses"):
            values = getattr(self, name)
            if values is not None and len(values) != len(channels):
                raise ValueError(
                    f"ChannelReweightConfig.{name} has {len(values)} values for "
                    f"{len(channels)} channels; give one value per channel, in channel order"
                )
        if self.prior is not None and sum(self.prior) <= 0:
            raise ValueError("ChannelReweightConfig.prior must have a positive sum")


_STATE_KEYS = ("ema", "n_obs", "init_sum", "init_n", "share_ema", "alpha", "weights", "clipped")


class ChannelReweighter:
    """Running per-channel statistics and the weights derived from them (see module docstring)."""

    def __init__(
        self,
        config: ChannelReweightConfig,
        channels: Sequence[str],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        config.check_channels(channels)
        self.config = config
        self.channels = list(channels)
        c = len(channels)
        self.updates = 0  # optimizer steps seen (host int: no sync)

        def z() -> torch.Tensor:
            return torch.zeros(c, dtype=dtype, device=device)

        self.ema, self.n_obs, self.init_sum, self.init_n, self.share_ema = z(), z(), z(), z(), z()
        self.alpha = torch.full((c,), 1.0 / c, dtype=dtype, device=device)
        self.weights = torch.ones(c, dtype=dtype, device=device)
        self.clipped = z()  # 1.0 where a bound moved the channel's weight in the last update
        self._floor = torch.tensor(
            [config.floor.get(n, 0.0) for n in channels], dtype=dtype, device=device
        )
        self._ceiling = torch.tensor(
            [config.ceiling.get(n, math.inf) for n in channels], dtype=dtype, device=device
        )
        self._target = torch.tensor([n in config.targets for n in channels], device=device)
        self._prior = (
            None
            if config.prior is None
            else torch.tensor(config.prior, dtype=dtype, device=device) / sum(config.prior)
        )
        self._reference = (
            None
            if config.reference_losses is None
            else torch.tensor(config.reference_losses, dtype=dtype, device=device)
        )

    # -- statistics -----------------------------------------------------------------------
    def _shares(self) -> torch.Tensor:
        corr = 1.0 - self.config.ema_beta ** max(self.updates, 1)
        return self.share_ema / corr

    def update(self, loss_sum: torch.Tensor, tokens: torch.Tensor) -> None:
        """Fold in one step's reduced per-channel sums ``[C]`` and compute the next weights."""
        cfg = self.config
        beta = cfg.ema_beta
        x = loss_sum / tokens.clamp_min(1)
        observed = (tokens > 0) & torch.isfinite(x)
        xo = torch.where(observed, x, torch.zeros_like(x))
        self.ema = torch.where(observed, beta * self.ema + (1 - beta) * xo, self.ema)
        self.n_obs = self.n_obs + observed.to(self.n_obs.dtype)
        in_init = observed & (self.init_n < cfg.init_steps)
        self.init_sum = self.init_sum + torch.where(in_init, xo, torch.zeros_like(xo))
        self.init_n = self.init_n + in_init.to(self.init_n.dtype)
        total = tokens.sum()
        share = tokens / total.clamp_min(1)
        self.share_ema = beta * self.share_ema + (1 - beta) * share
        self.updates += 1

        raw = self._raw_weights(x, observed)
        if self.updates < cfg.warmup_steps:
            return  # weights stay 1 during the first warmup_steps steps
        self.weights = self._postprocess(raw)

    @property
    def live(self) -> bool:
        """Whether the weights may differ from 1 (after warm-up and at least one update)."""
        return self.updates >= max(self.config.warmup_steps, 1)

    def _raw_weights(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        tiny = torch.finfo(x.dtype).tiny
        seen = self.n_obs > 0
        m = self.ema / (1.0 - torch.pow(cfg.ema_beta, self.n_obs)).clamp_min(tiny)
        init = self.init_sum / self.init_n.clamp_min(1)
        one = torch.ones_like(x)
        if cfg.strategy == "progress":
            p = (m / init.clamp_min(tiny)).clamp_min(tiny)
            score = torch.log(p) / cfg.temperature
            if cfg.loss_coef != 0:
                s = torch.where(seen, self._shares(), torch.zeros_like(m))
                mbar = (s * m).sum() / s.sum().clamp_min(tiny)
                rel = (m / mbar.clamp_min(tiny)).clamp_min(tiny)
                score = score + cfg.loss_coef / cfg.temperature * torch.log(rel)
            return torch.where(seen, torch.exp(score), one)
        # doremi
        prior = self._prior if self._prior is not None else self._shares()
        if self.updates == 1:
            self.alpha = prior / prior.sum().clamp_min(tiny)
        ref = self._reference if self._reference is not None else init
        excess = torch.where(observed, (x - ref).clamp_min(0), torch.zeros_like(x))
        alpha = self.alpha * torch.exp(cfg.eta * excess)
        alpha = alpha / alpha.sum()
        eps = cfg.doremi_smoothing
        self.alpha = (1 - eps) * alpha + eps / alpha.numel()
        usable = seen & (prior > 0)
        return torch.where(usable, self.alpha / prior.clamp_min(tiny), one)

    def _normalise(self, w: torch.Tensor) -> torch.Tensor:
        s = self._shares()
        mean = (s * w).sum()
        return torch.where(mean > 0, w / torch.where(mean > 0, mean, 1.0), w)

    def _postprocess(self, raw: torch.Tensor) -> torch.Tensor:
        """Normalise, smooth and bound the raw weights; set ``clipped`` (device ops only)."""
        cfg = self.config
        w = self._normalise(raw)
        w = (1 - cfg.smoothing) * w + cfg.smoothing
        low = w.max() / cfg.max_ratio
        clipped = w < low
        w = torch.maximum(w, low)
        w = self._normalise(w)
        clipped |= (w < self._floor) | (w > self._ceiling)
        w = torch.minimum(torch.maximum(w, self._floor), self._ceiling)
        raised = self._target & (w < 1.0)
        self.clipped = (clipped | raised).to(w.dtype)
        return torch.where(self._target, w.clamp_min(1.0), w)

    def to(self, device: torch.device) -> None:
        """Move every tensor of the state to ``device``."""
        for key in (*_STATE_KEYS, "_floor", "_ceiling", "_target", "_prior", "_reference"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, value.to(device))

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {k: getattr(self, k).clone() for k in _STATE_KEYS}
        state["updates"] = self.updates
        return state

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        if "clipped" not in state:  # written before clipping was recorded: nothing clipped yet
            state = {**state, "clipped": torch.zeros_like(self.weights)}
        for key in _STATE_KEYS:
            value = state[key]
            if not isinstance(value, torch.Tensor) or value.shape != self.weights.shape:
                raise ValueError(
                    f"channel reweighting state {key!r} must be a tensor of shape "
                    f"{tuple(self.weights.shape)}; was the checkpoint written for other channels?"
                )
            setattr(self, key, value.to(self.weights.device, self.weights.dtype).clone())
        self.updates = int(state["updates"])  # type: ignore[call-overload]
