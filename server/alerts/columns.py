"""The new steps of one batch as columns: what the engine judges, one list per channel and metric.

The engine judges channel by channel over the whole batch, so it reads each channel's losses,
tokens, ... as lists indexed by the batch's steps. :func:`columns_from_points` builds them from
:class:`StepPoints` (one dict of metrics per step and channel: the engine's public input, used
by tests and the evaluation benchmark); `server.alerts.series_columns` builds the same columns
straight from the ingested numpy series.

Which channels a step judges: none if it logged no channel point; otherwise every channel of
the run (absent ones had no tokens), then any unknown channel the step logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Column = list[float | None]


@dataclass(frozen=True, slots=True)
class StepPoints:
    """The points of one step: run-level metrics and per-channel metrics."""

    step: int
    run: Mapping[str, float] = field(default_factory=dict)
    channels: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    wall_time: float | None = None


@dataclass(slots=True)
class ChannelColumns:
    """One channel over the steps of a batch; ``None`` where it has no such point.

    ``judged[i]`` is True where step ``i`` judges the channel, None where it does not (then
    every metric is None there too).
    """

    judged: list[bool | None]
    loss: Column
    tokens: Column
    token_share: Column
    weight: Column
    weight_clipped: Column


@dataclass(slots=True)
class StepColumns:
    """The new steps of a batch (ascending, each once) and what they logged, as columns."""

    steps: list[int]
    lm_loss: Column
    """The run's ``lm_loss`` at each step (None: not logged)."""
    names: list[Sequence[str]]
    """The channels step ``i`` judges, in order (empty: the step logged no channel point)."""
    channels: dict[str, ChannelColumns]
    """Every channel some step judges, in the order of first judgement."""
    totals: list[float] | None
    """At each step, the sum of the finite non-zero tokens logged over all channels (in the
    step's logging order); None when no channel of the run has a target share (no rule reads
    a derived share then)."""


def num(value: Any) -> float | None:
    """``value`` as a float; None when absent or not a number."""
    if value is None:
        return None
    if type(value) is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _channel_names(points: StepPoints, known: Mapping[str, float | None]) -> Sequence[str]:
    """Every channel of the run (then any unknown one the step logged), in that order."""
    logged = points.channels
    if any(c not in known for c in logged):
        return list(known) + [c for c in logged if c not in known]
    return list(known)


def _total_tokens(points: StepPoints) -> float:
    """The sum of the finite, non-zero tokens the step logged over all channels."""
    logged = points.channels.values()
    return sum(t for m in logged if (t := num(m.get("tokens"))) and math.isfinite(t))


def columns_from_points(new: list[StepPoints], known: Mapping[str, float | None]) -> StepColumns:
    """Columns of ``new`` (ascending steps, each once); ``known``: the run's channels and their
    target shares."""
    names = [_channel_names(p, known) if p.channels else () for p in new]
    empty: Mapping[str, Any] = {}
    dicts: dict[str, list[Mapping[str, Any] | None]] = {}
    for i, (points, step_names) in enumerate(zip(new, names, strict=True)):
        logged = points.channels
        for name in step_names:
            column = dicts.get(name)
            if column is None:
                column = dicts[name] = [None] * len(new)
            column[i] = logged.get(name, empty)
    channels = {
        name: ChannelColumns(
            judged=[None if m is None else True for m in column],
            loss=_metric(column, "loss"),
            tokens=_metric(column, "tokens"),
            token_share=_metric(column, "token_share"),
            weight=_metric(column, "weight"),
            weight_clipped=_metric(column, "weight_clipped"),
        )
        for name, column in dicts.items()
    }
    totals = None
    if any(t is not None for t in known.values()):
        totals = [_total_tokens(p) if p.channels else 0.0 for p in new]
    return StepColumns(
        steps=[p.step for p in new],
        lm_loss=[num(p.run.get("lm_loss")) for p in new],
        names=names,
        channels=channels,
        totals=totals,
    )


def _metric(column: list[Mapping[str, Any] | None], name: str) -> Column:
    """``name``'s value (None: not logged) at each step of a channel's ``column``."""
    return [
        None if m is None else (x if type(x := m.get(name)) is float else num(x)) for m in column
    ]
