"""The pure storage math: last-write-wins merge, chunk summaries, min/max buckets."""

from __future__ import annotations

import math

import numpy as np

from server.series import chunks as ck
from server.series.downsample import bucket_extremes, downsample_points, downsample_summaries

NAN, INF = math.nan, math.inf


def pts(steps: list[int], values: list[float], walls: list[float] | None = None) -> ck.Points:
    return ck.Points(
        np.array(steps, dtype=np.int64),
        np.array(values, dtype=np.float64),
        np.array(walls if walls is not None else [float(s) for s in steps], dtype=np.float64),
    )


def test_sort_last_wins_keeps_the_last_point_of_a_step() -> None:
    p = ck.sort_last_wins(
        np.array([5, 3, 5, 1, 3]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.zeros(5)
    )
    assert p.steps.tolist() == [1, 3, 5]
    assert p.values.tolist() == [4.0, 5.0, 3.0]


def test_merge_appends_or_interleaves_with_new_winning() -> None:
    old = pts([1, 2, 3], [1.0, 2.0, 3.0])
    assert ck.merge(old, pts([4, 6], [4.0, 6.0])).steps.tolist() == [1, 2, 3, 4, 6]
    merged = ck.merge(old, pts([0, 2, 5], [0.0, 20.0, 5.0], [9.0, 9.0, 9.0]))
    assert merged.steps.tolist() == [0, 1, 2, 3, 5]
    assert merged.values.tolist() == [0.0, 1.0, 20.0, 3.0, 5.0]
    assert merged.wall_times.tolist() == [9.0, 1.0, 9.0, 3.0, 9.0]


def test_encode_decode_is_bit_exact_and_summarizes() -> None:
    p = pts([7, 8, 9, 10], [NAN, -INF, 0.25, INF], [1.5, 2.5, 3.5, 4.5])
    row = ck.encode(p)
    assert row["count"] == 4
    back = ck.decode(row["steps"], row["values"], row["wall_times"])  # type: ignore[arg-type]
    assert back.steps.tolist() == [7, 8, 9, 10]
    assert np.array_equal(back.values, p.values, equal_nan=True)
    summary = ck.decode_summaries([row["summary"]])[0]  # type: ignore[list-item]
    # min: -Inf at 8; max: the NaN at 7 ranks above +Inf
    assert (summary["min_step"], summary["min_value"], summary["min_wall"]) == (8, -INF, 2.5)
    assert summary["max_step"] == 7
    assert math.isnan(summary["max_value"])


def test_extremes_order() -> None:
    assert ck.extreme_indices(np.array([2.0, 1.0, 3.0])) == (1, 2)
    assert ck.extreme_indices(np.array([2.0, NAN, INF, NAN])) == (0, 1)
    assert ck.extreme_indices(np.array([NAN, NAN])) == (0, 0)


def test_bucket_extremes_per_bucket() -> None:
    values = np.array([3.0, 1.0, 2.0, NAN, 5.0, INF, NAN, NAN, -1.0, -1.0])
    starts = np.array([0, 3, 6, 8])
    imin, imax = bucket_extremes(values, starts)
    assert imin.tolist() == [1, 4, 6, 8]  # all-NaN bucket -> its first point; ties -> first
    assert imax.tolist() == [0, 3, 6, 8]  # a NaN is the max of its bucket


def test_downsample_points_keeps_extremes_of_equal_width_buckets() -> None:
    p = pts(list(range(12)), [5, 4, 9, 1, 2, 2, 3, 8, 0, 7, 6, 6])
    d = downsample_points(p, 6)  # 3 buckets of 4 steps
    assert d.steps.tolist() == [2, 3, 4, 7, 8, 9]
    assert d.values.tolist() == [9.0, 1.0, 2.0, 8.0, 0.0, 7.0]
    assert downsample_points(p, 12) is p


def test_downsample_summaries_groups_whole_chunks() -> None:
    mins = pts([3, 300, 600, 900], [1.0, 0.5, 2.0, NAN])
    maxs = pts([0, 256, 700, 901], [4.0, 9.0, 3.0, NAN])
    d = downsample_summaries(mins, maxs, 4)  # 2 buckets of 2 chunks
    assert d.steps.tolist() == [256, 300, 600, 901]
    assert d.values.tolist()[:3] == [9.0, 0.5, 2.0]
    assert math.isnan(d.values[3])
