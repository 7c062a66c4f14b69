"""Test-sending a stored notifier (REST endpoint and CLI): the message, the attempts, the log."""

from __future__ import annotations

import time

import httpx
from sqlalchemy.orm import Session

from server.alerts.models import AlertDelivery, Notifier
from server.alerts.store import to_dt
from server.notifiers.message import AlertItem, AlertMessage
from server.notifiers.send import Attempt, deliver, kind_of


def test_message(public_url: str) -> AlertMessage:
    """A harmless message that shows what real alerts look like."""
    item = AlertItem(
        alert_id=None,
        run_id=0,
        run_name="lossradar test",
        channel="example/channel",
        rule="test",
        event="test",
        value=1.0,
        summary="test message from lossradar: this notifier works",
        start_step=0,
        step=0,
    )
    return AlertMessage(items=[item], public_url=public_url, sent_at=time.time())


def send_test_message(
    session: Session, row: Notifier, public_url: str, *, attempts: int, max_delay: float = 60.0
) -> tuple[list[Attempt], list[AlertDelivery]]:
    """Send the test message through `row` now (backoff from 0.5 s) and log every attempt in the
    delivery log (committed); returns the attempts and their log rows."""
    with httpx.Client(timeout=10.0) as client:
        tried = deliver(
            kind_of(row.kind),
            row.config,
            test_message(public_url),
            client=client,
            attempts=attempts,
            base_delay=0.5,
            max_delay=max_delay,
        )
    logged = [
        AlertDelivery(
            notifier_id=row.id,
            outbox_id=None,
            attempt=a.number,
            ok=a.outcome.ok,
            status_code=a.outcome.status,
            detail=a.outcome.detail[:2000],
            duration_s=a.duration_s,
            at=to_dt(a.at),
        )
        for a in tried
    ]
    session.add_all(logged)
    session.commit()
    return tried, logged
