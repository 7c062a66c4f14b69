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


#: The last update computed, ``(inputs, outputs)``: spike, divergence and collapse each keep
#: the same forecast of the same channel (same thresholds, same values), so the second and
#: third update of a step are copies. Read and replaced as one tuple: safe across threads.
_last: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None


def observe(state: dict[str, Any], x: float, *, alpha: float, beta: float) -> float | None:
    """Feed one finite value; return its standardized residual z (None while initializing).

    ``state`` is updated in place; an empty dict starts a new forecast.
    """
    global _last
    get = state.get
    key = (get("n", 0), get("level"), get("trend"), get("scale"), x, alpha, beta)
    last = _last
    if last is not None and last[0] == key:
        n, level, trend, scale, z = last[1]
        state["n"], state["level"], state["trend"], state["scale"] = n, level, trend, scale
        return z
    z = _update(state, x, alpha, beta)
    _last = (key, (state["n"], state["level"], state["trend"], state["scale"], z))
    return z


def _update(state: dict[str, Any], x: float, alpha: float, beta: float) -> float | None:
    n = int(state.get("n", 0)) + 1
    state["n"] = n
    if n == 1:
        state.update(level=x, trend=0.0, scale=None)
        return None
    level = float(state["level"])
    trend = float(state["trend"])
    forecast = level + trend
    residual = x - forecast
    scale = state["scale"]
    if scale is None:  # second value: seed the scale from the first difference
        state["scale"] = max(abs(residual) / _SQRT2, 1e-3 + 0.005 * abs(x))
        state["level"] = x
        return None
    scale = max(float(scale), 1e-3 + 0.005 * abs(level))
    z = residual / scale
    bound = HUBER * scale
    clipped = -bound if residual < -bound else (bound if residual > bound else residual)
    new_level = forecast + alpha * clipped
    state["trend"] = trend + beta * (new_level - level - trend)
    state["level"] = new_level
    a_s = max(SCALE_ALPHA, 1.0 / n)
    spread = _SIGMA_PER_MAD * min(abs(residual), SCALE_CLIP * scale)
    state["scale"] = max((1.0 - a_s) * scale + a_s * spread, 1e-3 + 0.005 * abs(new_level))
    return z
