"""The engine's columns straight from the ingested numpy series, without a dict per point.

When every channel series of a batch has the same steps (the trainer's case), each series
becomes one column with one ``tolist()``; every step judges the same channels in the same
order, so the columns are those :func:`server.alerts.columns.columns_from_points` builds from
the regrouped points (tests/server/alerts/test_columns.py checks both against each other).
Other batches are regrouped point by point into :class:`StepPoints`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from server.alerts.columns import (
    ChannelColumns,
    Column,
    StepColumns,
    StepPoints,
    columns_from_points,
)
from server.series.ingested import IngestedSeries

#: Metrics the engine reads; others are ignored.
CHANNEL_METRICS = ("loss", "tokens", "token_share", "weight", "weight_clipped")
RUN_METRICS = ("lm_loss",)


def points_from_series(series: Iterable[IngestedSeries]) -> list[StepPoints]:
    """Regroup ingested series by step into :class:`StepPoints` (ascending steps).

    Only the metrics the rules read are kept; a metric sent twice keeps its last value.
    """
    run: dict[int, dict[str, float]] = {}
    channels: dict[int, dict[str, dict[str, float]]] = {}
    for s in series:
        steps, values = s.steps.tolist(), s.values.tolist()
        if s.channel is None:
            if s.metric not in RUN_METRICS:
                continue
            for step, value in zip(steps, values, strict=True):
                per = run.get(step)
                if per is None:
                    per = run[step] = {}
                per[s.metric] = value
            continue
        if s.metric not in CHANNEL_METRICS:
            continue
        channel, metric = s.channel, s.metric
        for step, value in zip(steps, values, strict=True):
            at = channels.get(step)
            if at is None:
                at = channels[step] = {}
            m = at.get(channel)
            if m is None:
                m = at[channel] = {}
            m[metric] = value
    empty: dict[str, Any] = {}
    return [
        StepPoints(step=step, run=run.get(step, empty), channels=channels.get(step, empty))
        for step in sorted(run.keys() | channels.keys())
    ]


def columns_from_series(
    series: Sequence[IngestedSeries], known: Mapping[str, float | None], watermark: int | None
) -> StepColumns | None:
    """Columns of the steps of ``series`` above ``watermark``; None when there are none.

    Each series is sorted by step with one point per step (`IngestedSeries`).
    """
    run_series = [s for s in series if s.channel is None and s.metric in RUN_METRICS]
    by_channel = [s for s in series if s.channel is not None and s.metric in CHANNEL_METRICS]
    if by_channel and not _same_steps(by_channel):
        new = [
            p
            for p in points_from_series(run_series + by_channel)
            if watermark is None or p.step > watermark
        ]
        return columns_from_points(new, known) if new else None
    pieces = [s.steps for s in run_series]
    if by_channel:
        pieces.append(by_channel[0].steps)
    if not pieces:
        return None
    every = pieces[0] if len(pieces) == 1 else np.unique(np.concatenate(pieces))
    steps: list[int] = every.tolist()
    first = 0 if watermark is None else bisect.bisect_right(steps, watermark)
    steps = steps[first:]
    if not steps:
        return None
    n = len(steps)
    fresh = every[first:]

    # the channel series have the same steps: all of them are the new steps, or none is
    channels_new = bool(by_channel) and np.array_equal(by_channel[0].steps, fresh)

    def column(s: IngestedSeries) -> Column:
        """``s``'s values at the new steps (None where it has no point)."""
        if (channels_new and s.channel is not None) or (
            s.steps.shape[0] == n and np.array_equal(s.steps, fresh)
        ):
            return s.values.tolist()
        lo = int(np.searchsorted(s.steps, fresh[0]))
        out: Column = [None] * n
        for i, value in zip(
            np.searchsorted(fresh, s.steps[lo:]).tolist(), s.values[lo:].tolist(), strict=True
        ):
            out[i] = value
        return out

    lm_loss: Column = column(run_series[0]) if run_series else [None] * n
    for s in run_series[1:]:  # the same metric sent twice: the last point of a step wins
        for i, value in enumerate(column(s)):
            if value is not None:
                lm_loss[i] = value
    channels: dict[str, ChannelColumns] = {}
    names: list[Sequence[str]] = [()] * n
    totals: list[float] | None = None
    if any(t is not None for t in known.values()):
        totals = [0.0] * n
    channel_steps = by_channel[0].steps if by_channel else None
    if (
        channel_steps is not None
        and channel_steps.shape[0]
        and (watermark is None or channel_steps[-1] > watermark)
    ):
        logged: dict[str, dict[str, Column]] = {}
        for s in by_channel:
            logged.setdefault(s.channel or "", {})[s.metric] = column(s)
        order = list(known) + [c for c in logged if c not in known]
        mask: list[bool | None] = [None if x is None else True for x in column(by_channel[0])]
        names = [order if m else () for m in mask]
        nothing: Column = [None] * n
        if totals is not None:  # in the order the channels were logged
            isfinite = math.isfinite
            for metrics in logged.values():
                for i, t in enumerate(metrics.get("tokens", nothing)):
                    if t and isfinite(t):
                        totals[i] += t
        for name in order:
            metrics = logged.get(name, {})
            channels[name] = ChannelColumns(
                judged=mask,
                loss=metrics.get("loss", nothing),
                tokens=metrics.get("tokens", nothing),
                token_share=metrics.get("token_share", nothing),
                weight=metrics.get("weight", nothing),
                weight_clipped=metrics.get("weight_clipped", nothing),
            )
    return StepColumns(steps=steps, lm_loss=lm_loss, names=names, channels=channels, totals=totals)


def _same_steps(series: list[IngestedSeries]) -> bool:
    """Whether every series of ``series`` has the steps of the first (one numpy comparison)."""
    first = series[0].steps
    if any(s.steps.shape != first.shape for s in series):
        return False
    return bool((np.stack([s.steps for s in series]) == first).all())
