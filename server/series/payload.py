"""Parse and validate a points batch in bulk: no per-point objects, errors name field and index.

Body: ``{"series": [{"metric": str, "channel": str|null, "steps": [int], "values": [num|str],
"wall_times": [float]?}]}``. Values are JSON numbers or ``"NaN"``, ``"Infinity"``,
``"-Infinity"``. Steps are integers in ``[0, 2**53)``. Missing ``wall_times`` default to the
time the server received the batch.

The body may instead (or as well) carry ``"records"``: one object per training step, as the
trainer hook's sender writes them (`records.py`); they are grouped into series here, after the
``"series"`` ones, so a record's point wins over a series' point of the same step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from server.series.chunks import FloatArray, IntArray
from server.series.payload_types import (
    MAX_NAME,
    MAX_STEP,
    NOT_A_VALUE,
    SPECIAL_VALUES,
    ParsedSeries,
    PayloadError,
)
from server.series.records import parse_records

__all__ = ["MAX_NAME", "MAX_STEP", "ParsedSeries", "PayloadError", "parse_points"]

_NUMBER = {int, float}


def _first_bad(items: list[Any], ok: set[type]) -> int:
    return next(i for i, v in enumerate(items) if type(v) not in ok)


def _steps(raw: Any, loc: tuple[str | int, ...]) -> IntArray:
    if not isinstance(raw, list):
        raise PayloadError(loc, "must be a list of integers")
    if raw and not set(map(type, raw)) <= {int}:
        i = _first_bad(raw, {int})
        raise PayloadError((*loc, i), f"must be an integer step, got {raw[i]!r}")
    try:
        steps = np.array(raw, dtype=np.int64)
    except OverflowError:
        raise PayloadError(loc, f"steps must be in [0, {MAX_STEP})") from None
    bad = np.flatnonzero((steps < 0) | (steps >= MAX_STEP))
    if bad.size:
        i = int(bad[0])
        raise PayloadError((*loc, i), f"step {raw[i]} is outside [0, {MAX_STEP})")
    return steps


def _values(raw: Any, loc: tuple[str | int, ...]) -> FloatArray:
    if not isinstance(raw, list):
        raise PayloadError(loc, "must be a list of numbers")
    types = set(map(type, raw))
    if types <= _NUMBER:
        return np.array(raw, dtype=np.float64)
    if not types <= {int, float, str}:
        i = _first_bad(raw, _NUMBER | {str})
        raise PayloadError((*loc, i), f"{NOT_A_VALUE}, got {raw[i]!r}")
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(raw):
        if type(v) is str:
            if v not in SPECIAL_VALUES:
                raise PayloadError((*loc, i), f"{NOT_A_VALUE}, got {v!r}")
            out[i] = SPECIAL_VALUES[v]
        else:
            out[i] = v
    return out


def _wall_times(raw: Any, loc: tuple[str | int, ...], n: int, now: float) -> FloatArray:
    if raw is None:
        return np.full(n, now, dtype=np.float64)
    if not isinstance(raw, list):
        raise PayloadError(loc, "must be a list of UNIX times in seconds")
    if raw and not set(map(type, raw)) <= _NUMBER:
        i = _first_bad(raw, _NUMBER)
        raise PayloadError((*loc, i), f"must be a UNIX time in seconds, got {raw[i]!r}")
    walls = np.array(raw, dtype=np.float64)
    return walls


def _name(raw: Any, loc: tuple[str | int, ...], *, nullable: bool) -> str:
    if raw is None and nullable:
        return ""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_NAME:
        what = "a non-empty string" + (" or null" if nullable else "")
        raise PayloadError(loc, f"must be {what} of at most {MAX_NAME} characters, got {raw!r}")
    return raw


def parse_points(body: bytes, *, now: float) -> list[ParsedSeries]:
    """Validate a points batch; raises `PayloadError` naming the first bad field."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError((), f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not ("series" in doc or "records" in doc):
        raise PayloadError(
            ("series",), 'body must be an object {"series": [...]} or {"records": [...]}'
        )
    if not isinstance(doc.get("series", []), list):
        raise PayloadError(("series",), "must be a list of series")
    parsed: list[ParsedSeries] = []
    seen: set[tuple[str, str]] = set()
    for k, item in enumerate(doc.get("series", [])):
        loc: tuple[str | int, ...] = ("series", k)
        if not isinstance(item, dict):
            raise PayloadError(loc, "must be an object with metric, channel, steps, values")
        unknown = set(item) - {"metric", "channel", "steps", "values", "wall_times"}
        if unknown:
            raise PayloadError((*loc, sorted(unknown)[0]), "unknown field")
        metric = _name(item.get("metric"), (*loc, "metric"), nullable=False)
        channel = _name(item.get("channel"), (*loc, "channel"), nullable=True)
        if (metric, channel) in seen:
            raise PayloadError(loc, f"series ({metric!r}, {channel or None!r}) appears twice")
        seen.add((metric, channel))
        steps = _steps(item.get("steps"), (*loc, "steps"))
        values = _values(item.get("values"), (*loc, "values"))
        if values.shape != steps.shape:
            raise PayloadError(
                (*loc, "values"), f"has {values.size} items but steps has {steps.size}"
            )
        walls = _wall_times(item.get("wall_times"), (*loc, "wall_times"), steps.size, now)
        if walls.shape != steps.shape:
            raise PayloadError(
                (*loc, "wall_times"), f"has {walls.size} items but steps has {steps.size}"
            )
        if steps.size:
            parsed.append(ParsedSeries(metric, channel, steps, values, walls))
    if "records" in doc:
        return _merge(parsed, parse_records(doc["records"], now))
    return parsed


def _merge(first: list[ParsedSeries], then: list[ParsedSeries]) -> list[ParsedSeries]:
    """One series per (metric, channel): ``then``'s points after ``first``'s."""
    out = {(s.metric, s.channel): s for s in first}
    for s in then:
        old = out.get((s.metric, s.channel))
        if old is not None:
            s = ParsedSeries(
                s.metric,
                s.channel,
                np.concatenate([old.steps, s.steps]),
                np.concatenate([old.values, s.values]),
                np.concatenate([old.wall_times, s.wall_times]),
            )
        out[(s.metric, s.channel)] = s
    return list(out.values())
