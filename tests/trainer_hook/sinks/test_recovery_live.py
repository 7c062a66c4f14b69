"""The sender against a REAL lossradar server process through outages; after recovery every
(metric, channel, step) on the server must equal what was logged, exactly once.

The sender talks to the server through `FaultProxy` (a stable address that can refuse, hang,
slow down or answer 503, and survives the server moving to a new port on restart).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.server.live import LiveServer, start_live_server
from trainer_hook.sinks import HttpSender

from .points import expected_points, same_points, server_points, step_metrics
from .proxy import FaultProxy

TRAINER = Path(__file__).with_name("trainer_process.py")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with start_live_server(tmp_path / "server") as server:
        yield server


@pytest.fixture
def proxy(live: LiveServer) -> Iterator[FaultProxy]:
    p = FaultProxy(*_host_port(live.url))
    yield p
    p.close()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _sender(tmp_path: Path, url: str, token: str, **over: float) -> HttpSender:
    settings = {
        "drain_interval_s": 0.01,
        "send_interval_s": 0.01,
        "timeout_s": 2.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        **over,
    }
    return HttpSender(
        url=url, token=token, run_key="live-run", spool_dir=tmp_path / "spool", **settings
    )


def _run_through(
    sender: HttpSender, steps: range, events: dict[int, Callable[[], None]], gap_s: float
) -> float:
    """Log `steps` (`gap_s` apart), firing `events[step]` before that step; return the slowest
    log_step call in seconds. Timings are the benchmark's business (this machine is shared);
    the tests only check that log_step never waits for the network, which would take at least
    the sender's timeout."""
    slowest = 0.0
    for step in steps:
        if step in events:
            events[step]()
        run, channels = step_metrics(step)
        t0 = time.perf_counter()
        sender.log_step(step, run, channels, wall_time=1000.0 + step)
        slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(gap_s)
    return slowest


def _assert_exactly_once(proxy: FaultProxy, token: str, steps: range) -> None:
    got = server_points(proxy.url, token, "live-run")
    assert same_points(got, expected_points(steps))


def test_server_killed_with_sigkill_mid_run_and_restarted(
    live: LiveServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    sender = _sender(tmp_path, proxy.url, live.token)
    with ExitStack() as stack:

        def restart() -> None:
            server = stack.enter_context(
                start_live_server(tmp_path / "restarted", database_url=live.database_url)
            )
            proxy.upstream = _host_port(server.url)

        events = {100: live.process.kill, 200: restart}
        slowest = _run_through(sender, range(300), events, gap_s=0.005)
        assert live.process.wait(5) == -signal.SIGKILL
        assert sender.flush(30)
        _assert_exactly_once(proxy, live.token, range(300))
    assert sender.counters.failed_requests > 0
    assert sender.counters.sent == sender.counters.queued
    assert slowest < 1.0  # the sender's timeout is 2 s
    sender.close()


@pytest.mark.parametrize("fault", ["refuse", "503", "slow", "hang"])
def test_outage_then_recovery(
    fault: str, live: LiveServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    # The fault lasts 160 steps x 15 ms = 2.4 s. "slow": each request reaches the server only
    # after 1.5 s, past the sender's 1 s timeout, so the sender retries points the server
    # already stored; "hang": the server never answers.
    sender = _sender(tmp_path, proxy.url, live.token, timeout_s=1.0)
    proxy.slow_s = 1.5
    slowest = _run_through(
        sender,
        range(240),
        {40: lambda: proxy.set_mode(fault), 200: lambda: proxy.set_mode("forward")},
        gap_s=0.015,
    )
    assert sender.flush(30)
    _assert_exactly_once(proxy, live.token, range(240))
    c = sender.counters
    assert c.failed_requests > 0
    assert c.sent == c.queued == c.spooled
    assert c.dropped == c.rejected == 0
    if fault == "slow":  # the server got some points twice and kept one of each
        assert proxy.duplicated() > 0
    else:
        assert proxy.duplicated() == 0
    assert slowest < 0.5
    sender.close()


@pytest.mark.parametrize("server_during_first_run", ["refuse", "forward"])
def test_training_process_killed_and_restarted_replays_its_spool(
    server_during_first_run: str, live: LiveServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Process 1 logs steps 0..149 and is SIGKILLed once they are spooled (the server refusing
    connections, or up: then it dies in the middle of sending); process 2 resumes from a
    checkpoint at step 100 and re-logs 100..199 with other values."""
    spool = str(tmp_path / "spool")
    proxy.set_mode(server_during_first_run)
    first = subprocess.Popen(
        [
            sys.executable,
            str(TRAINER),
            proxy.url,
            live.token,
            spool,
            "live-run",
            "0",
            "150",
            "0",
            "--hold",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        assert line.startswith("SPOOLED "), line
        sent_by_first = json.loads(line.split(" ", 1)[1])["sent"]
        if server_during_first_run == "refuse":
            assert sent_by_first == 0
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    proxy.set_mode("forward")
    second = subprocess.run(
        [
            sys.executable,
            str(TRAINER),
            proxy.url,
            live.token,
            spool,
            "live-run",
            "100",
            "200",
            "1000",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    ok, counters = second.stdout.split("DONE ", 1)[1].split(" ", 1)
    assert ok == "True"
    want = expected_points(range(100)) | expected_points(range(100, 200), shift=1000.0)
    got = server_points(live.url, live.token, "live-run")
    assert same_points(got, want)
    replayed = json.loads(counters)["replayed"]
    if server_during_first_run == "refuse":
        assert replayed == len(expected_points(range(150)))
    else:  # what the first process had not seen acknowledged (a stale offset re-sends)
        assert 0 <= replayed <= len(expected_points(range(150))) - sent_by_first
