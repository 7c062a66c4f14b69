"""``lossradar alerts ...`` through the real dispatcher, against a real receiver and database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lossradar.cli import main
from server.db.migrate import upgrade

from .receiver import Receiver


def test_test_send_with_kind_and_url(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    url = receiver.url + "/feishu/open-apis/bot/v2/hook/t"
    rc = main(
        ["alerts", "test-send", "--kind", "feishu", "--url", url, "--secret", "feishu-secret"]
    )
    assert rc == 0
    assert receiver.only().verdict == "ok"
    assert capsys.readouterr().out.startswith("attempt 1: ok (ok)")


def test_test_send_reports_a_refused_signature(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    url = receiver.url + "/dingtalk/robot/send?access_token=t"
    rc = main(["alerts", "test-send", "--kind", "dingtalk", "--url", url, "--secret", "bad"])
    assert rc == 1
    assert "failed (errcode 310000: sign not match)" in capsys.readouterr().out


def test_stored_notifier_lifecycle(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(db)
    url = receiver.url + "/wecom/cgi-bin/webhook/send?key=SECRETKEY"
    base = ["alerts", "--database-url", db]
    assert main([*base, "add-notifier", "--name", "ops", "--kind", "wecom", "--url", url]) == 0
    assert main([*base, "add-notifier", "--name", "ops", "--kind", "wecom", "--url", url]) == 2
    capsys.readouterr()
    assert main([*base, "notifiers"]) == 0
    listed = capsys.readouterr().out
    assert "SECRETKEY" not in listed
    assert listed.startswith("1\tops\twecom\ton\t")
    assert main([*base, "test-send", "--notifier", "ops"]) == 0
    assert receiver.only().verdict == "ok"
    assert main([*base, "test-send", "--notifier", "nope"]) == 2
    assert main([*base, "list"]) == 0
    assert main([*base, "remove-notifier", "ops"]) == 0
    assert main([*base, "remove-notifier", "ops"]) == 2


def test_rules_prints_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "rules"]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert rules["spike"]["z"] == 8.0
    assert rules["weight_saturation"]["upper"] is None


def test_bad_kind_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "test-send", "--kind", "slack", "--url", "ftp://x"]) == 2
    assert "slack notifier needs 'url'" in capsys.readouterr().err
