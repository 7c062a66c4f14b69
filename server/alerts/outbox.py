"""Delivering the outbox after commit: claim due messages, merge them per notifier, send, log.

A message is claimed by setting a lease (``UPDATE ... WHERE lease expired``: atomic on SQLite
and PostgreSQL), so two replicas never send the same message at once; a replica that dies
mid-send lets the lease expire and another one retries (at-least-once). All due messages of one
notifier go out as one grouped message. Failures are retried with exponential backoff
(``RETRY_BASE_S * 2^(attempts-1)``, capped at ``RETRY_MAX_S``) up to ``MAX_ATTEMPTS``; every
attempt is written to the delivery log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from server.alerts.models import AlertDelivery, AlertOutbox, Notifier
from server.alerts.store import to_dt, value_float
from server.notifiers.message import AlertItem, AlertMessage
from server.notifiers.send import kind_of, send_once

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
RETRY_BASE_S = 2.0
RETRY_MAX_S = 600.0
LEASE_S = 60.0


def item_of(data: dict[str, Any]) -> AlertItem:
    return AlertItem(**{**data, "value": value_float(data.get("value"))})


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _claim(session: Session, now: float) -> list[AlertOutbox]:
    """Lease every due message to this sender in ONE statement (a write first: on SQLite it
    takes the write lock at once instead of deadlocking two readers that both upgrade)."""
    token = uuid.uuid4().hex
    free = or_(AlertOutbox.lease_until.is_(None), AlertOutbox.lease_until <= _dt(now))
    due = (AlertOutbox.status == "pending", AlertOutbox.next_attempt_at <= _dt(now), free)
    ids = select(AlertOutbox.id).where(*due).order_by(AlertOutbox.id).limit(200)
    session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id.in_(ids.scalar_subquery()), *due)  # re-checked after a wait
        .values(lease_until=_dt(now + LEASE_S), claimed_by=token, attempts=AlertOutbox.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return list(
        session.scalars(
            select(AlertOutbox).where(AlertOutbox.claimed_by == token).order_by(AlertOutbox.id)
        )
    )


def dispatch_due(
    *, make_session: Callable[[], Session], public_url: str, client: httpx.Client, now: float
) -> int:
    """Send every due outbox message once; return how many messages were delivered."""
    delivered = 0
    with make_session() as session:
        claimed = _claim(session, now)
        by_notifier: dict[int, list[AlertOutbox]] = defaultdict(list)
        for row in claimed:
            by_notifier[row.notifier_id].append(row)
        for notifier_id, rows in by_notifier.items():
            notifier = session.get(Notifier, notifier_id)
            if notifier is None:
                continue
            items = [item_of(i) for row in rows for i in row.items]  # vendors cap the display
            message = AlertMessage(items=items, public_url=public_url, sent_at=now)
            started = time.time()
            try:
                outcome = send_once(kind_of(notifier.kind), notifier.config, message, client=client)
            except Exception as exc:  # a bad config must not stop the dispatcher
                log.exception("notifier %s failed to build its request", notifier.name)
                from server.notifiers.base import Outcome

                outcome = Outcome(False, False, f"{type(exc).__name__}: {exc}")
            duration = time.time() - started
            for row in rows:
                session.add(
                    AlertDelivery(
                        notifier_id=notifier_id,
                        outbox_id=row.id,
                        attempt=row.attempts,
                        ok=outcome.ok,
                        status_code=outcome.status,
                        detail=outcome.detail[:2000],
                        duration_s=duration,
                        at=to_dt(started),
                    )
                )
                row.lease_until, row.claimed_by = None, None
                if outcome.ok:
                    row.status, row.sent_at, row.last_error = "sent", to_dt(now), None
                elif outcome.retry and row.attempts < MAX_ATTEMPTS:
                    delay = outcome.retry_after_s or RETRY_BASE_S * 2 ** (row.attempts - 1)
                    row.next_attempt_at = _dt(now + min(RETRY_MAX_S, delay))
                    row.last_error = outcome.detail
                else:
                    row.status, row.last_error = "failed", outcome.detail
            delivered += int(outcome.ok)
            session.commit()
    return delivered


class OutboxDispatcher:
    """A background thread that delivers the outbox: woken after each alerting commit, and
    polling every ``interval_s`` for retries."""

    def __init__(
        self, make_session: Callable[[], Session], public_url: str, interval_s: float = 1.0
    ) -> None:
        self._make_session = make_session
        self._public_url = public_url
        self._interval = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="lossradar-alert-outbox", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self, now: float | None = None) -> int:
        with httpx.Client(timeout=10.0) as client:
            return dispatch_due(
                make_session=self._make_session,
                public_url=self._public_url,
                client=client,
                now=time.time() if now is None else now,
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            except Exception:  # keep delivering after a database hiccup
                log.exception("alert outbox dispatch failed")
