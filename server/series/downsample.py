"""Min/max downsampling: each bucket keeps its minimum and its maximum point.

With ``B = max_points // 2`` buckets, a series of ``n > max_points`` points becomes at most
``2B <= max_points`` points, and every bucket's extremes survive, so a one-step spike (or a NaN,
which ranks above +Inf, see ``server.series.chunks``) is never averaged away.

Three ways to bucket, same rule:
- decoded points: buckets of equal step width over ``[first_step, last_step]``;
- fine block summaries (series with fewer chunks than buckets): the ``FINE_STEPS``-step blocks
  ``g`` in ``[g0, g1]`` go to bucket ``(g - g0) * B // (g1 - g0 + 1)``, so with at least ``B``
  blocks every bucket is non-empty and the read returns close to ``2B`` points. A bucket's
  extremes are the extremes of its blocks' stored extremes: exactly the min/max point of the
  decoded points of those blocks (ties and NaN resolved as in ``bucket_extremes``);
- chunk summaries (very long series): buckets of ``ceil(chunks / B)`` consecutive chunks, whose
  extremes are the extremes of their chunks' stored extremes, so no point array is read.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from server.series.chunks import FINE_STEPS, FloatArray, IntArray, Points

IndexArray = npt.NDArray[np.intp]


def bucket_extremes(values: FloatArray, starts: IndexArray) -> tuple[IndexArray, IndexArray]:
    """Per bucket (``values[starts[i]:starts[i+1]]``) the index of its min and of its max."""
    n = values.shape[0]
    idx = np.arange(n)
    nan = np.isnan(values)
    lengths = np.diff(np.append(starts, n))

    key_min = np.where(nan, np.inf, values)
    bucket_min = np.minimum.reduceat(key_min, starts)
    is_min = (key_min == np.repeat(bucket_min, lengths)) & ~nan
    imin = np.minimum.reduceat(np.where(is_min, idx, n), starts)
    imin = np.where(imin == n, starts, imin)  # all-NaN bucket: its first point

    key_max = np.where(nan, -np.inf, values)
    bucket_max = np.maximum.reduceat(key_max, starts)
    is_max = (key_max == np.repeat(bucket_max, lengths)) & ~nan
    imax = np.minimum.reduceat(np.where(is_max, idx, n), starts)
    first_nan = np.minimum.reduceat(np.where(nan, idx, n), starts)
    imax = np.where(first_nan < n, first_nan, imax)
    return imin, imax


def _unique_sorted(steps: IntArray, values: FloatArray, walls: FloatArray) -> Points:
    order = np.argsort(steps, kind="stable")
    s = steps[order]
    keep = np.ones(s.shape[0], dtype=bool)
    keep[1:] = s[1:] != s[:-1]
    return Points(s[keep], values[order][keep], walls[order][keep])


def downsample_points(points: Points, max_points: int) -> Points:
    """Equal-step-width min/max buckets; ``points`` is returned as is if small enough."""
    n = len(points)
    if n <= max_points:
        return points
    buckets = max(1, max_points // 2)
    first, last = int(points.steps[0]), int(points.steps[-1])
    width = last - first + 1
    bucket = (points.steps - first) * buckets // width
    starts = np.flatnonzero(np.diff(bucket)) + 1
    starts = np.concatenate([[0], starts]).astype(np.intp)
    imin, imax = bucket_extremes(points.values, starts)
    idx = np.unique(np.concatenate([imin, imax]))
    return points.select(idx)


def downsample_summaries(
    min_points: Points, max_points_of_chunks: Points, max_points: int
) -> Points:
    """Min/max buckets of whole chunks, from each chunk's min point and max point (in order)."""
    chunks = len(min_points)
    buckets = max(1, max_points // 2)
    group = -(-chunks // buckets)
    starts = np.arange(0, chunks, group, dtype=np.intp)
    imin, _ = bucket_extremes(min_points.values, starts)
    _, imax = bucket_extremes(max_points_of_chunks.values, starts)
    return _unique_sorted(
        np.concatenate([min_points.steps[imin], max_points_of_chunks.steps[imax]]),
        np.concatenate([min_points.values[imin], max_points_of_chunks.values[imax]]),
        np.concatenate([min_points.wall_times[imin], max_points_of_chunks.wall_times[imax]]),
    )


def downsample_blocks(records: npt.NDArray[np.void], max_points: int) -> Points:
    """Min/max buckets of fine blocks from their summary records (``SUMMARY_DTYPE``, in order)."""
    if records.shape[0] == 0:
        return Points(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64))
    buckets = max(1, max_points // 2)
    block = records["min_step"] // FINE_STEPS
    first = int(block[0])
    span = int(block[-1]) - first + 1
    bucket = (block - first) * buckets // span
    starts = np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1]).astype(np.intp)
    imin, _ = bucket_extremes(records["min_value"], starts)
    _, imax = bucket_extremes(records["max_value"], starts)
    return _unique_sorted(
        np.concatenate([records["min_step"][imin], records["max_step"][imax]]),
        np.concatenate([records["min_value"][imin], records["max_value"][imax]]),
        np.concatenate([records["min_wall"][imin], records["max_wall"][imax]]),
    )
