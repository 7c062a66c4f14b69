"""Fine (16-step block) summaries: written at ingest, exact min/max buckets on downsampled reads.

Every check compares with a plain numpy reference computed on the decoded points: bucket of a
point = ``(step // 16 - g0) * B // (g1 - g0 + 1)``, its min the first smallest non-NaN value
(the first point if all are NaN), its max the first NaN, else the first largest value.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from server.db.models import PointChunk, Run
from server.series import chunks as ck
from server.series.downsample import downsample_blocks, downsample_points
from server.series.payload import ParsedSeries
from server.series.store import ingest_points, read_series

NAN, INF = math.nan, math.inf
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def reference(points: ck.Points, max_points: int) -> ck.Points:
    """Min/max per bucket of fine blocks, by a loop over buckets (no shared code)."""
    buckets = max(1, max_points // 2)
    block = points.steps // ck.FINE_STEPS
    g0, span = int(block[0]), int(block[-1] - block[0]) + 1
    bucket = (block - g0) * buckets // span
    keep: set[int] = set()
    for b in np.unique(bucket):
        idx = np.flatnonzero(bucket == b)
        v = points.values[idx]
        nan = np.isnan(v)
        keep.add(int(idx[0] if nan.all() else idx[np.nanargmin(v)]))
        keep.add(int(idx[np.argmax(nan)] if nan.any() else idx[np.argmax(v)]))
    return points.select(np.array(sorted(keep), dtype=np.intp))


def assert_same(got: ck.Points, want: ck.Points) -> None:
    assert got.steps.tolist() == want.steps.tolist()
    assert np.array_equal(got.values, want.values, equal_nan=True)
    assert np.array_equal(got.wall_times, want.wall_times)


def noisy(steps: np.ndarray, seed: int) -> ck.Points:
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(0.0, 0.01, steps.shape[0])) + 3.0
    values = np.round(values, 2)  # ties inside buckets: the first one must win
    return ck.Points(steps.astype(np.int64), values, steps * 0.5 + 1000.0)


def with_spikes(p: ck.Points, spikes: dict[int, float]) -> ck.Points:
    values = p.values.copy()
    pos = {int(s): i for i, s in enumerate(p.steps)}
    for step, v in spikes.items():
        values[pos[step]] = v
    return ck.Points(p.steps, values, p.wall_times)


def test_fine_summaries_hold_each_blocks_extremes_per_part() -> None:
    a = ck.Points(
        np.array([0, 1, 15, 16, 40, 41], dtype=np.int64),
        np.array([2.0, NAN, -1.0, INF, NAN, NAN]),
        np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0]),
    )
    b = ck.Points(np.array([256, 300], dtype=np.int64), np.array([5.0, 4.0]), np.zeros(2))
    blobs = ck.fine_summaries([a, b])
    ra = np.frombuffer(blobs[0], dtype=ck.SUMMARY_DTYPE)
    rb = np.frombuffer(blobs[1], dtype=ck.SUMMARY_DTYPE)
    # a: blocks 0 (steps 0-15), 1 (16), 2 (40-41, all NaN)
    assert ra["min_step"].tolist() == [15, 16, 40]
    assert ra["max_step"].tolist() == [1, 16, 40]
    assert ra["min_wall"].tolist() == [12.0, 13.0, 14.0]
    assert ra["min_value"][0] == -1.0
    assert ra["max_value"][1] == INF
    assert math.isnan(ra["max_value"][0])
    assert math.isnan(ra["min_value"][2])
    # b: blocks 16 (256) and 18 (300); a part with one point per block
    assert rb["min_step"].tolist() == [256, 300] == rb["max_step"].tolist()
    assert ck.encode(a)["fine_summary"] == blobs[0]


def test_downsample_blocks_equals_the_reference_on_decoded_points() -> None:
    steps = np.concatenate([np.arange(0, 5000), np.arange(5000, 9000, 3)])  # dense, then sparse
    p = with_spikes(noisy(steps, 1), {777: 50.0, 778: -50.0, 4001: NAN, 6002: INF, 8999: -INF})
    p.values[2000:2040] = NAN  # an all-NaN block range: its first NaN is both min and max
    records = np.frombuffer(b"".join(ck.fine_summaries([p])), dtype=ck.SUMMARY_DTYPE)
    for max_points in (2, 3, 100, 401, 2 * records.shape[0]):
        got = downsample_blocks(records, max_points)
        assert_same(got, reference(p, max_points))
        assert len(got) <= max_points
    got = downsample_blocks(records, 400)
    assert {777, 778, 4001, 6002, 8999} <= set(got.steps.tolist())
    assert len(got) == 400  # 396 blocks >= 200 buckets: every bucket is non-empty


def make_run(session: Session, key: str) -> int:
    run = Run(key=key, name=key)
    session.add(run)
    session.flush()
    return run.id


def ingest(session: Session, run_id: int, p: ck.Points, channel: str = "fin") -> None:
    batch = [ParsedSeries("loss", channel, p.steps, p.values, p.wall_times)]
    ingest_points(session=session, run_id=run_id, batch=batch, now=NOW)


def read(session: Session, run_id: int, **kw: Any) -> list[ck.Points]:
    return [s.points for s in read_series(session=session, run_id=run_id, **kw)]


def test_store_reads_fine_summaries_exactly_in_windows_and_after_merges(
    db_session: Session,
) -> None:
    # 40 chunks, 640 blocks; max_points=1000 -> 500 buckets > 40 chunks: the fine path
    n = 40 * ck.CHUNK_STEPS
    spikes = {5: 9.0, 3000: 1e6, 3001: -1e6, 7777: NAN, 9000: INF}
    p = with_spikes(noisy(np.arange(n), 2), spikes)
    run_id = make_run(db_session, "fine")
    for lo in range(0, n, 100):  # many small batches: chunks are merged and rewritten
        ingest(db_session, run_id, p.select(slice(lo, lo + 100)))
    ingest(db_session, run_id, noisy(np.arange(600), 3), channel="short")  # 600 <= max_points
    full, short = read(db_session, run_id)
    assert_same(full, p)
    fine, short_again = read(db_session, run_id, max_points=1000)
    assert_same(fine, reference(p, 1000))
    assert len(fine) == 1000
    assert set(spikes) <= set(fine.steps.tolist())
    assert_same(short_again, short)
    # windows cutting chunks at both ends, and incremental polling
    for kw in ({"start_step": 100, "end_step": 9000}, {"after_step": 1500}):
        window = read(db_session, run_id, max_points=1000, **kw)[0]
        in_window = read(db_session, run_id, **kw)[0]
        assert_same(window, reference(in_window, 1000))
    # 6,239 points in 390 blocks < 500 buckets: decoded, equal-step-width buckets
    tail = read(db_session, run_id, max_points=1000, after_step=4000)[0]
    assert_same(tail, downsample_points(read(db_session, run_id, after_step=4000)[0], 1000))
    # a retried batch that rewrites a step in the middle of a chunk updates its fine summary
    ingest(db_session, run_id, ck.Points(np.array([5120]), np.array([-7.0]), np.array([1.0])))
    fine = read(db_session, run_id, max_points=1000)[0]
    assert_same(fine, reference(read(db_session, run_id)[0], 1000))
    assert -7.0 in fine.values.tolist()


def test_rows_without_fine_summary_are_summarized_on_read(db_session: Session) -> None:
    n = 20 * ck.CHUNK_STEPS
    p = with_spikes(noisy(np.arange(n), 4), {1000: 99.0, 4000: NAN})
    run_id = make_run(db_session, "legacy")
    ingest(db_session, run_id, p)
    # as written before migration 0003: no fine summary in every other chunk
    db_session.execute(
        update(PointChunk).where(PointChunk.chunk % 2 == 0).values(fine_summary=None)
    )
    for kw in ({}, {"start_step": 300, "end_step": 4500}):
        got = read(db_session, run_id, max_points=400, **kw)[0]
        assert_same(got, reference(read(db_session, run_id, **kw)[0], 400))
    assert {1000, 4000} <= set(read(db_session, run_id, max_points=400)[0].steps.tolist())


def test_batch_summaries_equal_the_per_chunk_summary() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        parts = []
        for k in range(4):
            n = int(rng.integers(1, ck.CHUNK_STEPS + 1))
            steps = np.sort(rng.choice(ck.CHUNK_STEPS, size=n, replace=False)) + k * 256
            values = rng.choice([0.0, 1.0, 2.0, NAN, INF, -INF], size=n)
            parts.append(ck.Points(steps.astype(np.int64), values, rng.normal(size=n)))
        coarse, fine = ck.summaries(parts)
        assert coarse == [ck.summarize(p) for p in parts]
        assert fine == [ck.fine_summaries([p])[0] for p in parts]
