"""Prometheus metrics from the app's own registry.

- ``lossradar_ingest_requests_total{outcome}``, ``lossradar_ingest_points_total`` and the
  ``lossradar_ingest_duration_seconds`` histogram, counted by this process;
- ``lossradar_channel_loss``, ``lossradar_channel_weight``, ``lossradar_channel_token_share``
  ``{run_id, run_key, channel}``: the latest value, read from the database at scrape time, for
  active runs only (status ``running`` and points within ``LOSSRADAR_ACTIVE_RUN_WINDOW_S``, at
  most ``LOSSRADAR_METRICS_MAX_RUNS`` runs), so cardinality stays bounded and every replica
  reports the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Run
from server.series.store import latest_points
from server.settings import Settings

log = logging.getLogger(__name__)

#: metric stored per channel -> exported gauge name
CHANNEL_GAUGES = {
    "loss": "lossradar_channel_loss",
    "weight": "lossradar_channel_weight",
    "token_share": "lossradar_channel_token_share",
}


class ActiveRunCollector(Collector):
    """Latest per-channel loss, weight and token share of the active runs."""

    def __init__(self, make_session: Callable[[], Session], settings: Settings) -> None:
        self._make_session = make_session
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["run_id", "run_key", "channel"]
        families = {
            metric: GaugeMetricFamily(
                name, f"latest channel {metric} of active runs", labels=labels
            )
            for metric, name in CHANNEL_GAUGES.items()
        }
        since = datetime.now(UTC) - timedelta(seconds=self._settings.active_run_window_s)
        try:
            with self._make_session() as session:
                runs = session.execute(
                    select(Run.id, Run.key)
                    .where(Run.status == "running", Run.last_step_at >= since)
                    .order_by(Run.last_step_at.desc())
                    .limit(self._settings.metrics_max_runs)
                ).all()
                for run_id, key in runs:
                    for metric, channel, _step, value in latest_points(
                        session=session, run_id=run_id
                    ):
                        if channel is not None and metric in families:
                            families[metric].add_metric([str(run_id), key, channel], value)
        except Exception:  # a scrape must not fail because the database hiccups
            log.exception("could not read active runs for /metrics")
        yield from families.values()


class ServerMetrics:
    """The app's registry and the instruments the routes update."""

    def __init__(self, make_session: Callable[[], Session], settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.ingest_requests = Counter(
            "lossradar_ingest_requests",
            "points batches received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_points = Counter(
            "lossradar_ingest_points", "points written", registry=self.registry
        )
        self.ingest_seconds = Histogram(
            "lossradar_ingest_duration_seconds",
            "time to validate and write one points batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(ActiveRunCollector(make_session, settings))
