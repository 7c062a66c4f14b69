"""Wiring the alert engine into the app: ingest listener, routers, outbox thread, Prometheus.

Prometheus (the app's own registry):

- ``lossradar_alert_transitions_total{rule, state}``: transitions into ``pending``, ``firing``,
  ``resolved``, ``inactive`` counted by this process after their transaction committed;
- ``lossradar_alerts{rule, state}``: alerts currently in each state, read from the database at
  scrape time (the same on every replica).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from server.alerts.models import Alert
from server.alerts.outbox import OutboxDispatcher
from server.alerts.store import evaluate_ingest
from server.db.models import Run
from server.series.ingested import IngestedSeries

log = logging.getLogger(__name__)


class AlertCountCollector(Collector):
    """Alerts by rule and state, from the database."""

    def __init__(self, make_session: Callable[[], Session]) -> None:
        self._make_session = make_session

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "lossradar_alerts", "alerts currently in each state", labels=["rule", "state"]
        )
        try:
            with self._make_session() as session:
                rows = session.execute(
                    select(Alert.rule, Alert.state, func.count()).group_by(Alert.rule, Alert.state)
                ).all()
            for rule, state, count in rows:
                family.add_metric([rule, state], count)
        except Exception:  # a scrape must not fail because the database hiccups
            log.exception("could not count alerts for /metrics")
        yield family


class AlertListener:
    """The ingest listener: evaluates rules in the ingest transaction, wakes the outbox after."""

    def __init__(self, dispatcher: OutboxDispatcher, transitions: Counter) -> None:
        self.dispatcher = dispatcher
        self.transitions = transitions

    def __call__(self, *, session: Session, run: Run, series: Sequence[IngestedSeries]) -> None:
        results = evaluate_ingest(session=session, run=run, series=series, now=time.time())
        if not results:
            return
        counts = [(alert.rule, ev.kind) for alert, ev in results if ev.kind != "repeat"]
        notify = any(ev.notify for _, ev in results)

        def after_commit(_session: Session) -> None:
            for rule, state in counts:
                self.transitions.labels(rule, state).inc()
            if notify:
                self.dispatcher.wake()

        event.listen(session, "after_commit", after_commit, once=True)


def install(app: FastAPI) -> None:
    """Register the alert engine on ``app`` (called once by ``create_app``)."""
    from server.alerts.api import router as alerts_router
    from server.alerts.api_notifiers import router as notifiers_router

    def make_session() -> Session:  # read at call time: tests swap app.state.sessionmaker
        session: Session = app.state.sessionmaker()
        return session

    registry: CollectorRegistry = app.state.metrics.registry
    transitions = Counter(
        "lossradar_alert_transitions",
        "alert transitions into each state, by rule",
        ["rule", "state"],
        registry=registry,
    )
    registry.register(AlertCountCollector(make_session))
    dispatcher = OutboxDispatcher(make_session, app.state.settings.public_url)
    app.state.alert_dispatcher = dispatcher
    app.state.ingest_listeners.append(AlertListener(dispatcher, transitions))
    app.include_router(alerts_router, prefix="/api/v1")
    app.include_router(notifiers_router, prefix="/api/v1")

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        if getattr(a.state, "alert_outbox_thread", True):  # tests drive run_once() instead
            dispatcher.start()
        try:
            async with inner(a) as state:
                yield state
        finally:
            dispatcher.stop()

    app.router.lifespan_context = lifespan
