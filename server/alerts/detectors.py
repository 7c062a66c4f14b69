"""The detectors: pure functions of (persisted JSON state, one observation, thresholds).

Each detector judges one channel (or the run, ``channel=None``) at one step and returns a
:class:`Verdict`, or ``None`` when the observation holds nothing it can judge (then the alert's
lifecycle is left as it is). State is a JSON-serialisable dict updated in place, so the server
stores it in the database and a restart or another replica continues exactly where it stopped.
The math of each rule is in docs/alerts.md.

The engine judges the busiest rules (non_finite, spike, divergence, collapse, starvation) over
a whole ingest batch at once with their ``*_series`` forms: the same math, step after step,
with the state in local floats and :class:`Verdicts` that build a :class:`Verdict` only when
asked; the one-step functions are those forms applied to one step. When spike, divergence and
collapse share their forecast, `server.alerts.loss_rules` judges the three in one pass instead
(the same operations in the same order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from server.alerts.forecast import ForecastStep, forecast_series


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
#: A detector over the losses of a batch (None: no point): one verdict (or None) per step.
SeriesDetector = Callable[[State, list[float | None], Mapping[str, float]], "Verdicts"]


_isfinite = math.isfinite


def non_finite(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the loss is NaN or +-Inf."""
    if obs.loss is None:
        return None
    bad = not math.isfinite(obs.loss)
    return Verdict(bad, obs.loss, f"loss is {obs.loss}" if bad else "loss is finite")


def non_finite_series(state: State, losses: list[float | None], p: Mapping[str, float]) -> Verdicts:
    """:func:`non_finite` at each step of ``losses`` in turn."""
    isfinite = _isfinite
    if None not in losses and isfinite(sum(cast(list[float], losses))):  # all logged, finite
        return Verdicts([False] * len(losses), cast(list[float], losses), _finite)
    active: list[bool | None] = [None if x is None else not isfinite(x) for x in losses]
    value = [0.0 if x is None else x for x in losses]

    def why(i: int) -> str:
        return f"loss is {losses[i]}" if active[i] else "loss is finite"

    return Verdicts(active, value, why)


def _finite(i: int) -> str:
    return "loss is finite"


def spike(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the loss jumps ``z`` robust scales (and ``min_jump`` nats) above forecast."""
    return spike_series(state, [obs.loss], p).at(0)


def divergence(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the loss rises against the channel's own trend, fast or slowly.

    score = max(upward CUSUM, h * rebound / rebound_z), where rebound is how far a slow EWMA
    of the loss (weight ``slow_alpha``) stands above its own minimum, in scales.
    """
    return divergence_series(state, [obs.loss], p).at(0)


def collapse(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the downward CUSUM (loss falling abnormally fast) exceeds h."""
    return collapse_series(state, [obs.loss], p).at(0)


# -- the same three rules over the losses of one batch (None: no point at that step) ---------


class Verdicts:
    """One rule's verdicts over the steps of a batch, kept as plain lists of floats.

    ``active[i]`` is None where the rule judged nothing; :meth:`at` builds the
    :class:`Verdict` only when the engine needs it (most steps of a quiet run never do).
    """

    __slots__ = ("active", "value", "why")

    def __init__(
        self, active: list[bool | None], value: list[float], why: Callable[[int], str]
    ) -> None:
        self.active, self.value, self.why = active, value, why

    def at(self, i: int) -> Verdict | None:
        active = self.active[i]
        return None if active is None else self.judged(i, active)

    def judged(self, i: int, active: bool) -> Verdict:
        """The verdict at a step the rule judged (``active = self.active[i]``)."""
        return Verdict(active, self.value[i], lambda: self.why(i))


def spike_series(state: State, losses: list[float | None], p: Mapping[str, float]) -> Verdicts:
    """:func:`spike` at each step of ``losses`` in turn."""
    steps = forecast_series(state, losses, alpha=p["alpha"], beta=p["beta"])
    min_history, z_min, min_jump = p["min_history"], p["z"], p["min_jump"]
    active: list[bool | None] = []
    value: list[float] = []
    judge, score = active.append, value.append
    for x, f in zip(losses, steps, strict=True):
        if f is None:  # no loss, or not finite
            judge(None)
            score(0.0)
        elif f[1] is None or f[0] <= min_history:  # warming up
            judge(False)
            score(0.0)
        else:
            z = f[1]
            judge(z > z_min and float(x or 0.0) - f[2] > min_jump)
            score(z)

    def why(i: int) -> str:
        f = steps[i]
        if f is None or f[1] is None or f[0] <= min_history:
            return "warming up"
        e, x, z = f[2], float(losses[i] or 0.0), value[i]
        return f"loss {x:.4g} is {x - e:+.3g} nats ({z:+.1f} sigma) off {e:.4g}"

    return Verdicts(active, value, why)


def _cusum_series(
    state: State, losses: list[float | None], p: Mapping[str, float], sign: float
) -> tuple[list[float | None], list[ForecastStep | None]]:
    """One-sided CUSUM of clipped standardized residuals; ``sign`` +1 upward, -1 downward.

    Per step: S_t, or None (no loss, or not finite, or warming up: then S is reset to 0); and
    the forecast step.
    """
    steps = forecast_series(state, losses, alpha=p["alpha"], beta=p["beta"])
    min_history, clip, k, cap = p["min_history"], p["clip"], p["k"], 2.0 * p["h"]
    cusum = state.get("cusum", 0.0)
    written = False
    out: list[float | None] = []
    for f in steps:
        if f is None:
            out.append(None)
            continue
        written = True
        z = f[1]
        if z is None or f[0] <= min_history:
            cusum = 0.0
            out.append(None)
            continue
        step = sign * (clip if z > clip else (-clip if z < -clip else z)) - k
        cusum = float(cusum) + step
        cusum = cusum if cusum > 0.0 else 0.0
        if not cusum < cap:  # min(cap, cusum)
            cusum = cap
        out.append(cusum)
    if written:
        state["cusum"] = cusum
    return out, steps


def divergence_series(state: State, losses: list[float | None], p: Mapping[str, float]) -> Verdicts:
    """:func:`divergence` at each step of ``losses`` in turn."""
    sums, steps = _cusum_series(state, losses, p, +1.0)
    slow_alpha, h, rebound_z = p["slow_alpha"], p["h"], p["rebound_z"]
    slow, floor = state.get("slow"), state.get("floor")
    written = False
    active: list[bool | None] = []
    value: list[float] = []
    rebounds: list[float] = []
    floors: list[float] = []
    for x, s, f in zip(losses, sums, steps, strict=True):
        if s is None or f is None:
            active.append(None if x is None else False)
            value.append(0.0)
            rebounds.append(0.0)
            floors.append(0.0)
            continue
        written = True
        xf = float(x or 0.0)
        slow = xf if slow is None else float(slow)
        slow += slow_alpha * (xf - slow)
        floor = slow if floor is None else float(floor)
        if slow < floor:  # min(floor, slow)
            floor = slow
        rebound = (slow - floor) / float(f[3] or 0.0)  # the scale: set once warmed up
        score = h * rebound / rebound_z
        if not score > s:  # max(s, score)
            score = s
        active.append(score > h)
        value.append(score)
        rebounds.append(rebound)
        floors.append(floor)
    if written:
        state["slow"], state["floor"] = slow, floor

    def why(i: int) -> str:
        s, f = sums[i], steps[i]
        if s is None or f is None:
            return "warming up"
        score, x = value[i], float(losses[i] or 0.0)
        if score > h:
            detail = (
                f"CUSUM {s:.1f} > {h:g}"
                if s > h
                else f"smoothed loss {rebounds[i]:.1f} sigma above its minimum {floors[i]:.4g}"
            )
            return f"loss {x:.4g} rising against its trend ({detail})"
        return f"score {score:.1f}, trend {f[4]:+.3g}/step"

    return Verdicts(active, value, why)


def collapse_series(state: State, losses: list[float | None], p: Mapping[str, float]) -> Verdicts:
    """:func:`collapse` at each step of ``losses`` in turn."""
    h = p["h"]
    sums, _ = _cusum_series(state, losses, p, -1.0)
    active: list[bool | None] = [
        (None if x is None else False) if s is None else s > h
        for x, s in zip(losses, sums, strict=True)
    ]
    value = [0.0 if s is None else s for s in sums]

    def why(i: int) -> str:
        s = sums[i]
        if s is None:
            return "warming up"
        if s > h:
            x = float(losses[i] or 0.0)
            return f"loss {x:.4g} falling abnormally fast (CUSUM {s:.1f} > {h:g})"
        return f"CUSUM {s:.1f}"

    return Verdicts(active, value, why)


def starvation(state: State, obs: Observation, p: Mapping[str, float]) -> Verdict | None:
    """Active when the channel's run of logged steps without tokens is implausibly long.

    With presence rate ``q = (present + 1) / (seen + 2)`` (Laplace) over the steps before the
    current gap, a gap of ``g`` steps has chance ``(1 - q)^g``; fire when
    ``g >= max(min_steps, log(p_false) / log(1 - q))``.
    """
    return starvation_series(state, [obs], p).at(0)


def starvation_series(
    state: State, column: list[Observation | None], p: Mapping[str, float]
) -> Verdicts:
    """:func:`starvation` at each step of ``column`` (None: the channel was not judged)."""
    tokens = [None if o is None else o.tokens for o in column]
    return starvation_tokens_series(state, tokens, column, p)


def starvation_tokens_series(
    state: State, tokens: list[float | None], judged: list[Any], p: Mapping[str, float]
) -> Verdicts:
    """:func:`starvation` at each step: ``judged[i]`` None where the channel was not judged,
    ``tokens[i]`` None where it logged no tokens."""
    seen, present = int(state.get("seen", 0)), int(state.get("present", 0))
    gap = int(state.get("gap", 0))
    min_steps, p_false, min_history = p["min_steps"], p["p_false"], p["min_history"]
    n = len(tokens)
    fed = n and min_steps > 0 and None not in judged and None not in tokens
    if fed and min(cast(list[float], tokens)) > 0:  # tokens at every step
        return _starvation_fed(state, n, seen, present, gap)
    written = False
    active: list[bool | None] = []
    value: list[float] = []
    shares: list[float] = []
    for t, j in zip(tokens, judged, strict=True):
        if j is None:
            active.append(None)
            value.append(0.0)
            shares.append(0.0)
            continue
        written = True
        starved = t is None or t <= 0
        before_gap = seen - gap
        gap = gap + 1 if starved else 0
        q = (present + 1) / (before_gap + 2)
        seen, present = seen + 1, present + (not starved)
        if gap == 0 and min_steps > 0:  # needed >= min_steps > 0: no gap cannot fire
            active.append(False)
        else:
            needed = max(min_steps, math.log(p_false) / math.log(max(1e-12, 1.0 - q)))
            active.append(before_gap >= min_history and gap >= needed)
        value.append(float(gap))
        shares.append(q)
    if written:
        state["seen"], state["present"], state["gap"] = seen, present, gap

    def why(i: int) -> str:
        return f"no tokens for {int(value[i])} logged steps (present in {shares[i]:.0%} before)"

    return Verdicts(active, value, why)


def _starvation_fed(state: State, n: int, seen: int, present: int, gap: int) -> Verdicts:
    """:func:`starvation_tokens_series` when the channel is judged at each of the ``n`` steps
    and has tokens at each (``min(tokens) > 0``: no None, no t <= 0), with ``min_steps > 0``:
    every gap is 0, so no step can fire; the Laplace share is computed only for a summary."""
    state["seen"], state["present"], state["gap"] = seen + n, present + n, 0

    def why(i: int) -> str:
        # before step i: seen + i logged steps, present + i with tokens, gap 0 after step 0
        q = (present + i + 1) / (seen + i - (gap if i == 0 else 0) + 2)
        return f"no tokens for 0 logged steps (present in {q:.0%} before)"

    return Verdicts([False] * n, [0.0] * n, why)


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
