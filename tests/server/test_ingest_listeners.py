"""Ingest listeners run inside the ingest transaction, with the batch as IngestedSeries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import text

from server.db.models import Run
from server.series.ingested import IngestedSeries

Auth = Callable[..., dict[str, str]]


def test_listener_sees_sorted_deduplicated_points_and_the_updated_run(
    client: TestClient, auth: Auth
) -> None:
    h = auth("read", "write")
    run_id = client.post("/api/v1/runs", json={"key": "k"}, headers=h).json()["id"]
    calls: list[dict[str, Any]] = []

    def listener(*, session: Any, run: Run, series: list[IngestedSeries]) -> None:
        # the points are already written in this transaction
        stored = session.execute(text("SELECT count(*) FROM point_chunks")).scalar_one()
        calls.append({"run": (run.id, run.last_step), "series": series, "stored": stored})

    client.app.state.ingest_listeners.append(listener)  # type: ignore[attr-defined]
    resp = client.post(
        f"/api/v1/runs/{run_id}/points",
        json={
            "series": [
                {
                    "metric": "loss",
                    "channel": "fin",
                    "steps": [3, 1, 3],
                    "values": [1.0, 2.0, "NaN"],
                    "wall_times": [10.0, 11.0, 12.0],
                },
                {"metric": "lr", "channel": None, "steps": [2], "values": [0.5]},
            ]
        },
        headers=h,
    )
    assert resp.status_code == 200
    assert len(calls) == 1
    call = calls[0]
    assert call["run"] == (run_id, 3)
    assert call["stored"] == 2
    fin, lr = call["series"]
    assert (fin.metric, fin.channel, lr.metric, lr.channel) == ("loss", "fin", "lr", None)
    assert fin.steps.dtype == np.int64
    assert fin.steps.tolist() == [1, 3]
    assert fin.values[0] == 2.0
    assert np.isnan(fin.values[1])
    assert fin.wall_times.tolist() == [11.0, 12.0]
    assert lr.values.tolist() == [0.5]
