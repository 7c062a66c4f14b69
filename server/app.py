"""The app factory: ``create_app(settings) -> FastAPI``. Nothing is created at import time."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

import dashboard
from server.alerts import install as install_alerts
from server.api import health, points, runs, series
from server.db.engine import make_engine, make_sessionmaker
from server.observability import ServerMetrics
from server.series.ingested import IngestListener
from server.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service on ``settings`` (default: from the environment).

    ``app.state`` holds ``settings``, ``engine``, ``sessionmaker``, ``metrics`` (the Prometheus
    registry and instruments) and ``ingest_listeners`` (see `server.series.ingested`).
    """
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    make_session = make_sessionmaker(engine)
    app = FastAPI(
        title="lossradar",
        version="0.1.0",
        summary="Per-channel loss, reweighting weights and alerts for blended-data LLM training.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_session
    app.state.metrics = ServerMetrics(lambda: app.state.sessionmaker(), settings)
    listeners: list[IngestListener] = []
    app.state.ingest_listeners = listeners

    app.include_router(runs.router, prefix=API_PREFIX)
    app.include_router(points.router, prefix=API_PREFIX)
    app.include_router(series.router, prefix=API_PREFIX)
    app.include_router(health.router)

    # --- integration points (one line each, added by their owners) ---
    install_alerts(app)  # alert engine: ingest listener, /alerts, /notifiers, outbox
    dashboard.mount(app)  # the web UI at "/" and "/static/*"
    _freeze_at_startup(app)
    return app


_frozen: list[bool] = []  # set once the process has frozen its start-up objects


def _freeze_at_startup(app: FastAPI) -> None:
    """At the first start-up of the process, move every live object (modules, routes, the app)
    out of the cyclic collector's reach (`gc.freeze`): its full collections, which the many
    short-lived objects of each ingest trigger, then traverse only what was created since."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        if not _frozen:
            _frozen.append(True)
            gc.collect()
            gc.freeze()
        async with inner(a) as state:
            yield state

    app.router.lifespan_context = lifespan
