"""Step records of a points batch (``{"records": [...]}``), validated and grouped into series.

A record is one training step as the trainer hook logged it::

    {"n": 70, "s": 1200, "t": 1732790000.5, "r": {"lm_loss": 2.31}, "c": {"finance": {"loss": 2.9}}}

``s`` is the step (required), ``t`` its UNIX wall time (default: when the server received the
batch), ``r`` the run-level metrics, ``c`` the per-channel metrics; values are numbers or
``"NaN"``, ``"Infinity"``, ``"-Infinity"``. ``n``, when given, must equal the record's number of
points (a check against truncated or mangled records). Within a batch the later record of a
step wins, as in the series form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from server.series.payload_types import (
    MAX_NAME,
    MAX_STEP,
    NOT_A_VALUE,
    SPECIAL_VALUES,
    Loc,
    ParsedSeries,
    PayloadError,
)

_FIELDS = {"n", "s", "t", "r", "c"}
Columns = tuple[list[int], list[float], list[float]]


def parse_records(raw: Any, now: float) -> list[ParsedSeries]:
    """Validate ``raw`` (the body's ``records``) and group its points by (metric, channel)."""
    if not isinstance(raw, list):
        raise PayloadError(("records",), "must be a list of step records")
    series: dict[tuple[str, str], Columns] = {}
    for i, record in enumerate(raw):
        loc: Loc = ("records", i)
        if not isinstance(record, dict):
            raise PayloadError(loc, 'must be an object {"s": step, "r": {...}, "c": {...}}')
        unknown = record.keys() - _FIELDS
        if unknown:
            raise PayloadError((*loc, sorted(unknown)[0]), "unknown field")
        step = _step(record.get("s"), (*loc, "s"))
        wall = _wall_time(record.get("t", now), (*loc, "t"))
        points = _add(series, "", record.get("r", {}), step, wall, (*loc, "r"))
        channels = record.get("c", {})
        if not isinstance(channels, dict):
            raise PayloadError((*loc, "c"), "must be an object {channel: {metric: value}}")
        for channel, metrics in channels.items():
            _name(channel, (*loc, "c", channel), "channel")
            points += _add(series, channel, metrics, step, wall, (*loc, "c", channel))
        if "n" in record and record["n"] != points:
            raise PayloadError((*loc, "n"), f"says {record['n']!r} points, the record has {points}")
    return [
        ParsedSeries(
            metric,
            channel,
            np.array(steps, dtype=np.int64),
            np.array(values, dtype=np.float64),
            np.array(walls, dtype=np.float64),
        )
        for (metric, channel), (steps, values, walls) in series.items()
    ]


def _add(
    series: dict[tuple[str, str], Columns],
    channel: str,
    metrics: Any,
    step: int,
    wall: float,
    loc: Loc,
) -> int:
    """Append one record's metrics of ``channel`` ("" = run level); returns their count."""
    if not isinstance(metrics, dict):
        raise PayloadError(loc, "must be an object {metric: value}")
    for metric, value in metrics.items():
        if type(value) is str and value in SPECIAL_VALUES:
            value = SPECIAL_VALUES[value]
        elif type(value) is not float and type(value) is not int:
            raise PayloadError((*loc, metric), f"{NOT_A_VALUE}, got {value!r}")
        columns = series.get((metric, channel))
        if columns is None:
            _name(metric, (*loc, metric), "metric")
            columns = series[(metric, channel)] = ([], [], [])
        columns[0].append(step)
        columns[1].append(value)
        columns[2].append(wall)
    return len(metrics)


def _step(raw: Any, loc: Loc) -> int:
    if type(raw) is not int:
        raise PayloadError(loc, f"must be an integer step, got {raw!r}")
    if not 0 <= raw < MAX_STEP:
        raise PayloadError(loc, f"step {raw} is outside [0, {MAX_STEP})")
    return raw


def _wall_time(raw: Any, loc: Loc) -> float:
    if type(raw) is not float and type(raw) is not int:
        raise PayloadError(loc, f"must be a UNIX time in seconds, got {raw!r}")
    return float(raw)


def _name(raw: str, loc: Loc, what: str) -> None:
    if not raw or len(raw) > MAX_NAME:
        raise PayloadError(loc, f"{what} names are 1 to {MAX_NAME} characters, got {raw!r}")
