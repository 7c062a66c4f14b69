"""The engine inside the ingest transaction: load state, evaluate, write alerts, events, outbox.

Exactly-once across restarts and replicas: the run's `AlertRunState` row is locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer, and the ingest already holds
it), so two replicas ingesting the same run judge its steps one after the other; alert rows
are unique per (run, channel, rule); and notifications are written to the outbox in the same
transaction as the points, then sent after the commit (`server.alerts.outbox`). A rolled-back
ingest leaves no alert and no message behind; a committed one cannot lose its message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from server.alerts.engine import AlertKey, RunAlertState, RunRules, evaluate_columns
from server.alerts.lifecycle import AlertStatus, Event
from server.alerts.models import (
    Alert,
    AlertEvent,
    AlertOutbox,
    AlertRuleOverride,
    AlertRunState,
    Notifier,
)
from server.alerts.series_columns import CHANNEL_METRICS, RUN_METRICS, columns_from_series
from server.db.models import Run, RunChannel
from server.series.ingested import IngestedSeries


def to_dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def to_ts(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def value_text(value: float | None) -> str | None:
    return None if value is None else repr(float(value))


def value_float(text: str | None) -> float | None:
    return None if text is None else float(text)


#: The metrics the rules read: [channel series, run-level series].
_READ = (CHANNEL_METRICS, RUN_METRICS)


def _key_str(key: AlertKey) -> str:
    return f"{key[1]}\t{key[0] or ''}"


def _key(text: str) -> AlertKey:
    rule, _, channel = text.partition("\t")
    return (channel or None, rule)


_states = cast(Table, AlertRunState.__table__)
_overrides = cast(Table, AlertRuleOverride.__table__)
_channels = cast(Table, RunChannel.__table__)


def lock_run_state(session: Session, run_id: int) -> tuple[int | None, dict[str, Any]]:
    """The run's engine state (watermark, detector states as stored), its row created if
    missing and locked until the transaction ends."""
    stmt = (
        select(_states.c.watermark, _states.c.detectors)
        .where(_states.c.run_id == run_id)
        .with_for_update()
    )
    row = session.execute(stmt).first()
    if row is None:
        session.execute(_insert_ignore(session).values(run_id=run_id, watermark=None, detectors={}))
        row = session.execute(stmt).one()
    return row[0], row[1] or {}


def store_run_state(
    session: Session, run_id: int, watermark: int | None, detectors: dict[str, Any]
) -> None:
    """Write the run's engine state back (its row is locked by :func:`lock_run_state`)."""
    session.execute(
        update(_states)
        .where(_states.c.run_id == run_id)
        .values(watermark=watermark, detectors=detectors)
    )


def _insert_ignore(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(AlertRunState).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(AlertRunState).on_conflict_do_nothing()


def run_rules(session: Session, run: Run) -> RunRules:
    """The run's channels (target shares) and its override layers: server-wide, run, channel."""
    o, c = _overrides.c, _channels.c  # plain columns: no ORM entity to load
    rows = session.execute(
        select(o.run_id, o.channel, o.rule, o.params).where(
            (o.run_id.is_(None)) | (o.run_id == run.id)
        )
    ).all()
    channels = select(c.name, c.target_share).where(c.run_id == run.id).order_by(c.index)
    server_wide: dict[str, dict[str, float]] = {}
    run_layer: dict[str, dict[str, float]] = {}
    per_channel: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for r in rows:
        if r.run_id is None and not r.channel:
            server_wide[r.rule] = r.params
        elif r.run_id is not None and not r.channel:
            run_layer[r.rule] = r.params
        elif r.run_id is not None:
            per_channel[r.channel][r.rule] = r.params
    return RunRules(
        channels=dict(session.execute(channels).all()),
        layers=(server_wide, run_layer),
        channel_layers=dict(per_channel),
    )


def status_of(row: Alert) -> AlertStatus:
    return AlertStatus(
        state=row.state,
        start_step=row.start_step,
        last_step=row.last_step,
        value=value_float(row.value),
        summary=row.summary,
        active_count=row.active_count,
        clear_count=row.clear_count,
        started_at=to_ts(row.started_at),
        fired_at=to_ts(row.fired_at),
        resolved_at=to_ts(row.resolved_at),
        last_notified_at=to_ts(row.last_notified_at),
        notified=row.notified,
        cooldown_until=to_ts(row.cooldown_until),
        acknowledged=row.acknowledged,
        silenced_until=to_ts(row.silenced_until),
    )


def write_status(row: Alert, status: AlertStatus) -> None:
    row.state = status.state
    row.start_step, row.last_step = status.start_step, status.last_step
    row.value, row.summary = value_text(status.value), status.summary
    row.active_count, row.clear_count = status.active_count, status.clear_count
    row.started_at, row.fired_at = to_dt(status.started_at), to_dt(status.fired_at)
    row.resolved_at = to_dt(status.resolved_at)
    row.last_notified_at = to_dt(status.last_notified_at)
    row.notified = status.notified
    row.cooldown_until = to_dt(status.cooldown_until)
    row.acknowledged = status.acknowledged
    row.silenced_until = to_dt(status.silenced_until)


def evaluate_ingest(
    *, session: Session, run: Run, series: Sequence[IngestedSeries], now: float
) -> list[tuple[Alert, Event]]:
    """Judge the new steps of ``series``; write state, alerts, events and outbox; no commit."""
    if not any(s.steps.shape[0] for s in series if s.metric in _READ[s.channel is None]):
        return []  # nothing the rules read
    watermark, detectors = lock_run_state(session, run.id)
    rules = run_rules(session, run)
    batch = columns_from_series(series, rules.channels, watermark)
    if batch is None:
        return []  # a replay of steps already judged
    rows = {
        (r.channel or None, r.rule): r
        for r in session.scalars(select(Alert).where(Alert.run_id == run.id))
    }
    state = RunAlertState(
        watermark=watermark,
        detectors={_key(k): v for k, v in detectors.items()},  # fresh dicts: the query's own
        alerts={key: status_of(row) for key, row in rows.items()},
    )
    transitions = evaluate_columns(state, batch, rules, now=now)
    stored = {_key_str(k): v for k, v in state.detectors.items()}
    store_run_state(session, run.id, state.watermark, stored)
    out: list[tuple[Alert, Event]] = []
    touched = {(t.channel, t.rule) for t in transitions}
    for key, status in state.alerts.items():
        row = rows.get(key)
        if row is None:
            if key not in touched:
                continue  # never left inactive: no row needed
            row = Alert(run_id=run.id, channel=key[0] or "", rule=key[1])
            session.add(row)
            rows[key] = row
        write_status(row, status)
    session.flush()
    for t in transitions:
        row = rows[(t.channel, t.rule)]
        session.add(
            AlertEvent(
                alert_id=row.id,
                kind=t.event.kind,
                step=t.event.step,
                value=value_text(t.event.value),
                summary=t.event.summary,
                notified=t.event.notify,
                created_at=to_dt(now),
            )
        )
        out.append((row, t.event))
    enqueue(session=session, run=run, events=[(r, e) for r, e in out if e.notify], now=now)
    return out


def item_json(run: Run, alert: Alert, event: Event) -> dict[str, Any]:
    """An outbox item (JSON; the value as text so NaN survives every database)."""
    return {
        "alert_id": alert.id,
        "run_id": run.id,
        "run_name": run.name,
        "channel": alert.channel or None,
        "rule": alert.rule,
        "event": event.kind,
        "value": value_text(event.value),
        "summary": event.summary,
        "start_step": alert.start_step,
        "step": event.step,
    }


def enqueue(
    *, session: Session, run: Run, events: Sequence[tuple[Alert, Event]], now: float
) -> int:
    """One outbox message per enabled notifier (of the run's project), grouping all events."""
    if not events:
        return 0
    notifiers = session.scalars(select(Notifier).where(Notifier.enabled.is_(True))).all()
    targets = [n for n in notifiers if n.project is None or n.project == run.project]
    items = [item_json(run, a, e) for a, e in events]
    if targets:
        session.execute(
            insert(AlertOutbox),
            [
                {
                    "notifier_id": n.id,
                    "items": items,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": to_dt(now),
                    "created_at": to_dt(now),
                }
                for n in targets
            ],
        )
    return len(targets)
