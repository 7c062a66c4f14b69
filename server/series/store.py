"""Write and read points: merged read-modify-write of chunk rows, columnar reads.

Ingest is one transaction. Its first statement updates the run row (``last_step``), which takes
the run's row lock on PostgreSQL and the database write lock on SQLite, so concurrent batches for
one run (even from several server replicas) serialize and no merge loses an update. Within the
lock: find or create the series, read the touched chunks, merge (the last write wins per step),
write them back with executemany, call the ingest listeners.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, lazyload

from server.db.models import PointChunk, Run, RunChannel, Series
from server.series import chunks as ck
from server.series.downsample import downsample_points, downsample_summaries
from server.series.fine_read import fine_downsample
from server.series.ingested import IngestedSeries, IngestListener
from server.series.payload import ParsedSeries

_runs = cast(Table, Run.__table__)
_series = cast(Table, Series.__table__)
_chunks = cast(Table, PointChunk.__table__)
_KEYS_PER_QUERY = 400
_RECORD = ck.SUMMARY_DTYPE.itemsize


class RunNotFoundError(LookupError):
    """No run has this id."""


@dataclass(slots=True)
class IngestResult:
    accepted: int
    last_step: int | None


@dataclass(slots=True)
class SeriesData:
    """A series as read back: ``channel`` is ``None`` for run-level metrics."""

    metric: str
    channel: str | None
    points: ck.Points
    downsampled: bool


def _series_ids(
    session: Session, run_id: int, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(_series.c.metric, _series.c.channel, _series.c.id).where(_series.c.run_id == run_id)
    )
    ids = {(m, c): i for m, c, i in rows}
    missing = sorted({key for key in wanted if key not in ids})
    if missing:
        created = session.execute(
            insert(Series).returning(Series.metric, Series.channel, Series.id),
            [{"run_id": run_id, "metric": m, "channel": c} for m, c in missing],
        )
        ids.update({(m, c): i for m, c, i in created})
        _register_channels(session, run_id, {c for _, c in missing if c})
    return ids


def _register_channels(session: Session, run_id: int, names: set[str]) -> None:
    """Append channels first seen in points to the run's channel list (no target share)."""
    rows = session.execute(
        select(RunChannel.name, RunChannel.index).where(RunChannel.run_id == run_id)
    )
    known = {str(name): int(index) for name, index in rows}
    new = sorted(names - set(known))
    if new:
        start = max(known.values(), default=-1) + 1
        session.execute(
            insert(RunChannel),
            [{"run_id": run_id, "index": start + i, "name": n} for i, n in enumerate(new)],
        )


def _existing_chunks(
    session: Session, pieces: dict[tuple[int, int], ck.Points]
) -> dict[tuple[int, int], ck.Points]:
    """The stored chunks among ``pieces``' keys, decoded.

    Queried as ``series_id IN (...) AND chunk BETWEEN lo AND hi`` per distinct chunk range (one
    range for a typical batch), which uses the primary key index; SQLite would scan the whole
    table for a row-value ``(series_id, chunk) IN (...)``.
    """
    ranges: dict[tuple[int, int], set[int]] = {}
    bounds: dict[int, list[int]] = {}
    for sid, chunk in pieces:
        b = bounds.setdefault(sid, [chunk, chunk])
        b[0], b[1] = min(b[0], chunk), max(b[1], chunk)
    for sid, (lo, hi) in bounds.items():
        ranges.setdefault((lo, hi), set()).add(sid)
    existing: dict[tuple[int, int], ck.Points] = {}
    for (lo, hi), sids in ranges.items():
        ordered = sorted(sids)
        for i in range(0, len(ordered), _KEYS_PER_QUERY):
            rows = session.execute(
                select(
                    _chunks.c.series_id,
                    _chunks.c.chunk,
                    _chunks.c.steps,
                    _chunks.c["values"],
                    _chunks.c.wall_times,
                ).where(
                    _chunks.c.series_id.in_(ordered[i : i + _KEYS_PER_QUERY]),
                    _chunks.c.chunk >= lo,
                    _chunks.c.chunk <= hi,
                )
            )
            for sid, chunk, steps, vals, walls in rows:
                if (sid, chunk) in pieces:
                    existing[(sid, chunk)] = ck.decode(steps, vals, walls)
    return existing


def ingest_points(
    *,
    session: Session,
    run_id: int,
    batch: Sequence[ParsedSeries],
    now: datetime,
    listeners: Sequence[IngestListener] = (),
) -> IngestResult:
    """Write a validated batch (no commit: the caller commits, or rolls back on error)."""
    batch_max = max((int(s.steps.max()) for s in batch), default=None)
    last = _runs.c.last_step
    values: dict[str, object] = {"updated_at": now}
    if batch_max is not None:
        values["last_step"] = case((or_(last.is_(None), last < batch_max), batch_max), else_=last)
        values["last_step_at"] = now
    row = session.execute(
        update(_runs).where(_runs.c.id == run_id).values(**values).returning(last)
    ).first()
    if row is None:
        raise RunNotFoundError(run_id)
    if not batch:
        return IngestResult(0, row[0])

    ids = _series_ids(session, run_id, ((s.metric, s.channel) for s in batch))
    pieces: dict[tuple[int, int], ck.Points] = {}
    ingested: list[IngestedSeries] = []
    accepted = 0
    for s in batch:
        pts = ck.sort_last_wins(s.steps, s.values, s.wall_times)
        accepted += s.steps.shape[0]
        ingested.append(
            IngestedSeries(
                metric=s.metric,
                channel=s.channel or None,
                steps=pts.steps,
                values=pts.values,
                wall_times=pts.wall_times,
            )
        )
        sid = ids[(s.metric, s.channel)]
        chunk_of = pts.steps // ck.CHUNK_STEPS
        if chunk_of[0] == chunk_of[-1]:
            pieces[(sid, int(chunk_of[0]))] = pts
            continue
        bounds = [0, *(np.flatnonzero(np.diff(chunk_of)) + 1).tolist(), len(pts)]
        for lo, hi in itertools.pairwise(bounds):
            pieces[(sid, int(chunk_of[lo]))] = pts.select(slice(lo, hi))

    existing = _existing_chunks(session, pieces)
    inserts, updates = [], []
    merged_pieces = {
        key: new if (old := existing.get(key)) is None else ck.merge(old, new)
        for key, new in pieces.items()
    }
    coarse, fine = ck.summaries(list(merged_pieces.values()))
    for (key, merged), summary, fine_summary in zip(
        merged_pieces.items(), coarse, fine, strict=True
    ):
        old = existing.get(key)
        row_values = ck.encode(merged, summary, fine_summary)
        if old is None:
            inserts.append({"series_id": key[0], "chunk": key[1], **row_values})
        else:
            updates.append({"b_series_id": key[0], "b_chunk": key[1], **row_values})
    if inserts:
        session.execute(insert(_chunks), inserts)
    if updates:
        session.execute(
            update(_chunks).where(
                _chunks.c.series_id == bindparam("b_series_id"),
                _chunks.c.chunk == bindparam("b_chunk"),
            ),
            updates,
        )
    if listeners:
        # the channels only when a listener reads them (the alert engine reads name and share)
        run = session.get(Run, run_id, populate_existing=True, options=[lazyload(Run.channels)])
        for listener in listeners:
            listener(session=session, run=run, series=ingested)
    return IngestResult(accepted, row[0])


def _select_series(
    session: Session, run_id: int, metrics: Sequence[str], channels: Sequence[str]
) -> list[tuple[int, str, str]]:
    query = select(_series.c.id, _series.c.metric, _series.c.channel).where(
        _series.c.run_id == run_id
    )
    if metrics:
        query = query.where(_series.c.metric.in_(metrics))
    if channels:
        query = query.where(_series.c.channel.in_(channels))
    rows = session.execute(query.order_by(_series.c.metric, _series.c.channel))
    return [(int(i), str(m), str(c)) for i, m, c in rows]


def _chunk_range(lo: int, hi: int | None) -> list[Any]:
    cond: list[Any] = [_chunks.c.chunk >= lo // ck.CHUNK_STEPS]
    if hi is not None:
        cond.append(_chunks.c.chunk <= hi // ck.CHUNK_STEPS)
    return cond


def _full_points(
    session: Session, series_ids: list[int], lo: int, hi: int | None
) -> dict[int, ck.Points]:
    """Decoded points of each series within ``[lo, hi]``, sorted by step."""
    parts: dict[int, list[ck.Points]] = {sid: [] for sid in series_ids}
    if not series_ids:
        return {}
    rows = session.execute(
        select(_chunks.c.series_id, _chunks.c.steps, _chunks.c["values"], _chunks.c.wall_times)
        .where(_chunks.c.series_id.in_(series_ids), *_chunk_range(lo, hi))
        .order_by(_chunks.c.series_id, _chunks.c.chunk)
    )
    for sid, steps, vals, walls in rows:
        parts[sid].append(ck.decode(steps, vals, walls))
    out = {}
    for sid, p in parts.items():
        pts = ck.concat(p)
        if len(pts) and (pts.steps[0] < lo or (hi is not None and pts.steps[-1] > hi)):
            keep = pts.steps >= lo
            if hi is not None:
                keep &= pts.steps <= hi
            pts = pts.select(keep)
        out[sid] = pts
    return out


def _summary_downsample(
    session: Session,
    sid: int,
    chunk_ids: list[int],
    summaries: list[bytes],
    lo: int,
    hi: int | None,
    max_points: int,
) -> ck.Points:
    """Downsample a long series from its chunk summaries; partial edge chunks are decoded."""
    summ = ck.decode_summaries(summaries).copy()
    keep = np.ones(len(chunk_ids), dtype=bool)
    for pos in {0, len(chunk_ids) - 1}:
        c = chunk_ids[pos]
        partial = c * ck.CHUNK_STEPS < lo or (hi is not None and (c + 1) * ck.CHUNK_STEPS - 1 > hi)
        if not partial:
            continue
        first, last = c * ck.CHUNK_STEPS, (c + 1) * ck.CHUNK_STEPS - 1
        edge_hi = last if hi is None else min(last, hi)
        pts = _full_points(session, [sid], max(lo, first), edge_hi)[sid]
        if len(pts) == 0:
            keep[pos] = False
            continue
        summ[pos] = np.frombuffer(ck.summarize(pts), dtype=ck.SUMMARY_DTYPE)[0]
    summ = summ[keep]
    mins = ck.Points(summ["min_step"], summ["min_value"], summ["min_wall"])
    maxs = ck.Points(summ["max_step"], summ["max_value"], summ["max_wall"])
    return downsample_summaries(mins, maxs, max_points)


def read_series(
    *,
    session: Session,
    run_id: int,
    metrics: Sequence[str] = (),
    channels: Sequence[str] = (),
    start_step: int | None = None,
    end_step: int | None = None,
    after_step: int | None = None,
    max_points: int | None = None,
) -> list[SeriesData]:
    """Points of the selected series in ``[start_step, end_step]`` and ``> after_step``."""
    lo = max(start_step or 0, (after_step + 1) if after_step is not None else 0)
    hi = end_step
    selected = _select_series(session, run_id, metrics, channels)
    ids = [sid for sid, _, _ in selected]
    if hi is not None and hi < lo:
        points = {sid: ck.concat([]) for sid in ids}
        return [SeriesData(m, c or None, points[s], False) for s, m, c in selected]

    downsampled: dict[int, ck.Points] = {}
    full_ids = ids
    if max_points is not None and ids:
        per: dict[int, tuple[list[int], list[int], list[bytes], list[bytes | None]]] = {
            s: ([], [], [], []) for s in ids
        }
        rows = session.execute(
            select(
                _chunks.c.series_id,
                _chunks.c.chunk,
                _chunks.c.count,
                _chunks.c.summary,
                _chunks.c.fine_summary,
            )
            .where(_chunks.c.series_id.in_(ids), *_chunk_range(lo, hi))
            .order_by(_chunks.c.series_id, _chunks.c.chunk)
        )
        for sid, chunk, count, summary, fine in rows:
            per[sid][0].append(chunk)
            per[sid][1].append(count)
            per[sid][2].append(summary)
            per[sid][3].append(fine)
        buckets = max(1, max_points // 2)
        full_ids = []
        fine_rows: dict[int, list[tuple[int, bytes | None]]] = {}
        for sid, (chunk_ids, counts, summaries, fines) in per.items():
            # blocks with points; a row without fine summary has at least ceil(count / 16)
            blocks = sum(
                -(-c // ck.FINE_STEPS) if f is None else len(f) // _RECORD
                for c, f in zip(counts, fines, strict=True)
            )
            if sum(counts) <= max_points:
                full_ids.append(sid)
            elif len(chunk_ids) >= buckets:
                downsampled[sid] = _summary_downsample(
                    session, sid, chunk_ids, summaries, lo, hi, max_points
                )
            elif blocks >= buckets:
                fine_rows[sid] = list(zip(chunk_ids, fines, strict=True))
            else:
                full_ids.append(sid)
        downsampled.update(fine_downsample(session, fine_rows, lo, hi, max_points))
    full = _full_points(session, full_ids, lo, hi)
    out = []
    for sid, metric, channel in selected:
        if sid in downsampled:
            out.append(SeriesData(metric, channel or None, downsampled[sid], True))
            continue
        pts = full[sid]
        small = max_points is None or len(pts) <= max_points
        if not small:
            pts = downsample_points(pts, max_points)  # type: ignore[arg-type]
        out.append(SeriesData(metric, channel or None, pts, not small))
    return out


def latest_points(*, session: Session, run_id: int) -> list[tuple[str, str | None, int, float]]:
    """(metric, channel, step, value) of the last point of every series of a run."""
    last_chunk = (
        select(_chunks.c.series_id, func.max(_chunks.c.chunk).label("chunk"))
        .join(_series, _series.c.id == _chunks.c.series_id)
        .where(_series.c.run_id == run_id)
        .group_by(_chunks.c.series_id)
        .subquery()
    )
    rows = session.execute(
        select(_series.c.metric, _series.c.channel, _chunks.c.steps, _chunks.c["values"])
        .join(_chunks, _chunks.c.series_id == _series.c.id)
        .join(
            last_chunk,
            (last_chunk.c.series_id == _chunks.c.series_id)
            & (last_chunk.c.chunk == _chunks.c.chunk),
        )
        .order_by(_series.c.metric, _series.c.channel)
    )
    out = []
    for metric, channel, steps, vals in rows:
        s = np.frombuffer(steps, dtype="<i8")
        v = np.frombuffer(vals, dtype="<f8")
        out.append((metric, channel or None, int(s[-1]), float(v[-1])))
    return out
