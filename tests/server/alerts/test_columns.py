"""The engine's columns built straight from ingested series equal those built point by point."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from server.alerts.columns import StepColumns, StepPoints, columns_from_points
from server.alerts.engine import RunAlertState, RunRules, evaluate, evaluate_columns
from server.alerts.series_columns import columns_from_series
from server.series.ingested import IngestedSeries


def regroup(series: list[IngestedSeries]) -> list[StepPoints]:
    """The reference: one dict per (step, channel), built point by point."""
    run: dict[int, dict[str, float]] = {}
    channels: dict[int, dict[str, dict[str, float]]] = {}
    for s in series:
        for step, value in zip(s.steps.tolist(), s.values.tolist(), strict=True):
            if s.channel is None:
                if s.metric == "lm_loss":
                    run.setdefault(step, {})[s.metric] = value
            elif s.metric in METRICS:
                channels.setdefault(step, {}).setdefault(s.channel, {})[s.metric] = value
    return [
        StepPoints(step=step, run=run.get(step, {}), channels=channels.get(step, {}))
        for step in sorted(run.keys() | channels.keys())
    ]


METRICS = ("loss", "tokens", "token_share", "weight", "weight_clipped")


def plain(columns: StepColumns | None) -> Any:
    """Comparable form: NaN as a string, channel order kept."""
    if columns is None:
        return None

    def fix(values: list[Any]) -> list[Any]:
        return ["nan" if isinstance(v, float) and math.isnan(v) else v for v in values]

    return (
        columns.steps,
        fix(columns.lm_loss),
        [list(n) for n in columns.names],
        [
            (name, c.judged, *[fix(getattr(c, m)) for m in METRICS])
            for name, c in columns.channels.items()
        ],
        columns.totals,
    )


def batch(
    rng: np.random.Generator, *, irregular: bool, run_steps: str, unknown: bool
) -> list[IngestedSeries]:
    steps = np.arange(100, 140, dtype=np.int64)
    out = []
    names = ["a", "b", "c"] + (["zz", "new"] if unknown else [])
    for j, channel in enumerate(names):
        if channel == "b":
            continue  # a registered channel that logs nothing: judged, no tokens
        for metric in ("loss", "tokens", "weight", "samples"):
            s = steps[j:] if irregular and metric == "tokens" else steps
            values = rng.random(s.shape[0]) * 3
            values[rng.random(s.shape[0]) < 0.1] = 0.0
            values[rng.random(s.shape[0]) < 0.05] = np.nan
            out.append(
                IngestedSeries(
                    metric=metric,
                    channel=channel,
                    steps=s,
                    values=values,
                    wall_times=s.astype(np.float64),
                )
            )
    if run_steps != "none":
        r = steps if run_steps == "same" else np.arange(90, 150, 3, dtype=np.int64)
        for metric in ("lm_loss", "lr"):
            out.append(
                IngestedSeries(
                    metric=metric,
                    channel=None,
                    steps=r,
                    values=rng.random(r.shape[0]),
                    wall_times=r * 1.0,
                )
            )
    return out


@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("run_steps", ["none", "same", "other"])
@pytest.mark.parametrize("unknown", [False, True])
@pytest.mark.parametrize("targets", [False, True])
def test_series_columns_equal_point_by_point_columns(
    irregular: bool, run_steps: str, unknown: bool, targets: bool
) -> None:
    rng = np.random.default_rng(7)
    series = batch(rng, irregular=irregular, run_steps=run_steps, unknown=unknown)
    known = {"a": 0.5 if targets else None, "b": None, "c": 0.25 if targets else None}
    for watermark in (None, 95, 99, 120, 139, 140, 148, 200):
        new = [p for p in regroup(series) if watermark is None or p.step > watermark]
        want = columns_from_points(new, known) if new else None
        got = columns_from_series(series, known, watermark)
        assert plain(got) == plain(want), watermark


def test_columns_and_points_judge_the_same() -> None:
    """Whole batches with faults: the same transitions and the same state either way."""
    rng = np.random.default_rng(3)
    rules = RunRules(channels={"a": 0.5, "b": None, "c": 0.2})
    by_points, by_columns = RunAlertState(), RunAlertState()
    kinds = set()
    for first in range(0, 600, 100):
        steps = np.arange(first, first + 100, dtype=np.int64)
        series = []
        for j, channel in enumerate(("a", "c", "zz")):
            loss = 2.0 + 0.05 * rng.standard_normal(100)
            tokens = rng.integers(100, 200, 100).astype(np.float64)
            if first == 200 and j == 0:
                loss[40:] += np.linspace(0, 4, 60)  # divergence of one channel
            if first == 300:
                loss[10] = np.nan
                tokens[j * 20 : j * 20 + 30] = 0.0  # starvation
            for metric, values in (("loss", loss), ("tokens", tokens)):
                series.append(
                    IngestedSeries(
                        metric=metric,
                        channel=channel,
                        steps=steps,
                        values=values,
                        wall_times=steps * 1.0,
                    )
                )
        now = 1e9 + first
        want = evaluate(by_points, regroup(series), rules, now=now)
        columns = columns_from_series(series, rules.channels, by_columns.watermark)
        assert columns is not None
        got = evaluate_columns(by_columns, columns, rules, now=now)
        assert repr(got) == repr(want)
        kinds |= {(t.rule, t.event.kind) for t in got}
    assert repr(by_columns) == repr(by_points)
    assert {("divergence", "firing"), ("non_finite", "firing"), ("starvation", "firing")} <= kinds


def test_columns_below_the_watermark_are_refused() -> None:
    state = RunAlertState(watermark=10)
    columns = columns_from_points([StepPoints(step=5, run={"lm_loss": 1.0})], {})
    with pytest.raises(ValueError, match="at or below the watermark 10"):
        evaluate_columns(state, columns, RunRules(channels={}), now=0.0)
