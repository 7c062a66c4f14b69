"""Run service functions: create-or-get by key, list, read, update, delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.models import Run, RunChannel
from server.schemas import ChannelIn, RunCreate, RunUpdate


def _merge_channels(run: Run, channels: Sequence[ChannelIn]) -> None:
    """Append new channels in order; update the target share of known ones when given."""
    by_name = {c.name: c for c in run.channels}
    for ch in channels:
        known = by_name.get(ch.name)
        if known is None:
            index = max((c.index for c in run.channels), default=-1) + 1
            new = RunChannel(index=index, name=ch.name, target_share=ch.target_share)
            run.channels.append(new)
            by_name[ch.name] = new
        elif ch.target_share is not None:
            known.target_share = ch.target_share


def get_run_by_key(*, session: Session, key: str) -> Run | None:
    return session.scalars(select(Run).where(Run.key == key)).first()


def create_or_get_run(*, session: Session, run_in: RunCreate) -> tuple[Run, bool]:
    """The run with ``run_in.key``, created if new; channels merged. Returns (run, created)."""
    run = get_run_by_key(session=session, key=run_in.key)
    created = False
    if run is None:
        try:
            with session.begin_nested():
                run = Run(
                    key=run_in.key,
                    name=run_in.name or run_in.key,
                    project=run_in.project,
                    tags=list(run_in.tags),
                    config=dict(run_in.config),
                    status="running",
                )
                session.add(run)
                session.flush()
            created = True
        except IntegrityError:  # registered concurrently by another request
            run = get_run_by_key(session=session, key=run_in.key)
            assert run is not None
    else:  # a resumed job: same run, running again
        run.status = "running"
        run.updated_at = datetime.now(UTC)
    _merge_channels(run, run_in.channels)
    session.flush()
    return run, created


def list_runs(
    *,
    session: Session,
    project: str | None = None,
    tag: str | None = None,
    q: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """Runs matching every given filter, most recently updated first, and their total count."""
    query = select(Run)
    if project is not None:
        query = query.where(Run.project == project)
    if status is not None:
        query = query.where(Run.status == status)
    if q:
        pattern = f"%{q.lower()}%"
        query = query.where(
            or_(func.lower(Run.name).like(pattern), func.lower(Run.key).like(pattern))
        )
    runs = list(session.scalars(query.order_by(Run.updated_at.desc(), Run.id.desc())))
    if tag is not None:  # tags are a JSON list: filtered here, portable across databases
        runs = [r for r in runs if tag in (r.tags or [])]
    return runs[offset : offset + limit], len(runs)


def update_run(*, session: Session, run: Run, run_in: RunUpdate) -> Run:
    if run_in.status is not None:
        run.status = run_in.status
    if run_in.name is not None:
        run.name = run_in.name
    if run_in.tags is not None:
        run.tags = list(run_in.tags)
    run.updated_at = datetime.now(UTC)
    session.flush()
    return run


def delete_run(*, session: Session, run: Run) -> None:
    session.execute(delete(Run).where(Run.id == run.id))
    session.expunge(run)
