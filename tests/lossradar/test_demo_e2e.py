"""`lossradar demo` from the repository, end to end, with a short run.

Asserts what the issue asks: the channel losses reached the server (every step, exact values),
the corruption alert fired and was delivered to the demo's webhook receiver, and the dashboard
page answers. The demo runs as a real process tree (demo -> `lossradar serve` child).
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.megatron]

ROOT = Path(__file__).resolve().parents[2]
STEPS = 30
CORRUPT_STEP = 22  # the spike/divergence rules need 20 observations of history first
CHANNELS = ["finance", "math", "code", "general"]


def _lines(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line)


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lossradar.cli",
            "demo",
            "--steps",
            str(STEPS),
            "--batch-size",
            "8",
            "--corrupt",
            f"finance@{CORRUPT_STEP}:language",
            "--data-dir",
            str(tmp_path / "data"),
            "--summary-json",
            str(summary_path),
            "--alert-wait",
            "60",
            "--keep-serving",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 540
        while not any("press Ctrl-C to stop" in line for line in output):
            assert proc.poll() is None or not lines.empty(), "demo exited:\n" + "".join(output)
            assert time.monotonic() < deadline, "demo too slow:\n" + "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        text = "".join(output)
        summary = json.loads(summary_path.read_text())
        run_id = summary["run_id"]

        # 1. the corruption alert fired and reached the local receiver (which printed it)
        firing = [
            a
            for message in summary["received"]
            for a in message["alerts"]
            if a["event"] == "firing" and a["channel"] == "finance"
        ]
        assert firing, text
        assert {a["rule"] for a in firing} <= {"spike", "divergence", "non_finite"}
        assert all(CORRUPT_STEP <= a["start_step"] < STEPS for a in firing)
        assert all(a["run_id"] == run_id for a in firing)
        assert all(a["url"].startswith(f"{summary['server_url']}/#/runs/{run_id}") for a in firing)
        assert f"firing {firing[0]['rule']} finance" in text  # printed by the receiver
        assert any(a["channel"] == "finance" for a in summary["alerts"])

        with httpx.Client(
            base_url=summary["server_url"],
            headers={"Authorization": f"Bearer {summary['token']}"},
            timeout=30,
        ) as client:
            # 2. channel losses reached the server: every step of every channel, exact values
            run = client.get(f"/api/v1/runs/{run_id}").json()
            assert [c["name"] for c in run["channels"]] == CHANNELS
            assert {c["name"]: c["target_share"] for c in run["channels"]} == {
                "finance": 0.3,
                "math": 0.2,
                "code": 0.2,
                "general": 0.3,
            }
            assert run["last_step"] == STEPS - 1
            series = client.get(
                f"/api/v1/runs/{run_id}/series", params={"metric": "loss", "channel": CHANNELS}
            ).json()["series"]
            by_channel = {s["channel"]: s for s in series}
            assert sorted(by_channel) == sorted(CHANNELS)
            for name in CHANNELS:
                assert by_channel[name]["steps"] == list(range(STEPS))
                values = by_channel[name]["values"]
                assert all(isinstance(v, float) and math.isfinite(v) for v in values)
                assert values[-1] == summary["last_channel_metrics"][name]["loss"]
            finance = by_channel["finance"]["values"]
            assert finance[CORRUPT_STEP] > finance[CORRUPT_STEP - 1] + 0.5  # foreign text
            weights = client.get(
                f"/api/v1/runs/{run_id}/series", params={"metric": "weight", "channel": "finance"}
            ).json()["series"][0]["values"]
            assert weights[0] == 1.0  # reweighting warm-up
            assert weights[-1] != 1.0  # channel-level reweighting moved it

            # 3. the dashboard answers, and reads need no token (local demo server)
            assert httpx.get(f"{summary['server_url']}/api/v1/runs/{run_id}").status_code == 200
            page = client.get("/")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(summary["server_url"] + "/healthz", timeout=2)  # the server child is gone
