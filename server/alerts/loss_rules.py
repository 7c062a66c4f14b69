"""spike, divergence and collapse of one channel over a batch in one pass over its losses.

The three rules read the same robust forecast of the same losses (`server.alerts.forecast`)
when their forecast parameters (``alpha``, ``beta``) and their forecast states are equal,
which they are from a run's first step on unless an override changes one of them. Then one
loop updates the forecast once per loss and judges the three rules from it: the same
operations, in the same order, as :func:`~server.alerts.detectors.spike_series`,
:func:`~server.alerts.detectors.divergence_series` and
:func:`~server.alerts.detectors.collapse_series` one after the other (so the same verdicts,
values and states, bit for bit; tests/server/alerts/test_loss_rules.py checks it), without
a forecast tuple or a verdict list per rule and step beyond the ``active`` and ``value``
lists; once every rule is past its warm-up the rest of the batch runs in a second loop without
the warm-up checks. A summary (rarely read) is formatted by those three functions, run again on
a copy of the states from before the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from server.alerts.detectors import (
    State,
    Verdicts,
    collapse_series,
    divergence_series,
    spike_series,
)
from server.alerts.forecast import _SIGMA_PER_MAD, _SQRT2, HUBER, SCALE_ALPHA, SCALE_CLIP


def shares_forecast(
    states: tuple[State, State, State], params: tuple[Mapping[str, float], ...]
) -> bool:
    """Whether the three rules' forecasts are one: equal ``alpha``, ``beta`` and state."""
    first = params[0]
    if any(p["alpha"] != first["alpha"] or p["beta"] != first["beta"] for p in params[1:]):
        return False
    get = states[0].get
    before = (get("n", 0), get("level"), get("trend"), get("scale"))
    return all(
        (s.get("n", 0), s.get("level"), s.get("trend"), s.get("scale")) == before
        for s in states[1:]
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _lazy(make: Callable[[], Verdicts]) -> Callable[[int], str]:
    """``why(i)`` of the Verdicts that ``make`` computes the first time a summary is read."""
    made: list[Verdicts] = []

    def why(i: int) -> str:
        if not made:
            made.append(make())
        return made[0].why(i)

    return why


def loss_rules_series(
    states: tuple[State, State, State],
    losses: list[float | None],
    params: tuple[Mapping[str, float], Mapping[str, float], Mapping[str, float]],
) -> tuple[Verdicts, Verdicts, Verdicts]:
    """(spike, divergence, collapse) verdicts at each step of ``losses``; the states (in that
    order) are updated in place. Only when :func:`shares_forecast` holds."""
    spike_state, div_state, col_state = states
    ps, pd, pc = params
    saved = (dict(spike_state), dict(div_state), dict(col_state))
    get = spike_state.get
    level: Any = get("level")
    trend: Any = get("trend")
    scale: Any = get("scale")
    n0 = int(get("n", 0))
    n = n0
    alpha, beta = ps["alpha"], ps["beta"]
    s_min, z_min, min_jump = ps["min_history"], ps["z"], ps["min_jump"]
    d_min, d_clip, d_k, d_h = pd["min_history"], pd["clip"], pd["k"], pd["h"]
    d_cap, slow_alpha, rebound_z = 2.0 * d_h, pd["slow_alpha"], pd["rebound_z"]
    c_min, c_clip, c_k, c_h = pc["min_history"], pc["clip"], pc["k"], pc["h"]
    c_cap = 2.0 * c_h
    # a state holds only floats these rules wrote: float() once here, not at every step
    up, down = float(div_state.get("cusum", 0.0)), float(col_state.get("cusum", 0.0))
    slow: Any = _float(div_state.get("slow"))  # None until the rebound is first watched
    floor: Any = _float(div_state.get("floor"))
    level, trend = _float(level), _float(trend)
    div_seen = False
    s_act: list[bool | None] = []
    s_val: list[float] = []
    d_act: list[bool | None] = []
    d_val: list[float] = []
    c_act: list[bool | None] = []
    c_val: list[float] = []
    s_judge, s_score = s_act.append, s_val.append
    d_judge, d_score = d_act.append, d_val.append
    c_judge, c_score = c_act.append, c_val.append
    huber, scale_clip, scale_alpha, sigma_per_mad = HUBER, SCALE_CLIP, SCALE_ALPHA, _SIGMA_PER_MAD
    # the scale's floor at the current level, 1e-3 + 0.005 |level|: computed once per level
    level_floor = 0.0 if level is None else 1e-3 + 0.005 * abs(level)
    steps = iter(losses)
    for x in steps:  # until every rule is warmed up; then the loop below, without the checks
        if x is None or x - x != 0.0:  # no point, or not finite (inf - inf and NaN are NaN)
            idle = None if x is None else False
            s_judge(None)
            s_score(0.0)
            d_judge(idle)
            d_score(0.0)
            c_judge(idle)
            c_score(0.0)
            continue
        n += 1
        # -- the forecast (forecast._series) --
        if n == 1:
            level, trend, scale = x, 0.0, None
            level_floor = 1e-3 + 0.005 * abs(x)
            s_judge(False)  # warming up: no z-score yet
            s_score(0.0)
            c_judge(False)
            c_score(0.0)
            down = 0.0
            d_judge(False)
            d_score(0.0)
            up = 0.0
            continue
        lv, tr = level, trend
        forecast = lv + tr
        residual = x - forecast
        if scale is None:  # second value: seed the scale from the first difference
            level_floor = 1e-3 + 0.005 * abs(x)
            scale = max(abs(residual) / _SQRT2, level_floor)
            level = x
            s_judge(False)
            s_score(0.0)
            c_judge(False)
            c_score(0.0)
            down = 0.0
            d_judge(False)
            d_score(0.0)
            up = 0.0
            continue
        sc = scale
        if level_floor > sc:
            sc = level_floor
        z = residual / sc
        bound = huber * sc
        clipped = -bound if residual < -bound else (bound if residual > bound else residual)
        level = forecast + alpha * clipped
        trend = tr + beta * (level - lv - tr)
        a_s = 1.0 / n
        if not a_s > scale_alpha:
            a_s = scale_alpha
        size = abs(residual)
        cap = scale_clip * sc
        spread = sigma_per_mad * (cap if cap < size else size)
        scale = (1.0 - a_s) * sc + a_s * spread
        level_floor = 1e-3 + 0.005 * abs(level)
        if level_floor > scale:
            scale = level_floor
        # -- spike --
        if n <= s_min:
            s_judge(False)
            s_score(0.0)
        else:
            s_judge(z > z_min and (x or 0.0) - forecast > min_jump)
            s_score(z)
        # -- collapse: downward CUSUM --
        if n <= c_min:
            down = 0.0
            c_judge(False)
            c_score(0.0)
        else:
            down += -(c_clip if z > c_clip else (-c_clip if z < -c_clip else z)) - c_k
            down = down if down > 0.0 else 0.0
            if not down < c_cap:
                down = c_cap
            c_judge(down > c_h)
            c_score(down)
        # -- divergence: upward CUSUM, then the slow level's rebound --
        if n <= d_min:
            up = 0.0
            d_judge(False)
            d_score(0.0)
            continue
        up += (d_clip if z > d_clip else (-d_clip if z < -d_clip else z)) - d_k
        up = up if up > 0.0 else 0.0
        if not up < d_cap:
            up = d_cap
        div_seen = True
        xf = x or 0.0
        slow = xf if slow is None else slow
        slow += slow_alpha * (xf - slow)
        floor = slow if floor is None else floor
        if slow < floor:
            floor = slow
        score = d_h * ((slow - floor) / scale) / rebound_z
        if not score > up:
            score = up
        d_judge(score > d_h)
        d_score(score)
        if n > s_min and n > c_min:
            break
    for x in steps:  # the same operations, every rule past its warm-up (slow, floor are set)
        if x is None or x - x != 0.0:
            idle = None if x is None else False
            s_judge(None)
            s_score(0.0)
            d_judge(idle)
            d_score(0.0)
            c_judge(idle)
            c_score(0.0)
            continue
        n += 1
        lv, tr = level, trend
        forecast = lv + tr
        residual = x - forecast
        sc = scale
        if level_floor > sc:
            sc = level_floor
        z = residual / sc
        bound = huber * sc
        clipped = -bound if residual < -bound else (bound if residual > bound else residual)
        level = forecast + alpha * clipped
        trend = tr + beta * (level - lv - tr)
        a_s = 1.0 / n
        if not a_s > scale_alpha:
            a_s = scale_alpha
        size = abs(residual)
        cap = scale_clip * sc
        spread = sigma_per_mad * (cap if cap < size else size)
        scale = (1.0 - a_s) * sc + a_s * spread
        level_floor = 1e-3 + 0.005 * abs(level)
        if level_floor > scale:
            scale = level_floor
        xf = x or 0.0
        s_judge(z > z_min and xf - forecast > min_jump)
        s_score(z)
        down += -(c_clip if z > c_clip else (-c_clip if z < -c_clip else z)) - c_k
        down = down if down > 0.0 else 0.0
        if not down < c_cap:
            down = c_cap
        c_judge(down > c_h)
        c_score(down)
        up += (d_clip if z > d_clip else (-d_clip if z < -d_clip else z)) - d_k
        up = up if up > 0.0 else 0.0
        if not up < d_cap:
            up = d_cap
        slow += slow_alpha * (xf - slow)
        if slow < floor:
            floor = slow
        score = d_h * ((slow - floor) / scale) / rebound_z
        if not score > up:
            score = up
        d_judge(score > d_h)
        d_score(score)
    if n != n0:
        for state in states:
            state["n"], state["level"], state["trend"], state["scale"] = n, level, trend, scale
    if n != n0:  # a finite loss: the CUSUMs were written (reset or moved)
        div_state["cusum"], col_state["cusum"] = up, down
    if div_seen:
        div_state["slow"], div_state["floor"] = slow, floor
    return (
        Verdicts(s_act, s_val, _lazy(lambda: spike_series(dict(saved[0]), losses, ps))),
        Verdicts(d_act, d_val, _lazy(lambda: divergence_series(dict(saved[1]), losses, pd))),
        Verdicts(c_act, c_val, _lazy(lambda: collapse_series(dict(saved[2]), losses, pc))),
    )
