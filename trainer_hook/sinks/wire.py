"""Encoding step records for the spool file and for `POST /api/v1/runs/{id}/points`.

A *record* is one logged step: `(step, wall_time, run_metrics, channel_metrics)`. In the spool
it is one JSON line `{"s": step, "t": wall_time, "r": {...}, "c": {channel: {...}}}` (Python's
json writes NaN/Infinity literally and reads them back). On the wire the REST contract wants
series grouped by (metric, channel), with non-finite values as the strings "NaN", "Infinity",
"-Infinity".
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Record = tuple[int, float, dict[str, float], dict[str, dict[str, float]]]
SeriesKey = tuple[str, str | None]


def record_to_line(record: Record) -> bytes:
    """One spool line (with its newline) for a record."""
    step, wall_time, run, channels = record
    obj = {"s": int(step), "t": float(wall_time), "r": _floats(run), "c": _nested_floats(channels)}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def line_to_record(line: bytes) -> Record:
    """Parse one spool line; raises ValueError on a corrupt line."""
    obj = json.loads(line)
    if not isinstance(obj, dict) or "s" not in obj:
        raise ValueError(f"not a spool record: {line[:80]!r}")
    return int(obj["s"]), float(obj["t"]), dict(obj["r"]), {k: dict(v) for k, v in obj["c"].items()}


def record_points(record: Record) -> int:
    """Number of points in a record."""
    return len(record[2]) + sum(len(m) for m in record[3].values())


def wire_value(value: float) -> float | str:
    """A float as the REST API writes it: non-finite values become "NaN"/"Infinity"/"-Infinity"."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def build_points_body(
    records: Iterable[Record], pause: Callable[[], object] | None = None
) -> dict[str, Any]:
    """Group records into the `{"series": [...]}` body; within a batch the last write of a
    (metric, channel, step) wins, as it does on the server. `pause` is called after each
    record (the sender passes `gil.yield_gil` to let the training thread run).

    Per series, values and wall times are kept in two `{step: float}` dicts, not one dict of
    `(value, wall_time)` tuples: ints and floats are not tracked by the garbage collector, so a
    batch of thousands of points adds no objects for a collection (which holds the GIL) to walk.
    """
    values: dict[SeriesKey, dict[int, float]] = {}
    walls: dict[SeriesKey, dict[int, float]] = {}
    for step, wall_time, run, channels in records:
        if pause is not None:
            pause()
        for channel_name, metrics in ((None, run), *channels.items()):
            for metric, value in metrics.items():
                key: SeriesKey = (metric, channel_name)
                if key not in values:
                    values[key], walls[key] = {}, {}
                values[key][step] = value
                walls[key][step] = wall_time
    return {
        "series": [
            {
                "metric": metric,
                "channel": channel,
                "steps": list(by_step),
                "values": [wire_value(v) for v in by_step.values()],
                "wall_times": list(walls[(metric, channel)].values()),
            }
            for (metric, channel), by_step in values.items()
        ]
    }


def gzip_json(body: Mapping[str, Any]) -> bytes:
    """Compact JSON, gzipped (level 6 is ~10x smaller for metric batches at a few ms/MB)."""
    raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return gzip.compress(raw, compresslevel=6, mtime=0)


def gzip_points_body(body: Mapping[str, Any], pause: Callable[[], object]) -> bytes:
    """`gzip_json` of a points body, encoded one series at a time with `pause()` in between,
    so no single C call holds the GIL for the whole batch (gzip itself releases it)."""
    parts = []
    for series in body["series"]:
        parts.append(json.dumps(series, separators=(",", ":"), allow_nan=False))
        pause()
    raw = ('{"series":[' + ",".join(parts) + "]}").encode()
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items()}


def _nested_floats(channels: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    return {str(c): _floats(m) for c, m in channels.items()}
