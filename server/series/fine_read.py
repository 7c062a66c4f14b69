"""Downsampled reads from the fine (16-step block) summaries of chunk rows.

Uses the ``fine_summary`` blobs read with the chunk summaries (768 bytes per full chunk
instead of 6 KiB of packed arrays) and buckets their block records
(``server.series.downsample.downsample_blocks``). A chunk is decoded only when its summary
cannot be used as stored: an edge chunk cut by ``[lo, hi]``, or a row written before migration
``0003_fine_summaries`` (``fine_summary IS NULL``).
"""

from __future__ import annotations

from typing import cast

import numpy as np
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from server.db.models import PointChunk
from server.series import chunks as ck
from server.series.downsample import downsample_blocks

_chunks = cast(Table, PointChunk.__table__)


def _is_cut(chunk: int, lo: int, hi: int | None) -> bool:
    first, last = chunk * ck.CHUNK_STEPS, (chunk + 1) * ck.CHUNK_STEPS - 1
    return first < lo or (hi is not None and last > hi)


def _recomputed(
    session: Session, needed: dict[int, set[int]], lo: int, hi: int | None
) -> dict[tuple[int, int], bytes]:
    """Fine summaries of the points within ``[lo, hi]`` of the chunks ``needed[series_id]``."""
    by_chunks: dict[frozenset[int], list[int]] = {}
    for sid, chunk_set in needed.items():
        by_chunks.setdefault(frozenset(chunk_set), []).append(sid)
    keys: list[tuple[int, int]] = []
    parts: list[ck.Points] = []
    for wanted, sids in by_chunks.items():
        rows = session.execute(
            select(
                _chunks.c.series_id,
                _chunks.c.chunk,
                _chunks.c.steps,
                _chunks.c["values"],
                _chunks.c.wall_times,
            ).where(_chunks.c.series_id.in_(sids), _chunks.c.chunk.in_(sorted(wanted)))
        )
        for sid, chunk, steps, vals, walls in rows:
            if chunk not in needed[sid]:
                continue
            pts = ck.decode(steps, vals, walls)
            if _is_cut(chunk, lo, hi):
                keep = pts.steps >= lo
                if hi is not None:
                    keep &= pts.steps <= hi
                pts = pts.select(keep)
            if len(pts):
                keys.append((sid, chunk))
                parts.append(pts)
    return dict(zip(keys, ck.fine_summaries(parts), strict=True))


def fine_downsample(
    session: Session,
    fine_rows: dict[int, list[tuple[int, bytes | None]]],
    lo: int,
    hi: int | None,
    max_points: int,
) -> dict[int, ck.Points]:
    """Min/max downsampling of each series within ``[lo, hi]`` from its fine summaries.

    ``fine_rows[series_id]`` lists ``(chunk, fine_summary)`` of its chunks in ``[lo, hi]``, in
    chunk order, as read with the chunk summaries (one pass over the rows).
    """
    needed: dict[int, set[int]] = {}
    for sid, rows in fine_rows.items():
        for chunk, fine in rows:
            if fine is None or _is_cut(chunk, lo, hi):
                needed.setdefault(sid, set()).add(chunk)
    recomputed = _recomputed(session, needed, lo, hi) if needed else {}
    out = {}
    for sid, rows in fine_rows.items():
        redo = needed.get(sid, set())
        parts = [
            recomputed.get((sid, chunk), b"") if chunk in redo else fine or b""
            for chunk, fine in rows
        ]
        records = np.frombuffer(b"".join(parts), dtype=ck.SUMMARY_DTYPE)
        out[sid] = downsample_blocks(records, max_points)
    return out
