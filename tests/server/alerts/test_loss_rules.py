"""The one-pass spike/divergence/collapse and starvation's fed path equal the rule-by-rule forms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from server.alerts.detectors import (
    Verdicts,
    collapse_series,
    divergence_series,
    spike_series,
    starvation_tokens_series,
)
from server.alerts.loss_rules import loss_rules_series, shares_forecast
from server.alerts.rules import thresholds


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, floats compared bit for bit (repr)."""
    return repr(a) == repr(b)


def curves(rng: np.random.Generator) -> list[list[float | None]]:
    """Batches of losses with warm-up, spikes, a slow rise, a collapse, NaN, Inf and gaps."""
    t = np.arange(400, dtype=np.float64)
    x = 2.0 + np.exp(-t / 80) + 0.02 * rng.standard_normal(400)
    x[60:62] += 3.0  # spike
    x[150:260] += np.linspace(0.0, 1.5, 110)  # divergence
    x[300:330] -= np.linspace(0.0, 2.0, 30)  # collapse
    x[200] = math.nan
    x[210] = math.inf
    values: list[float | None] = list(x.tolist())
    for i in (5, 6, 120, 121, 122, 399):
        values[i] = None  # no point at that step
    return [values[i : i + 50] for i in range(0, 400, 50)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"spike": {"min_history": 5.0, "z": 3.0}, "divergence": {"min_history": 40.0}},
        {"collapse": {"clip": 1.0, "k": 0.1, "h": 1.0}, "divergence": {"slow_alpha": 0.5}},
    ],
)
def test_one_pass_equals_the_three_rules(overrides: dict[str, dict[str, float]]) -> None:
    params = tuple(thresholds(r, overrides) for r in ("spike", "divergence", "collapse"))
    fused: tuple[dict[str, Any], ...] = ({}, {}, {})
    alone: tuple[dict[str, Any], ...] = ({}, {}, {})
    fired = set()
    for losses in curves(np.random.default_rng(5)):
        assert shares_forecast(fused, params)
        got = loss_rules_series(fused, losses, params)  # type: ignore[arg-type]
        want = [
            f(s, losses, p)
            for f, s, p in zip(
                (spike_series, divergence_series, collapse_series), alone, params, strict=True
            )
        ]
        for g, w in zip(got, want, strict=True):
            assert same(g.active, w.active)
            assert same(g.value, w.value)
            for i, active in enumerate(w.active):
                if active is not None:
                    assert g.why(i) == w.why(i)
        assert same(fused, alone)
        fired |= {r for r, w in zip("sdc", want, strict=True) if True in w.active}
    assert fired == {"s", "d", "c"}  # every rule fired somewhere: the test judges real alerts


def test_different_forecasts_are_not_shared() -> None:
    params = tuple(thresholds(r) for r in ("spike", "divergence", "collapse"))
    assert not shares_forecast(({"n": 3, "level": 1.0}, {"n": 2, "level": 1.0}, {}), params)
    other = (params[0], {**params[1], "alpha": 0.3}, params[2])
    assert not shares_forecast(({}, {}, {}), other)


@pytest.mark.parametrize(
    "tokens",
    [
        [5.0] * 30,
        [5.0, math.nan, 7.0] * 10,  # NaN tokens count as present
        [5.0, 0.0, 7.0] * 10,  # a step without tokens: the full path
        [math.nan, -1.0] * 15,
        [5.0, None, 7.0] * 10,
    ],
)
@pytest.mark.parametrize("start", [{}, {"seen": 40, "present": 30, "gap": 4}])
def test_starvation_fed_path_equals_the_step_by_step_one(
    tokens: list[float | None], start: dict[str, int]
) -> None:
    p = thresholds("starvation")
    fast, slow = dict(start), dict(start)
    got = starvation_tokens_series(fast, tokens, [True] * len(tokens), p)
    want = reference_starvation(slow, tokens, p)
    assert same(got.active, want.active)
    assert same(got.value, want.value)
    assert [got.why(i) for i in range(len(tokens))] == [want.why(i) for i in range(30)]
    assert fast == slow


def reference_starvation(state: dict[str, Any], tokens: list[float | None], p: Any) -> Verdicts:
    """The step-by-step loop (the fed path must not be taken: one step judged nothing)."""
    out = starvation_tokens_series(state, [*tokens, None], [*([True] * len(tokens)), None], p)
    return Verdicts(out.active[:-1], out.value[:-1], out.why)
