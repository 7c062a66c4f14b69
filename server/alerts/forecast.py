"""A robust one-step-ahead forecast of a noisy, trending loss curve, kept in a JSON dict.

Holt's linear method with winsorized updates and a robust scale:

    forecast   f_t = L_{t-1} + T_{t-1}
    residual   r_t = x_t - f_t,     standardized  z_t = r_t / s_{t-1}
    clipped    c_t = clip(r_t, -c s_{t-1}, +c s_{t-1})
    level      L_t = f_t + a c_t
    trend      T_t = T_{t-1} + b (L_t - L_{t-1} - T_{t-1}),      b = a / 4
    scale      s_t = (1 - a_s) s_{t-1} + a_s sqrt(pi/2) |c_t|,   a_s = max(a, 1/n)

``sqrt(pi/2) E|r| = sigma`` for Gaussian residuals, so ``s`` estimates the per-step standard
deviation; clipping keeps one heavy-tailed step (or the first steps of a real fault) from
dragging the level or inflating the scale. The scale has a floor of ``1e-3 + 0.005 |L|`` so
a perfectly flat curve cannot produce infinite z-scores.
"""

from __future__ import annotations

import math
from typing import Any

_SIGMA_PER_MAD = math.sqrt(math.pi / 2.0)


def scale_floor(level: float) -> float:
    """Smallest scale allowed at this level: ``1e-3 + 0.005 |level|`` nats."""
    return 1e-3 + 0.005 * abs(level)


def observe(state: dict[str, Any], x: float, *, alpha: float, clip: float = 4.0) -> float | None:
    """Feed one finite value; return its standardized residual z (None while initializing).

    ``state`` is updated in place; an empty dict starts a new forecast.
    """
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
        state["scale"] = max(abs(residual) / math.sqrt(2.0), scale_floor(x))
        state["level"] = x
        return None
    scale = max(float(scale), scale_floor(level))
    z = residual / scale
    clipped = max(-clip * scale, min(clip * scale, residual))
    new_level = forecast + alpha * clipped
    state["trend"] = trend + (alpha / 4.0) * (new_level - level - trend)
    state["level"] = new_level
    a_s = max(alpha, 1.0 / n)
    state["scale"] = max(
        (1.0 - a_s) * scale + a_s * _SIGMA_PER_MAD * abs(clipped), scale_floor(new_level)
    )
    return z
