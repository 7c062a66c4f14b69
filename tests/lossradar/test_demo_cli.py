"""`lossradar demo` argument errors, the progress line and the webhook receiver."""

from __future__ import annotations

import io

import httpx
import pytest

from lossradar.cli import main as lossradar_main
from lossradar.demo.progress import ProgressBar
from lossradar.demo.webhook import WebhookReceiver


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--steps", "10", "--corrupt", "finance@20:shuffle"],
            "starts at step 20, but the run has only 10 steps; pick a step below 10",
        ),
        (["--corrupt", "legal@3:shuffle"], "unknown channel 'legal'"),
        (["--corrupt", "finance@3:zero"], "unknown corruption kind 'zero'; use one of shuffle"),
        (["--corrupt", "finance-3"], "write CHANNEL@STEP:KIND, e.g. finance@150:shuffle"),
        (["--steps", "0"], "--steps must be >= 1, got 0"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lossradar_main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err


def test_progress_line_shows_every_channel_loss() -> None:
    stream = io.StringIO()
    bar = ProgressBar(total=4, channels=["finance", "math"], stream=stream, width=4, every=2)
    bar.update(0, {"lm_loss": 9.0}, {"finance": {"loss": 9.25}})
    bar.update(1, {"lm_loss": 8.5}, {"finance": {"loss": 8.75}, "math": {"loss": 8.125}})
    bar.update(2, {"lm_loss": 8.0}, {"math": {"loss": 7.5}})  # finance absent: keeps 8.75
    bar.update(3, {"lm_loss": 7.0}, {})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # step 1 (first), step 2, step 4 (every=2, last)
    assert lines[0].startswith("step 1/4 [#---]  25%  lm 9.00 | finance 9.25 math - | ")
    assert lines[1].startswith("step 2/4 [##--]  50%  lm 8.50 | finance 8.75 math 8.12 | ")
    assert lines[2].startswith("step 4/4 [####] 100%  lm 7.00 | finance 8.75 math 7.50 | ")


def test_webhook_receiver_keeps_and_reports_what_it_gets() -> None:
    seen: list[object] = []
    with WebhookReceiver(on_message=lambda m: seen.append(m.body)) as rx:
        r = httpx.post(rx.url, json={"version": 1, "alerts": [{"rule": "spike"}]}, timeout=5)
        assert r.status_code == 200
        httpx.post(rx.url, content=b"not json", timeout=5)
        got = rx.wait_for(lambda m: m.body == "not json", timeout=5)
        assert got is not None
        assert got.path == "/hook"
    assert seen == [{"version": 1, "alerts": [{"rule": "spike"}]}, "not json"]
    assert [m.body for m in rx.messages] == seen
