"""REST: notifier CRUD, test-send and the delivery log. Secrets never leave the server.

- ``GET /notifiers``, ``POST /notifiers`` ``{"name", "kind", "config", "enabled", "project"}``
- ``GET|PATCH|DELETE /notifiers/{id}``; PATCH merges ``config`` keys (omit a secret to keep it)
- ``POST /notifiers/{id}/test``: send a test message now, with retries; logged
- ``GET /notifiers/{id}/deliveries?limit=``: the delivery log, newest first
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.alerts.models import AlertDelivery, Notifier
from server.alerts.test_send import send_test_message
from server.deps import ReadAccess, SessionDep, SettingsDep, WriteAccess
from server.notifiers.base import NotifierConfigError, public_config
from server.notifiers.send import kind_of

router = APIRouter(tags=["notifiers"])


class NotifierIn(BaseModel):
    name: str
    kind: str
    config: dict[str, Any]
    enabled: bool = True
    project: str | None = None


class NotifierPatch(BaseModel):
    name: str | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None
    project: str | None = None


class NotifierPublic(BaseModel):
    id: int
    name: str
    kind: str
    config: dict[str, Any]
    enabled: bool
    project: str | None


class DeliveryPublic(BaseModel):
    id: int
    notifier_id: int
    outbox_id: int | None
    attempt: int
    ok: bool
    status_code: int | None
    detail: str
    duration_s: float
    at: datetime


class TestSendResult(BaseModel):
    ok: bool
    attempts: list[DeliveryPublic]


def notifier_public(row: Notifier) -> NotifierPublic:
    return NotifierPublic(
        id=row.id,
        name=row.name,
        kind=row.kind,
        config=public_config(kind_of(row.kind), row.config),
        enabled=row.enabled,
        project=row.project,
    )


def _validated(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return kind_of(kind).validate(config)
    except NotifierConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def _notifier(session: Session, notifier_id: int) -> Notifier:
    row = session.get(Notifier, notifier_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"notifier {notifier_id} does not exist")
    return row


def _unique_name(session: Session, name: str, own_id: int | None = None) -> None:
    other = session.scalars(select(Notifier).where(Notifier.name == name)).first()
    if other is not None and other.id != own_id:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a notifier named {name!r} exists")


@router.get("/notifiers", response_model=list[NotifierPublic], dependencies=[ReadAccess])
def list_notifiers(session: SessionDep) -> list[NotifierPublic]:
    return [notifier_public(r) for r in session.scalars(select(Notifier).order_by(Notifier.id))]


@router.post(
    "/notifiers",
    response_model=NotifierPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[WriteAccess],
)
def create_notifier(body: NotifierIn, session: SessionDep) -> NotifierPublic:
    """Add a notifier; 422 names a bad kind or config key."""
    config = _validated(body.kind, body.config)
    _unique_name(session, body.name)
    row = Notifier(
        name=body.name, kind=body.kind, config=config, enabled=body.enabled, project=body.project
    )
    session.add(row)
    session.commit()
    return notifier_public(row)


@router.get("/notifiers/{notifier_id}", response_model=NotifierPublic, dependencies=[ReadAccess])
def get_notifier(notifier_id: int, session: SessionDep) -> NotifierPublic:
    return notifier_public(_notifier(session, notifier_id))


@router.patch("/notifiers/{notifier_id}", response_model=NotifierPublic, dependencies=[WriteAccess])
def patch_notifier(notifier_id: int, body: NotifierPatch, session: SessionDep) -> NotifierPublic:
    row = _notifier(session, notifier_id)
    if body.name is not None:
        _unique_name(session, body.name, row.id)
        row.name = body.name
    if body.config is not None:
        row.config = _validated(row.kind, {**row.config, **body.config})
    if body.enabled is not None:
        row.enabled = body.enabled
    if "project" in body.model_fields_set:
        row.project = body.project
    session.commit()
    return notifier_public(row)


@router.delete(
    "/notifiers/{notifier_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WriteAccess],
)
def delete_notifier(notifier_id: int, session: SessionDep) -> None:
    session.delete(_notifier(session, notifier_id))
    session.commit()


def _delivery_public(r: AlertDelivery) -> DeliveryPublic:
    return DeliveryPublic(
        id=r.id,
        notifier_id=r.notifier_id,
        outbox_id=r.outbox_id,
        attempt=r.attempt,
        ok=r.ok,
        status_code=r.status_code,
        detail=r.detail,
        duration_s=r.duration_s,
        at=r.at,
    )


def _test_send(session: Session, row: Notifier, public_url: str) -> TestSendResult:
    attempts, logged = send_test_message(session, row, public_url, attempts=3, max_delay=2.0)
    return TestSendResult(
        ok=attempts[-1].outcome.ok, attempts=[_delivery_public(d) for d in logged]
    )


@router.post(
    "/notifiers/{notifier_id}/test", response_model=TestSendResult, dependencies=[WriteAccess]
)
async def test_send(notifier_id: int, session: SessionDep, settings: SettingsDep) -> TestSendResult:
    """Send a test message now (up to 3 attempts); every attempt goes to the delivery log."""
    row = _notifier(session, notifier_id)
    return await run_in_threadpool(_test_send, session, row, settings.public_url)


@router.get(
    "/notifiers/{notifier_id}/deliveries",
    response_model=list[DeliveryPublic],
    dependencies=[ReadAccess],
)
def deliveries(
    notifier_id: int, session: SessionDep, limit: int = Query(100, ge=1, le=1000)
) -> list[DeliveryPublic]:
    _notifier(session, notifier_id)
    rows = session.scalars(
        select(AlertDelivery)
        .where(AlertDelivery.notifier_id == notifier_id)
        .order_by(AlertDelivery.id.desc())
        .limit(limit)
    ).all()
    return [_delivery_public(r) for r in rows]
