"""A robust one-step-ahead forecast of a noisy, trending loss curve, kept in a JSON dict.

Holt's linear method with Huber-clipped updates and a slow robust scale:

    forecast   f_t = L_{t-1} + T_{t-1}
    residual   r_t = x_t - f_t,     standardized  z_t = r_t / s_{t-1}
    clipped    c_t = clip(r_t, -H s_{t-1}, +H s_{t-1})                    H = 2
    level      L_t = f_t + a c_t
    trend      T_t = T_{t-1} + b (L_t - L_{t-1} - T_{t-1})
    scale      s_t = (1 - a_s) s_{t-1} + a_s sqrt(pi/2) min(|r_t|, 3 s_{t-1}),
               a_s = max(0.05, 1/n)

``sqrt(pi/2) E|r| = sigma`` for Gaussian residuals, so ``s`` estimates the per-step standard
deviation. Clipping keeps one heavy-tailed step, or the first steps of a real fault, from
dragging the level or inflating the scale; the slow scale keeps a fault from hiding itself
by widening the noise band. The scale has a floor of ``1e-3 + 0.005 |L|`` so a perfectly flat
curve cannot produce infinite z-scores.
"""

from __future__ import annotations

import math
from typing import Any

_SIGMA_PER_MAD = math.sqrt(math.pi / 2.0)
_SQRT2 = math.sqrt(2.0)
HUBER = 2.0
SCALE_CLIP = 3.0
SCALE_ALPHA = 0.05


def scale_floor(level: float) -> float:
    """Smallest scale allowed at this level: ``1e-3 + 0.005 |level|`` nats."""
    return 1e-3 + 0.005 * abs(level)


#: One step of the forecast: (n after the update, z or None while initializing, the forecast
#: f_t (x itself on the first value), scale s_t after, trend T_t after).
ForecastStep = tuple[int, float | None, float, float | None, float]

#: The last series computed, ``(state before, values, steps, state after)``: spike, divergence
#: and collapse each keep the same forecast of the same channel (same thresholds, same values),
#: so the second and third computation of a batch are copies. Read and replaced as one tuple,
#: so threads can share it: a hit needs the very same ``values`` list and an equal state.
_last: tuple[tuple[Any, ...], object, list[ForecastStep | None], tuple[Any, ...]] | None = None


def forecast_series(
    state: dict[str, Any], values: list[float | None], *, alpha: float, beta: float
) -> list[ForecastStep | None]:
    """Feed each finite value of ``values`` in turn; None (no update) for None or non-finite.

    ``state`` (n, level, trend, scale) is updated in place; an empty dict starts a new forecast.
    """
    global _last
    get = state.get
    before = (get("n", 0), get("level"), get("trend"), get("scale"), alpha, beta)
    last = _last
    if last is not None and last[1] is values and last[0] == before:
        out, after = last[2], last[3]
    else:
        out, after = _series(before, values, alpha, beta)
        _last = (before, values, out, after)
    if after[0] != before[0]:  # at least one update: write the state back
        state["n"], state["level"], state["trend"], state["scale"] = after
    return out


def _series(
    before: tuple[Any, ...], values: list[float | None], alpha: float, beta: float
) -> tuple[list[ForecastStep | None], tuple[Any, ...]]:
    n, level, trend, scale = int(before[0]), before[1], before[2], before[3]
    out: list[ForecastStep | None] = []
    append = out.append
    isfinite = math.isfinite
    # max(a, b) and min(a, b) are written as conditionals (same results: no NaN reaches them)
    for x in values:
        if x is None or not isfinite(x):
            append(None)
            continue
        n += 1
        if n == 1:
            level, trend, scale = x, 0.0, None
            append((n, None, x, None, 0.0))
            continue
        lv, tr = float(level), float(trend)
        forecast = lv + tr
        residual = x - forecast
        if scale is None:  # second value: seed the scale from the first difference
            scale = max(abs(residual) / _SQRT2, 1e-3 + 0.005 * abs(x))
            level = x
            append((n, None, forecast, scale, trend))
            continue
        sc = float(scale)
        floor = 1e-3 + 0.005 * abs(lv)
        if floor > sc:
            sc = floor
        z = residual / sc
        bound = HUBER * sc
        clipped = -bound if residual < -bound else (bound if residual > bound else residual)
        level = forecast + alpha * clipped
        trend = tr + beta * (level - lv - tr)
        a_s = 1.0 / n
        if not a_s > SCALE_ALPHA:
            a_s = SCALE_ALPHA
        size = abs(residual)
        cap = SCALE_CLIP * sc
        spread = _SIGMA_PER_MAD * (cap if cap < size else size)
        scale = (1.0 - a_s) * sc + a_s * spread
        floor = 1e-3 + 0.005 * abs(level)
        if floor > scale:
            scale = floor
        append((n, z, forecast, scale, trend))
    return out, (n, level, trend, scale)
