"""The detectors: pure functions of (persisted JSON state, one observation, thresholds).

Each detector judges one channel (or the run, ``channel=None``) at one step and returns a
:class:`Verdict`, or ``None`` when the observation holds nothing it can judge (then the alert's
lifecycle is left as it is). State is a JSON-serialisable dict updated in place, so the server
stores it in the database and a restart or another replica continues exactly where it stopped.
The math of each rule is in docs/alerts.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from server.alerts.forecast import observe


@dataclass(slots=True)
class Observation:
    """What one channel showed at one logged step (None: no point for that metric)."""

    step: int
    loss: float | None = None
    tokens: float | None = None
    token_share: float | None = None
    weight: float | None = None
    target_share: float | None = None
    weight_clipped: float | None = None


class Verdict:
    """A detector's judgement: is the condition active, with which value, and why.

    ``summary`` may be given as a function that formats it: it is called only when the
    summary is read (most verdicts of a quiet run never are), once.
    """

    __slots__ = ("_summary", "active", "value")

    def __init__(self, active: bool, value: float, summary: str | Callable[[], str]) -> None:
        self.active = active
        self.value = value
        self._summary = summary

    @property
    def summary(self) -> str:
        text = self._summary
        if not isinstance(text, str):
            text = self._summary = text()
        return text

    def __repr__(self) -> str:
        return f"Verdict({self.active!r}, {self.value!r}, {self.summary!r})"


WARMING_UP = Verdict(False, 0.0, "warming up")

State = dict[str, Any]
Detector = Callable[[State, Observation, Mapping[str, float]], Verdict | None]


_isfinite = math.isfinite


def non_finite(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the loss is NaN or +-Inf."""
    if obs.loss is None:
        return None
    bad = not math.isfinite(obs.loss)
    return Verdict(bad, obs.loss, f"loss is {obs.loss}" if bad else "loss is finite")


def spike(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the loss jumps ``z`` robust scales (and ``min_jump`` nats) above forecast."""
    x = obs.loss
    if x is None or not _isfinite(x):
        return None
    expected = state["level"] + state["trend"] if "level" in state else x
    z = observe(state, x, alpha=p["alpha"], beta=p["beta"])
    if z is None or state["n"] <= p["min_history"]:
        return WARMING_UP
    jump = x - expected
    active = z > p["z"] and jump > p["min_jump"]
    return Verdict(
        active, z, lambda: f"loss {x:.4g} is {jump:+.3g} nats ({z:+.1f} sigma) off {expected:.4g}"
    )


def _cusum(state: State, obs: Observation, p: Mapping[str, float], sign: float) -> float | None:
    """One-sided CUSUM of clipped standardized residuals; ``sign`` +1 upward, -1 downward."""
    x = obs.loss
    if x is None or not _isfinite(x):
        return None
    z = observe(state, x, alpha=p["alpha"], beta=p["beta"])
    if z is None or state["n"] <= p["min_history"]:
        state["cusum"] = 0.0
        return None
    clip = p["clip"]
    step = sign * (clip if z > clip else (-clip if z < -clip else z)) - p["k"]
    cusum = float(state.get("cusum", 0.0)) + step
    cusum = min(2.0 * p["h"], cusum if cusum > 0.0 else 0.0)
    state["cusum"] = cusum
    return cusum


def divergence(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the loss rises against the channel's own trend, fast or slowly.

    score = max(upward CUSUM, h * rebound / rebound_z), where rebound is how far a slow EWMA
    of the loss (weight ``slow_alpha``) stands above its own minimum, in scales.
    """
    s = _cusum(state, obs, p, +1.0)
    if s is None:
        return None if obs.loss is None else WARMING_UP
    x = float(obs.loss or 0.0)  # finite: _cusum returned a value
    slow = float(state.get("slow", x))
    slow += p["slow_alpha"] * (x - slow)
    floor = min(float(state.get("floor", slow)), slow)
    state.update(slow=slow, floor=floor)
    rebound = (slow - floor) / float(state["scale"])
    h = p["h"]
    score = max(s, h * rebound / p["rebound_z"])
    if score > h:

        def rising() -> str:
            why = (
                f"CUSUM {s:.1f} > {h:g}"
                if s > h
                else f"smoothed loss {rebound:.1f} sigma above its minimum {floor:.4g}"
            )
            return f"loss {x:.4g} rising against its trend ({why})"

        return Verdict(True, score, rising)
    trend = state["trend"]
    return Verdict(False, score, lambda: f"score {score:.1f}, trend {trend:+.3g}/step")


def collapse(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the downward CUSUM (loss falling abnormally fast) exceeds h."""
    s = _cusum(state, obs, p, -1.0)
    if s is None:
        return None if obs.loss is None else WARMING_UP
    h, x = p["h"], obs.loss
    if s > h:
        return Verdict(
            True, s, lambda: f"loss {x:.4g} falling abnormally fast (CUSUM {s:.1f} > {h:g})"
        )
    return Verdict(False, s, lambda: f"CUSUM {s:.1f}")


def starvation(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the channel's run of logged steps without tokens is implausibly long.

    With presence rate ``q = (present + 1) / (seen + 2)`` (Laplace) over the steps before the
    current gap, a gap of ``g`` steps has chance ``(1 - q)^g``; fire when
    ``g >= max(min_steps, log(p_false) / log(1 - q))``.
    """
    starved = obs.tokens is None or obs.tokens <= 0
    seen = int(state.get("seen", 0))
    present = int(state.get("present", 0))
    gap = int(state.get("gap", 0))
    before_gap = seen - gap
    gap = gap + 1 if starved else 0
    q = (present + 1) / (before_gap + 2)
    state["seen"], state["present"], state["gap"] = seen + 1, present + (not starved), gap
    if gap == 0 and p["min_steps"] > 0:  # needed >= min_steps > 0: no gap cannot fire
        active = False
    else:
        needed = max(p["min_steps"], math.log(p["p_false"]) / math.log(max(1e-12, 1.0 - q)))
        active = before_gap >= p["min_history"] and gap >= needed
    return Verdict(
        active,
        float(gap),
        lambda: f"no tokens for {gap} logged steps (present in {q:.0%} before)",
    )


def mix_drift(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the EWMA of the token share departs from the target share."""
    if obs.target_share is None:
        return None
    share = 0.0 if obs.token_share is None else float(obs.token_share)
    if not math.isfinite(share):
        return None
    n = int(state.get("n", 0)) + 1
    a = max(p["alpha"], 1.0 / n)
    ewma = share if n == 1 else (1 - a) * float(state["ewma"]) + a * share
    state.update(n=n, ewma=ewma)
    target = float(obs.target_share)
    gap = ewma - target
    active = (
        n > p["min_history"]
        and abs(gap) > p["abs_tol"]
        and abs(gap) > p["rel_tol"] * max(target, 1e-12)
    )
    return Verdict(
        active, ewma, lambda: f"token share {ewma:.3g} vs target {target:.3g} ({gap:+.3g})"
    )


def weight_saturation(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the weight is held by a bound for ``steps`` consecutive logged steps.

    Held means: the trainer reports it clipped (``weight_clipped`` = 1: max_ratio, floor,
    ceiling or target moved it), or, where ``lower``/``upper`` are configured, it sits at one
    (``|w - b| <= tol * max(1, |b|)``). Without either signal the rule judges nothing: a
    constant weight is not a saturated one.
    """
    w, clipped = obs.weight, obs.weight_clipped
    lower, upper = p["lower"], p["upper"]
    bounded = _isfinite(lower) or _isfinite(upper)  # NaN: not configured
    if clipped is None and (not bounded or w is None):
        return None
    held = clipped is not None and clipped >= 0.5
    if not held and bounded and w is not None and _isfinite(w):
        tol = p["tol"]
        held = any(_isfinite(b) and abs(w - b) <= tol * max(1.0, abs(b)) for b in (lower, upper))
    count = int(state.get("count", 0)) + 1 if held else 0
    state["count"] = count
    value = math.nan if w is None else float(w)
    how = "clipped by the reweighting" if clipped is not None and clipped >= 0.5 else "at a bound"
    return Verdict(
        count >= p["steps"], value, lambda: f"weight {value:.4g} {how} for {count} logged steps"
    )


DETECTORS: dict[str, Detector] = {
    "non_finite": non_finite,
    "spike": spike,
    "divergence": divergence,
    "collapse": collapse,
    "starvation": starvation,
    "mix_drift": mix_drift,
    "weight_saturation": weight_saturation,
}
