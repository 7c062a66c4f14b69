"""The app factory: ``create_app(settings) -> FastAPI``. Nothing is created at import time."""

from __future__ import annotations

import logging

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
    return app
