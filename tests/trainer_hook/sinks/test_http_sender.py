"""The HTTP sender against an in-process stand-in server: delivery, errors, replay, fork."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from trainer_hook.sinks import HttpSender, SenderConfig

from .conftest import fast_settings
from .points import expected_points, same_points, step_metrics
from .receiver import Receiver


def log_steps(sender: HttpSender, steps: range) -> None:
    for s in steps:
        run, channels = step_metrics(s)
        sender.log_step(s, run, channels, wall_time=1000.0 + s)


def test_every_point_arrives_once_with_nan_and_absent_channels(
    receiver: Receiver, tmp_path: Path
) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    log_steps(sender, range(50))
    assert sender.flush(10)
    want = expected_points(range(50))
    assert same_points(receiver.points(), want)
    assert receiver.max_deliveries() == 1
    c = sender.counters.as_dict()
    assert c["queued"] == c["spooled"] == c["sent"] == len(want) == 50 * 2 + 25 * 64 + 25 * 60
    assert c["dropped"] == c["replayed"] == c["rejected"] == c["failed_requests"] == 0
    sender.close()


def test_server_down_at_start_then_up(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = HttpSender(**fast_settings(tmp_path, f"http://127.0.0.1:{port}"))
    t0 = time.perf_counter()
    log_steps(sender, range(20))
    assert time.perf_counter() - t0 < 0.5  # never blocks on the dead server
    assert not sender.flush(0.3)
    assert sender.counters.failed_requests >= 1
    assert sender.counters.spooled == sender.counters.queued
    # the server comes up on that port
    receiver = Receiver(token="secret", port=port).start()
    try:
        log_steps(sender, range(20, 30))
        assert sender.flush(10)
        assert same_points(receiver.points(), expected_points(range(30)))
    finally:
        sender.close()
        receiver.stop()


def test_503_is_retried_until_accepted(receiver: Receiver, tmp_path: Path) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    log_steps(sender, range(5))
    assert sender.flush(5)
    receiver.status_override = 503
    log_steps(sender, range(5, 15))
    assert not sender.flush(0.3)
    assert sender.counters.failed_requests >= 2
    receiver.status_override = None
    assert sender.flush(10)
    assert same_points(receiver.points(), expected_points(range(15)))
    sender.close()


def test_a_step_the_server_refuses_is_isolated_and_kept(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = receiver.handle

    def refuse_step_3(path: str, body: dict) -> tuple[int, dict]:
        if path.endswith("/points") and any(r["s"] == 3 for r in body["records"]):
            return 422, {"detail": "step 3 is bad"}
        return original(path, body)

    receiver.handle = refuse_step_3  # type: ignore[method-assign]
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    log_steps(sender, range(8))
    with caplog.at_level(logging.ERROR):
        assert sender.flush(10)
    want = {k: v for k, v in expected_points(range(8)).items() if k[2] != 3}
    assert same_points(receiver.points(), want)
    assert sender.counters.rejected == len(expected_points(range(3, 4)))
    rejected = (sender.config.run_spool_dir / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 1
    assert rejected[0].startswith(f'{{"n":{len(expected_points(range(3, 4)))},"s":3,')
    assert "refused step 3 (HTTP 422" in caplog.text
    sender.close()


def test_bad_token_keeps_spooling_and_logs(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url, token="wrong"))
    with caplog.at_level(logging.ERROR):
        log_steps(sender, range(3))
        assert not sender.flush(0.3)
    assert "HTTP 401" in caplog.text
    assert sender.counters.sent == 0
    assert sender.counters.spooled == sender.counters.queued > 0
    sender.close(0.1)
    # a restart with the right token delivers what was spooled
    fixed = HttpSender(**fast_settings(tmp_path, receiver.url))
    log_steps(fixed, range(3, 4))
    assert fixed.flush(10)
    assert same_points(receiver.points(), expected_points(range(4)))
    assert fixed.counters.replayed == len(expected_points(range(3)))
    fixed.close()


def test_the_run_is_registered_once_and_new_channels_travel_with_their_points(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The server adds a channel first seen in points to the run (tested on the server)."""
    seen: list[list[str]] = []
    original = receiver.handle

    def spy(path: str, body: dict) -> tuple[int, dict]:
        if path == "/api/v1/runs":
            seen.append([c["name"] for c in body["channels"]])
        return original(path, body)

    receiver.handle = spy  # type: ignore[method-assign]
    sender = HttpSender(**fast_settings(tmp_path, receiver.url, channels=["a"]))
    sender.log_step(0, {"lm_loss": 1.0}, {"a": {"loss": 1.0}})
    assert sender.flush(5)
    sender.log_step(1, {"lm_loss": 1.0}, {"a": {"loss": 1.0}, "b": {"loss": 2.0}})
    assert sender.flush(5)
    assert seen == [["a"]]
    assert receiver.points()[("loss", "b", 1)] == 2.0
    assert sender.run_id == 1
    sender.close()


def test_log_step_never_raises_on_bad_input(receiver: Receiver, tmp_path: Path) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    sender.log_step(0, None, {})  # type: ignore[arg-type]
    sender.log_step(1, {"x": "not a number"}, {})  # type: ignore[dict-item]
    sender.log_step(2, {"x": 2.0}, {})
    assert sender.flush(5)
    assert receiver.points() == {("x", None, 2): 2.0}
    assert sender.counters.invalid == 1
    sender.close()


def test_log_step_snapshots_the_callers_dicts(receiver: Receiver, tmp_path: Path) -> None:
    """A caller that reuses and mutates its dicts after log_step never changes logged points."""
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    run: dict[str, float] = {}
    channels: dict[str, dict[str, float]] = {"a": {}}
    for step in range(3):
        run["lm_loss"] = float(step)
        channels["a"]["loss"] = 10.0 + step
        sender.log_step(step, run, channels, wall_time=1.0)
    channels["b"] = {"loss": 99.0}  # after the last call: must not appear
    assert sender.flush(5)
    want = {("lm_loss", None, s): float(s) for s in range(3)}
    want |= {("loss", "a", s): 10.0 + s for s in range(3)}
    assert receiver.points() == want
    sender.close()


def test_log_step_takes_numpy_scalars_and_other_mappings(
    receiver: Receiver, tmp_path: Path
) -> None:
    import types

    import numpy as np

    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    sender.log_step(
        0,
        types.MappingProxyType({"lm_loss": np.float64(2.5)}),
        {"a": types.MappingProxyType({"loss": np.float32(0.5), "tokens": np.int64(7)})},
    )
    sender.log_step(1, {"lm_loss": np.float64("nan")}, {"a": {"bad": np.arange(3)}})
    assert sender.flush(5)
    points = receiver.points()
    assert {k: v for k, v in points.items() if k[2] == 0} == {
        ("lm_loss", None, 0): 2.5,
        ("loss", "a", 0): 0.5,
        ("tokens", "a", 0): 7.0,
    }
    assert not any(k[2] == 1 for k in points)  # step 1 has a non-numeric value: skipped whole
    assert sender.counters.invalid == 2
    sender.close()


def test_forked_child_does_not_touch_the_parents_sender(receiver: Receiver, tmp_path: Path) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    log_steps(sender, range(2))
    pid = os.fork()
    if pid == 0:  # child: logging is ignored, flush/close return at once
        code = 0
        try:
            sender.log_step(99, {"lm_loss": 1.0}, {})
            code = 0 if sender.flush(1) is False and not sender._threads else 3
            sender.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log_steps(sender, range(2, 4))
    assert sender.flush(5)
    assert same_points(receiver.points(), expected_points(range(4)))
    sender.close()


def test_a_sender_forked_before_first_use_works_in_the_child(
    receiver: Receiver, tmp_path: Path
) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log_steps(sender, range(3))
            code = 0 if sender.flush(5) else 2
            sender.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert same_points(receiver.points(), expected_points(range(3)))
    sender.close()


def test_config_errors_say_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOSSRADAR_URL", raising=False)
    monkeypatch.delenv("LOSSRADAR_RUN_KEY", raising=False)
    with pytest.raises(ValueError, match="set LOSSRADAR_URL"):
        SenderConfig(run_key="k")
    with pytest.raises(ValueError, match="set LOSSRADAR_RUN_KEY"):
        SenderConfig(url="http://x:1")
    with pytest.raises(ValueError, match="not an http"):
        HttpSender(url="ftp://x", run_key="k")
    with pytest.raises(ValueError, match="backoff_max_s"):
        SenderConfig(url="http://x:1", run_key="k", backoff_base_s=5, backoff_max_s=1)
    monkeypatch.setenv("LOSSRADAR_URL", "http://env:9")
    monkeypatch.setenv("LOSSRADAR_RUN_KEY", "job-7")
    monkeypatch.setenv("LOSSRADAR_TOKEN", "tok")
    cfg = SenderConfig()
    assert (cfg.url, cfg.run_key, cfg.token) == ("http://env:9", "job-7", "tok")


def test_corrupt_spool_lines_are_stepped_over(receiver: Receiver, tmp_path: Path) -> None:
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    directory = sender.config.run_spool_dir
    directory.mkdir(parents=True)
    (directory / "records.jsonl").write_bytes(
        b'{"s":0,"t":1.0,"r":{"a":1.5},"c":{}}\nnot json\n{"s":1,"t":2.0,"r":{"a":2.5},"c":{}}\n'
        b"also not json\n"
    )
    sender.log_step(2, {"a": 3.5}, {})
    assert sender.flush(5)
    assert receiver.points() == {("a", None, 0): 1.5, ("a", None, 1): 2.5, ("a", None, 2): 3.5}
    assert sender.counters.replayed == 2
    sender.close()


def test_a_full_queue_spills_to_the_spool_in_order(receiver: Receiver, tmp_path: Path) -> None:
    # a writer that wakes only every 10 s: log_step finds the queue (2 steps) full
    sender = HttpSender(
        **fast_settings(tmp_path, receiver.url, max_queue_steps=2, drain_interval_s=10.0)
    )
    sender.log_step(0, {"a": 0.0}, {})
    assert sender.flush(5)  # the spool is open, step 0 sent; the writer sleeps again
    for step in range(1, 8):
        sender.log_step(step, {"a": float(step)}, {})
    sender.log_step(0, {"a": 100.0}, {})  # step 0 again (a resume): the last write wins
    c = sender.counters
    # spilled at steps 3 and 6; steps 7 and 0 wait in the queue (counted when the writer takes them)
    assert (c.queued, c.spooled, c.spilled, len(sender._queue)) == (7, 7, 6, 2)
    assert sender.flush(5)
    assert (c.queued, c.spooled, c.spilled) == (9, 9, 6)
    want = {("a", None, s): float(s) for s in range(1, 8)} | {("a", None, 0): 100.0}
    assert receiver.points() == want
    sender.close()


def test_an_unusable_spool_directory_is_reported_not_raised(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sender = HttpSender(**fast_settings(tmp_path, receiver.url, spool_dir=blocker))
    with caplog.at_level(logging.ERROR):
        sender.log_step(0, {"a": 1.0, "b": 2.0}, {})
        assert not sender.flush(5)
    assert sender.counters.dropped == 2
    assert "cannot open the spool" in caplog.text
    sender.log_step(1, {"a": 1.0}, {})  # inert now: ignored, no error
    sender.close()


def test_a_connection_the_server_closed_while_idle_is_not_a_failure(tmp_path: Path) -> None:
    receiver = Receiver(token="secret", idle_timeout_s=0.1).start()
    try:
        sender = HttpSender(**fast_settings(tmp_path, receiver.url))
        for step in range(3):
            sender.log_step(step, {"a": float(step)}, {})
            assert sender.flush(5)
            time.sleep(0.4)  # the server drops the kept-alive connection meanwhile
        assert receiver.points() == {("a", None, s): float(s) for s in range(3)}
        assert sender.counters.failed_requests == 0
        sender.close()
    finally:
        receiver.stop()


def test_a_writer_thread_that_cannot_start_is_reported_and_drops_loudly(
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    sender = HttpSender(**fast_settings(tmp_path, receiver.url))
    with caplog.at_level(logging.ERROR):
        sender.log_step(0, {"lm_loss": 1.0}, {"a": {"loss": 2.0}})  # returns; the start fails later
        deadline = time.monotonic() + 5
        while sender._state != "failed" and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sender._state == "failed"
    assert "cannot start the writer thread" in caplog.text
    assert sender.counters.dropped == sender.counters.queued == 2
    sender.log_step(1, {"lm_loss": 1.0}, {})  # ignored, never raises
    assert sender.flush(1) is False
    sender.close()
