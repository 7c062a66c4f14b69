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
    record (the sender passes `gil.yield_gil` to let the training thread run)."""
    latest: dict[SeriesKey, dict[int, tuple[float, float]]] = {}
    for step, wall_time, run, channels in records:
        if pause is not None:
            pause()
        for metric, value in run.items():
            latest.setdefault((metric, None), {})[step] = (value, wall_time)
        for channel_name, metrics in channels.items():
            for metric, value in metrics.items():
                latest.setdefault((metric, channel_name), {})[step] = (value, wall_time)
    series = []
    for (metric, channel), by_step in latest.items():
        steps = list(by_step)
        series.append(
            {
                "metric": metric,
                "channel": channel,
                "steps": steps,
                "values": [wire_value(by_step[s][0]) for s in steps],
                "wall_times": [by_step[s][1] for s in steps],
            }
        )
    return {"series": series}


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
