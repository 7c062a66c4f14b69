"""Packed chunks of points and their min/max summaries.

A chunk holds the points of one series with ``chunk == step // CHUNK_STEPS``, sorted by step,
one point per step: ``steps`` as little-endian int64, ``values`` and ``wall_times`` as
little-endian float64 (NaN and +-Inf stored bit-exact). Its ``summary`` is the chunk's minimum
and maximum point, so a downsampled read of a very long series touches only the summaries. Its
``fine_summary`` holds the same 48-byte record for every non-empty ``FINE_STEPS``-step block of
the chunk (block ``step // FINE_STEPS``), in step order, so a downsampled read of a series with
fewer chunks than buckets reads 1/8 of the bytes of the packed arrays and decodes nothing.

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

#: Steps per fine-summary block: 16 blocks per chunk, 16 x 48 = 768 bytes per full chunk.
FINE_STEPS = 16

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


def summaries(parts: list[Points]) -> tuple[list[bytes], list[bytes]]:
    """The summary and the fine summary of each non-empty part.

    All parts are reduced together: one ``reduceat`` pass over their concatenation gives the
    block records (blocks cut where the block number or the part changes), a second pass over
    the records gives each part's min/max point (the extremes of its blocks' extremes, the same
    point ``extreme_indices`` picks). So an ingest batch pays a few numpy calls, not a few per
    chunk.
    """
    from server.series.downsample import bucket_extremes  # downsample imports this module

    if not parts:
        return [], []
    lengths = np.array([len(p) for p in parts], dtype=np.intp)
    whole = concat(parts)
    part = np.repeat(np.arange(len(parts), dtype=np.intp), lengths)
    block = whole.steps // FINE_STEPS
    cut = (block[1:] != block[:-1]) | (part[1:] != part[:-1])
    starts = np.concatenate([[0], np.flatnonzero(cut) + 1]).astype(np.intp)
    imin, imax = bucket_extremes(whole.values, starts)
    rec = np.empty(starts.shape[0], dtype=SUMMARY_DTYPE)
    rec["min_step"], rec["min_value"], rec["min_wall"] = (
        whole.steps[imin],
        whole.values[imin],
        whole.wall_times[imin],
    )
    rec["max_step"], rec["max_value"], rec["max_wall"] = (
        whole.steps[imax],
        whole.values[imax],
        whole.wall_times[imax],
    )
    ends = np.cumsum(np.bincount(part[starts], minlength=len(parts)))
    rec_starts = np.concatenate([[0], ends[:-1]]).astype(np.intp)
    cmin, _ = bucket_extremes(rec["min_value"], rec_starts)
    _, cmax = bucket_extremes(rec["max_value"], rec_starts)
    coarse = np.empty(len(parts), dtype=SUMMARY_DTYPE)
    for field in ("min_step", "min_value", "min_wall"):
        coarse[field] = rec[field][cmin]
    for field in ("max_step", "max_value", "max_wall"):
        coarse[field] = rec[field][cmax]
    size = _SUMMARY.size
    raw, coarse_raw = rec.tobytes(), coarse.tobytes()
    bounds = (ends * size).tolist()
    fine = [raw[a:b] for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
    return [coarse_raw[i * size : (i + 1) * size] for i in range(len(parts))], fine


def fine_summaries(parts: list[Points]) -> list[bytes]:
    """The fine summary of each non-empty part: one record per ``FINE_STEPS``-step block."""
    return summaries(parts)[1]


def encode(
    points: Points, summary: bytes | None = None, fine_summary: bytes | None = None
) -> dict[str, object]:
    """Column values of a ``point_chunks`` row (without ``series_id`` and ``chunk``).

    Pass ``summary`` and ``fine_summary`` when computed for many chunks at once (``summaries``).
    """
    if summary is None or fine_summary is None:
        (summary,), (fine_summary,) = summaries([points])
    return {
        "count": len(points),
        "steps": points.steps.astype("<i8", copy=False).tobytes(),
        "values": points.values.astype("<f8", copy=False).tobytes(),
        "wall_times": points.wall_times.astype("<f8", copy=False).tobytes(),
        "summary": summary,
        "fine_summary": fine_summary,
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
