"""The alert engine: detectors, lifecycle, persistence in the ingest transaction, REST, CLI.

``install(app)`` registers the ingest listener, the routers, the outbox thread and the
Prometheus metrics. The pure parts (``rules``, ``forecast``, ``detectors``, ``loss_rules``,
``lifecycle``, ``columns``, ``engine``) import nothing from the server and run anywhere (the
benchmark uses them directly); ``series_columns`` builds the engine's columns from the ingested
series.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Register the alert engine on ``app``; see `server.alerts.install`."""
    from server.alerts.install import install as _install

    _install(app)
