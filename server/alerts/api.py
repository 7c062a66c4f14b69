"""REST: alerts, their event history, silence and acknowledge, and rule threshold overrides.

- ``GET  /alerts?run_id=&state=&rule=&channel=&limit=&offset=`` -> ``{"data", "count"}``
- ``GET  /alerts/{id}``, ``GET /alerts/{id}/events``
- ``POST /alerts/{id}/silence`` ``{"duration_s": 3600}``; ``DELETE /alerts/{id}/silence``
- ``POST /alerts/{id}/ack``; ``DELETE /alerts/{id}/ack``
- ``GET  /alert-rules`` (defaults), ``GET /alert-rules/effective?run_id=&channel=``
- ``GET  /alert-rules/overrides?run_id=``; ``PUT /alert-rules/overrides``
  ``{"run_id": int|null, "channel": str|null, "rule", "params": {...}}``;
  ``DELETE /alert-rules/overrides/{id}``
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from server.alerts.models import Alert, AlertEvent, AlertRuleOverride
from server.alerts.rules import DEFAULTS, RuleConfigError, thresholds, validate_overrides
from server.alerts.store import run_rules, to_dt, value_float
from server.db.models import Run
from server.deps import ReadAccess, SessionDep, WriteAccess

router = APIRouter(tags=["alerts"])

Number = float | str | None


def num(text: str | None) -> Number:
    """A stored value as the API writes numbers: finite floats, or "NaN"/"Infinity"."""
    value = value_float(text)
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


class AlertPublic(BaseModel):
    id: int
    run_id: int
    channel: str | None
    rule: str
    state: str
    start_step: int | None
    last_step: int | None
    value: Number
    summary: str
    silenced: bool
    silenced_until: datetime | None
    acknowledged: bool
    started_at: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None


class AlertsPublic(BaseModel):
    data: list[AlertPublic]
    count: int


class AlertEventPublic(BaseModel):
    id: int
    alert_id: int
    kind: str
    step: int | None
    value: Number
    summary: str
    notified: bool
    created_at: datetime


class AlertEventsPublic(BaseModel):
    data: list[AlertEventPublic]
    count: int


class SilenceIn(BaseModel):
    duration_s: float = Field(gt=0, description="silence notifications for this many seconds")


class OverrideIn(BaseModel):
    run_id: int | None = None
    channel: str | None = None
    rule: str
    params: dict[str, Any]


class OverridePublic(OverrideIn):
    id: int


def public(row: Alert, now: float | None = None) -> AlertPublic:
    now = time.time() if now is None else now
    until = row.silenced_until
    return AlertPublic(
        id=row.id,
        run_id=row.run_id,
        channel=row.channel or None,
        rule=row.rule,
        state=row.state,
        start_step=row.start_step,
        last_step=row.last_step,
        value=num(row.value),
        summary=row.summary,
        silenced=until is not None and to_dt(now) < _aware(until),  # type: ignore[operator]
        silenced_until=until,
        acknowledged=row.acknowledged,
        started_at=row.started_at,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
    )


def _aware(dt: datetime) -> datetime:
    from datetime import UTC

    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _alert(session: SessionDep, alert_id: int) -> Alert:
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} does not exist")
    return row


@router.get("/alerts", response_model=AlertsPublic, dependencies=[ReadAccess])
def list_alerts(
    session: SessionDep,
    run_id: int | None = None,
    state: str | None = Query(None, description="pending | firing | resolved | inactive"),
    rule: str | None = None,
    channel: str | None = Query(None, description="channel name; empty string: run-level"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> AlertsPublic:
    """Alerts, newest activity first, filtered by run, state, rule and channel."""
    stmt = select(Alert)
    if run_id is not None:
        stmt = stmt.where(Alert.run_id == run_id)
    if state is not None:
        stmt = stmt.where(Alert.state == state)
    if rule is not None:
        stmt = stmt.where(Alert.rule == rule)
    if channel is not None:
        stmt = stmt.where(Alert.channel == channel)
    count = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Alert.id.desc()).limit(limit).offset(offset)).all()
    return AlertsPublic(data=[public(r) for r in rows], count=count)


@router.get("/alerts/{alert_id}", response_model=AlertPublic, dependencies=[ReadAccess])
def get_alert(alert_id: int, session: SessionDep) -> AlertPublic:
    return public(_alert(session, alert_id))


@router.get(
    "/alerts/{alert_id}/events", response_model=AlertEventsPublic, dependencies=[ReadAccess]
)
def alert_events(alert_id: int, session: SessionDep) -> AlertEventsPublic:
    """The alert's history, oldest first."""
    _alert(session, alert_id)
    rows = session.scalars(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).all()
    data = [
        AlertEventPublic(
            id=r.id,
            alert_id=r.alert_id,
            kind=r.kind,
            step=r.step,
            value=num(r.value),
            summary=r.summary,
            notified=r.notified,
            created_at=r.created_at,
        )
        for r in rows
    ]
    return AlertEventsPublic(data=data, count=len(data))


def _record(session: SessionDep, row: Alert, kind: str, summary: str) -> AlertPublic:
    session.add(
        AlertEvent(
            alert_id=row.id,
            kind=kind,
            step=row.last_step,
            value=row.value,
            summary=summary,
            notified=False,
            created_at=to_dt(time.time()),
        )
    )
    session.commit()
    return public(row)


@router.post("/alerts/{alert_id}/silence", response_model=AlertPublic, dependencies=[WriteAccess])
def silence(alert_id: int, body: SilenceIn, session: SessionDep) -> AlertPublic:
    """No notifications for this alert during ``duration_s`` (transitions are still stored)."""
    row = _alert(session, alert_id)
    row.silenced_until = to_dt(time.time() + body.duration_s)
    return _record(session, row, "silenced", f"silenced for {body.duration_s:g} s")


@router.delete("/alerts/{alert_id}/silence", response_model=AlertPublic, dependencies=[WriteAccess])
def unsilence(alert_id: int, session: SessionDep) -> AlertPublic:
    row = _alert(session, alert_id)
    row.silenced_until = None
    return _record(session, row, "unsilenced", "silence lifted")


@router.post("/alerts/{alert_id}/ack", response_model=AlertPublic, dependencies=[WriteAccess])
def acknowledge(alert_id: int, session: SessionDep) -> AlertPublic:
    """Stop repeat reminders until the alert resolves (its resolve is still sent)."""
    row = _alert(session, alert_id)
    row.acknowledged = True
    return _record(session, row, "acknowledged", "acknowledged")


@router.delete("/alerts/{alert_id}/ack", response_model=AlertPublic, dependencies=[WriteAccess])
def unacknowledge(alert_id: int, session: SessionDep) -> AlertPublic:
    row = _alert(session, alert_id)
    row.acknowledged = False
    return _record(session, row, "unacknowledged", "acknowledgement withdrawn")


@router.get("/alert-rules", dependencies=[ReadAccess])
def rule_defaults() -> dict[str, dict[str, float | None]]:
    """Every rule with its default thresholds (NaN bounds shown as null)."""
    return {
        rule: {k: (v if math.isfinite(v) else None) for k, v in params.items()}
        for rule, params in DEFAULTS.items()
    }


@router.get("/alert-rules/effective", dependencies=[ReadAccess])
def effective_rules(
    run_id: int, session: SessionDep, channel: str | None = None
) -> dict[str, dict[str, float | None]]:
    """The thresholds in force for a run (and channel): defaults <- server <- run <- channel."""
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} does not exist")
    rules = run_rules(session, run)
    return {
        rule: {k: (v if math.isfinite(v) else None) for k, v in rules.params(rule, channel).items()}
        for rule in DEFAULTS
    }


def _override_public(r: AlertRuleOverride) -> OverridePublic:
    return OverridePublic(
        id=r.id, run_id=r.run_id, channel=r.channel or None, rule=r.rule, params=r.params
    )


@router.get(
    "/alert-rules/overrides", response_model=list[OverridePublic], dependencies=[ReadAccess]
)
def list_overrides(session: SessionDep, run_id: int | None = None) -> list[OverridePublic]:
    """Overrides: all, or the server-wide ones and those of ``run_id``."""
    stmt = select(AlertRuleOverride).order_by(AlertRuleOverride.id)
    if run_id is not None:
        stmt = stmt.where((AlertRuleOverride.run_id == run_id) | AlertRuleOverride.run_id.is_(None))
    return [_override_public(r) for r in session.scalars(stmt)]


@router.put("/alert-rules/overrides", response_model=OverridePublic, dependencies=[WriteAccess])
def put_override(body: OverrideIn, session: SessionDep) -> OverridePublic:
    """Create or replace the overrides of one rule at one level (422 names a bad key)."""
    try:
        validate_overrides({body.rule: body.params}, where="params")
        thresholds(body.rule, {body.rule: body.params})
    except RuleConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if body.channel and body.run_id is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "a channel override needs run_id: channels belong to runs",
        )
    if body.run_id is not None and session.get(Run, body.run_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {body.run_id} does not exist")
    channel = body.channel or ""
    stmt = select(AlertRuleOverride).where(
        AlertRuleOverride.channel == channel, AlertRuleOverride.rule == body.rule
    )
    stmt = stmt.where(
        AlertRuleOverride.run_id.is_(None)
        if body.run_id is None
        else AlertRuleOverride.run_id == body.run_id
    )
    row = session.scalars(stmt).first()
    if row is None:
        row = AlertRuleOverride(run_id=body.run_id, channel=channel, rule=body.rule)
        session.add(row)
    row.params = dict(body.params)
    session.commit()
    return _override_public(row)


@router.delete(
    "/alert-rules/overrides/{override_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WriteAccess],
)
def delete_override(override_id: int, session: SessionDep) -> None:
    row = session.get(AlertRuleOverride, override_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"override {override_id} does not exist")
    session.delete(row)
    session.commit()
