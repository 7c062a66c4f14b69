"""A server process that dies mid-batch (points written, not committed) loses the whole batch,
and a restarted server on the same database serves everything committed before."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.server.live import start_live_server

# A real server whose ingest listener kills the process (no cleanup, no rollback) when a batch
# contains the metric "crash": the points of that batch are written but never committed.
CRASHING_SERVER = """
import os
from server.app import create_app
from server.cli import serve_app
from server.settings import Settings

def crash(*, session, run, series):
    if any(s.metric == "crash" for s in series):
        os._exit(3)

settings = Settings()
app = create_app(settings)
app.state.ingest_listeners.append(crash)
serve_app(app, settings, host="127.0.0.1", port=0, log_level="warning")
"""


def test_a_crash_mid_batch_leaves_no_half_written_batch(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    command = [sys.executable, "-c", CRASHING_SERVER]
    with start_live_server(tmp_path / "first", database_url=db, command=command) as live:
        h = live.headers(live.token)
        run_id = httpx.post(f"{live.url}/api/v1/runs", json={"key": "k"}, headers=h).json()["id"]
        ok = httpx.post(
            f"{live.url}/api/v1/runs/{run_id}/points",
            headers=h,
            json={
                "series": [
                    {"metric": "loss", "channel": "a", "steps": [1, 2], "values": [1.0, 2.0]}
                ]
            },
        )
        assert ok.json() == {"accepted": 2, "last_step": 2}
        with pytest.raises(httpx.HTTPError):
            httpx.post(
                f"{live.url}/api/v1/runs/{run_id}/points",
                headers=h,
                json={
                    "series": [
                        {"metric": "loss", "channel": "a", "steps": [2, 3, 4], "values": [9.0] * 3},
                        {"metric": "crash", "channel": None, "steps": [4], "values": [0.0]},
                    ]
                },
            )
        assert live.process.wait(10) == 3
    with start_live_server(tmp_path / "second", database_url=db) as live:
        h = live.headers(live.token)
        got = httpx.get(f"{live.url}/api/v1/runs/{run_id}/series", headers=h).json()
        assert got["last_step"] == 2
        assert [(s["metric"], s["steps"], s["values"]) for s in got["series"]] == [
            ("loss", [1, 2], [1.0, 2.0])
        ]
