"""Encoding step records for the spool file and for `POST /api/v1/runs/{id}/points`.

A *record* is one logged step: `(step, wall_time, run_metrics, channel_metrics)`. It is encoded
once, by the writer thread, as one strict-JSON spool line

    {"n": points, "s": step, "t": wall_time, "r": {metric: value}, "c": {channel: {metric: value}}}

with non-finite values as the strings "NaN", "Infinity", "-Infinity", as the REST API writes
them. The same bytes are the request body's records: `{"records": [line, line, ...]}`, so the
sender thread joins and gzips bytes and never decodes or re-encodes a point (the server groups
records into series). `n`, the record's point count, comes first so the sender counts points
without parsing, and the server checks it.

Lines written by older versions (no `"n"`, NaN written as a bare `NaN`) are re-encoded when read.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

Record = tuple[int, float, dict[str, float], dict[str, dict[str, float]]]

_PREFIX = b'{"n":'
LINE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)
"""What parsing a corrupt spool line raises."""
# after a value's colon: a string, true/false/null or a list is not a number
_NOT_A_NUMBER = re.compile(r':(?:"|true|false|null|\[)')
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def record_points(record: Record) -> int:
    """Number of points in a record."""
    return len(record[2]) + sum(len(m) for m in record[3].values())


def record_to_line(record: Record, points: int | None = None) -> bytes:
    """One spool line (with its newline) for a record; `points` is `record_points(record)` when
    the caller has it. Raises TypeError or ValueError for a value that is not a number.

    Plain float dicts take one C-level `json` call, checked on its text: no string, boolean,
    null or list after a colon, and one brace per dict (no dict where a number belongs). Other
    values (numpy scalars, bools, non-finite floats) are converted with `float()` first; a key
    that looks like a value only sends its record down that slower path."""
    step, wall_time, run, channels = record
    n = record_points(record) if points is None else points
    try:
        if type(step) is not int or type(wall_time) is not float:
            raise TypeError
        text = _encode({"n": n, "s": step, "t": wall_time, "r": run, "c": channels})
        if text.count("{") != 3 + len(channels) or _NOT_A_NUMBER.search(text):
            raise TypeError
    except (TypeError, ValueError):
        text = _encode(
            {
                "n": n,
                "s": int(step),
                "t": float(wall_time),
                "r": wire_floats(run),
                "c": {str(c): wire_floats(m) for c, m in channels.items()},
            }
        )
    return text.encode() + b"\n"


def line_to_record(line: bytes) -> Record:
    """Parse one spool line (either format); raises ValueError on a corrupt line."""
    obj = json.loads(line)
    if not isinstance(obj, dict) or "s" not in obj:
        raise ValueError(f"not a spool record: {line[:80]!r}")
    channels = {str(c): _floats(m) for c, m in obj["c"].items()}
    return int(obj["s"]), float(obj["t"]), _floats(obj["r"]), channels


def line_points(line: bytes) -> tuple[bytes, int]:
    """(the line as it goes on the wire, without its newline; its point count).

    A current line (it starts with `{"n":`) is sliced, not parsed; an older one is parsed and
    re-encoded. Raises one of `LINE_ERRORS` on a corrupt line. (A corrupt line that starts like
    a current one is refused by the server and kept in rejected.jsonl.)"""
    body = line.rstrip(b"\n")
    if body.startswith(_PREFIX):
        start = len(_PREFIX)
        return body, int(body[start : body.index(b",", start)])
    record = line_to_record(body)
    n = record_points(record)
    return record_to_line(record, n)[:-1], n


def records_body(lines: Iterable[bytes]) -> bytes:
    """The points request body for encoded records (lines without their newline), gzipped
    (level 6: about 75x smaller for metric records; zlib releases the GIL while it works)."""
    raw = b'{"records":[' + b",".join(lines) + b"]}"
    return gzip.compress(raw, compresslevel=6, mtime=0)


def wire_value(value: float) -> float | str:
    """A float as the REST API writes it: non-finite values become "NaN"/"Infinity"/"-Infinity"."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def wire_floats(metrics: Mapping[str, Any]) -> dict[str, float | str]:
    """`{metric: value}` as the REST API writes it (`float()` of each value, non-finite ones as
    strings); raises TypeError or ValueError for a value that is not a number."""
    return {str(k): wire_value(float(v)) for k, v in metrics.items()}


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): _SPECIAL[v] if type(v) is str else float(v) for k, v in metrics.items()}
