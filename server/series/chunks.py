"""Packed chunks of points and their min/max summaries.

A chunk holds the points of one series with ``chunk == step // CHUNK_STEPS``, sorted by step,
one point per step: ``steps`` as little-endian int64, ``values`` and ``wall_times`` as
little-endian float64 (NaN and +-Inf stored bit-exact). Its ``summary`` is the chunk's minimum
and maximum point, so a downsampled read of a long series touches only the summaries.

Extremes order NaN above +Inf: a bucket's "max" is its first NaN if it has one, else its largest
value; its "min" is its smallest non-NaN value (a NaN only when every value is NaN). So a NaN or
a one-step spike always survives downsampling.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Steps per chunk row. 256 keeps a 100-step ingest batch within 1-2 rows per series and a
#: 1M-point series at ~3,900 summaries.
CHUNK_STEPS = 256

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SUMMARY_DTYPE = np.dtype(
    [
        ("min_step", "<i8"),
        ("max_step", "<i8"),
        ("min_value", "<f8"),
        ("min_wall", "<f8"),
        ("max_value", "<f8"),
        ("max_wall", "<f8"),
    ]
)


_SUMMARY = struct.Struct("<qqdddd")  # the layout of SUMMARY_DTYPE
assert _SUMMARY.size == SUMMARY_DTYPE.itemsize


@dataclass(slots=True)
class Points:
    """Columnar points of one series, sorted by step with unique steps."""

    steps: IntArray
    values: FloatArray
    wall_times: FloatArray

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def select(self, mask: npt.NDArray[np.bool_] | slice) -> Points:
        return Points(self.steps[mask], self.values[mask], self.wall_times[mask])


def sort_last_wins(steps: IntArray, values: FloatArray, wall_times: FloatArray) -> Points:
    """Sort by step; of several points at one step keep the one given last."""
    order = np.argsort(steps, kind="stable")
    s = steps[order]
    keep = np.ones(s.shape[0], dtype=bool)
    keep[:-1] = s[1:] != s[:-1]
    idx = order[keep]
    return Points(s[keep], values[idx], wall_times[idx])


def merge(old: Points, new: Points) -> Points:
    """Union of two sorted point sets; at a step present in both, ``new`` wins."""
    if len(old) == 0:
        return new
    if len(new) == 0 or new.steps[0] > old.steps[-1]:
        return Points(
            np.concatenate([old.steps, new.steps]),
            np.concatenate([old.values, new.values]),
            np.concatenate([old.wall_times, new.wall_times]),
        )
    return sort_last_wins(
        np.concatenate([old.steps, new.steps]),
        np.concatenate([old.values, new.values]),
        np.concatenate([old.wall_times, new.wall_times]),
    )


def extreme_indices(values: FloatArray) -> tuple[int, int]:
    """Indices of the min and max point in the NaN-above-Inf order of the module docstring."""
    nan = np.isnan(values)
    if not nan.any():
        return int(np.argmin(values)), int(np.argmax(values))
    first_nan = int(np.argmax(nan))
    if nan.all():
        return first_nan, first_nan
    return int(np.nanargmin(values)), first_nan


def summarize(points: Points) -> bytes:
    """The 48-byte summary (min point, max point) of a non-empty chunk."""
    imin, imax = extreme_indices(points.values)
    return _SUMMARY.pack(
        int(points.steps[imin]),
        int(points.steps[imax]),
        float(points.values[imin]),
        float(points.wall_times[imin]),
        float(points.values[imax]),
        float(points.wall_times[imax]),
    )


def encode(points: Points) -> dict[str, object]:
    """Column values of a ``point_chunks`` row (without ``series_id`` and ``chunk``)."""
    return {
        "count": len(points),
        "steps": points.steps.astype("<i8", copy=False).tobytes(),
        "values": points.values.astype("<f8", copy=False).tobytes(),
        "wall_times": points.wall_times.astype("<f8", copy=False).tobytes(),
        "summary": summarize(points),
    }


def decode(steps: bytes, values: bytes, wall_times: bytes) -> Points:
    return Points(
        np.frombuffer(steps, dtype="<i8").astype(np.int64, copy=False),
        np.frombuffer(values, dtype="<f8").astype(np.float64, copy=False),
        np.frombuffer(wall_times, dtype="<f8").astype(np.float64, copy=False),
    )


def decode_summaries(blobs: list[bytes]) -> npt.NDArray[np.void]:
    """Summaries of many chunks as one structured array (fields of ``SUMMARY_DTYPE``)."""
    return np.frombuffer(b"".join(blobs), dtype=SUMMARY_DTYPE)


def concat(parts: list[Points]) -> Points:
    if not parts:
        return Points(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64))
    if len(parts) == 1:
        return parts[0]
    return Points(
        np.concatenate([p.steps for p in parts]),
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.wall_times for p in parts]),
    )
