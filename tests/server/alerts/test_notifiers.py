"""Every notifier kind against a real HTTP receiver checking the vendor format and signature."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from server.notifiers import AlertItem, AlertMessage, deliver, kind_of, send_once
from server.notifiers.base import MASK, NotifierConfigError, public_config
from server.notifiers.message import link

from .conftest import SECRETS
from .receiver import Receiver


def _message(n: int = 2) -> AlertMessage:
    items = [
        AlertItem(
            alert_id=i + 1,
            run_id=7,
            run_name="cpt-finance",
            channel=f"finance/slow-{i}" if i else "finance/slow",
            rule="divergence" if i % 2 == 0 else "non_finite",
            event="firing",
            value=math.nan if i % 2 else 7.25,
            summary="loss rising against its trend <&>",
            start_step=150 + i,
            step=153 + i,
        )
        for i in range(n)
    ]
    return AlertMessage(items=items, public_url="http://dash.example:8765/", sent_at=1.0)


def _config(kind: str, receiver: Receiver) -> dict[str, str]:
    path = {
        "slack": "/slack/services/T0/B0/XXXX",
        "webhook": "/webhook/in",
        "feishu": "/feishu/open-apis/bot/v2/hook/tok",
        "lark": "/lark/open-apis/bot/v2/hook/tok",
        "dingtalk": "/dingtalk/robot/send?access_token=tok",
        "wecom": "/wecom/cgi-bin/webhook/send?key=k",
    }[kind]
    config = {"url": receiver.url + path}
    if kind in SECRETS:
        config["secret"] = SECRETS[kind]
    return config


KINDS = ["slack", "webhook", "feishu", "lark", "dingtalk", "wecom"]


def test_link_targets_the_dashboard_view_of_the_channel_and_start_step() -> None:
    item = _message().items[1]
    assert link("http://dash.example:8765/", item) == (
        "http://dash.example:8765/#/runs/7?channel=finance%2Fslow-1&step=151"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_accepted_by_its_vendor_receiver(kind: str, receiver: Receiver) -> None:
    notifier = kind_of(kind)
    config = notifier.validate(_config(kind, receiver))
    with httpx.Client(timeout=5) as client:
        outcome = send_once(notifier, config, _message(), client=client)
    got = receiver.only()
    assert got.verdict == "ok"
    assert outcome.ok, outcome.detail
    text = got.body.decode()
    # run, channel, rule, value, start step and the link are all in the message
    for needle in ("cpt-finance", "finance/slow-1", "divergence", "non_finite", "7.25", "nan"):
        assert needle in text, (kind, needle)
    assert "150" in text
    assert "#/runs/7?channel=finance%2Fslow-1&step=151" in text


@pytest.mark.parametrize("kind", ["feishu", "dingtalk", "webhook"])
def test_wrong_secret_is_refused_by_the_vendor_and_not_retried(
    kind: str, receiver: Receiver
) -> None:
    notifier = kind_of(kind)
    config = {**_config(kind, receiver), "secret": "wrong"}
    with httpx.Client(timeout=5) as client:
        attempts = deliver(notifier, config, _message(), client=client, sleep=lambda s: None)
    assert len(attempts) == 1
    assert not attempts[0].outcome.ok
    assert not attempts[0].outcome.retry
    assert "sign" in receiver.only().verdict


def test_webhook_payload_is_versioned_json_with_nan_as_string(receiver: Receiver) -> None:
    notifier = kind_of("webhook")
    with httpx.Client(timeout=5) as client:
        send_once(notifier, _config("webhook", receiver), _message(), client=client, now=1000.0)
    got = receiver.only()
    doc = got.json()
    assert doc["version"] == 1
    assert got.headers["x-lossradar-timestamp"] == "1000"
    assert [a["value"] for a in doc["alerts"]] == [7.25, "NaN"]
    assert doc["alerts"][0] == {
        "alert_id": 1,
        "run_id": 7,
        "run_name": "cpt-finance",
        "channel": "finance/slow",
        "rule": "divergence",
        "event": "firing",
        "value": 7.25,
        "summary": "loss rising against its trend <&>",
        "start_step": 150,
        "step": 153,
        "url": "http://dash.example:8765/#/runs/7?channel=finance%2Fslow&step=150",
    }


def test_slack_escapes_mrkdwn(receiver: Receiver) -> None:
    with httpx.Client(timeout=5) as client:
        send_once(kind_of("slack"), _config("slack", receiver), _message(1), client=client)
    section = receiver.only().json()["blocks"][1]["text"]["text"]
    assert "against its trend &lt;&amp;&gt;" in section


def test_retries_with_backoff_then_succeeds(receiver: Receiver) -> None:
    receiver.fail_next += [
        (500, b"boom", {}),
        (429, b"slow down", {"Retry-After": "7"}),
        (200, json.dumps({"errcode": 130101, "errmsg": "send too fast"}).encode(), {}),
    ]
    slept: list[float] = []
    with httpx.Client(timeout=5) as client:
        attempts = deliver(
            kind_of("dingtalk"),
            _config("dingtalk", receiver),
            _message(),
            client=client,
            attempts=5,
            base_delay=0.5,
            sleep=slept.append,
        )
    assert [a.outcome.ok for a in attempts] == [False, False, False, True]
    assert [a.outcome.retry for a in attempts[:3]] == [True, True, True]
    assert slept == [0.5, 7.0, 2.0]  # base, Retry-After, base * 2^2
    assert attempts[2].outcome.detail == "errcode 130101: send too fast"
    assert receiver.received[-1].verdict == "ok"


def test_gives_up_after_the_attempt_budget(receiver: Receiver) -> None:
    receiver.fail_next += [(503, b"", {})] * 3
    with httpx.Client(timeout=5) as client:
        attempts = deliver(
            kind_of("slack"),
            _config("slack", receiver),
            _message(),
            client=client,
            attempts=3,
            sleep=lambda s: None,
        )
    assert [a.outcome.status for a in attempts] == [503, 503, 503]
    assert not attempts[-1].outcome.ok


def test_unreachable_receiver_is_a_retryable_outcome() -> None:
    with httpx.Client(timeout=1) as client:
        outcome = send_once(
            kind_of("webhook"), {"url": "http://127.0.0.1:9/x"}, _message(), client=client
        )
    assert not outcome.ok
    assert outcome.retry
    assert "ConnectError" in outcome.detail


def test_wecom_cuts_long_messages_to_4096_bytes(receiver: Receiver) -> None:
    with httpx.Client(timeout=5) as client:
        outcome = send_once(
            kind_of("wecom"), _config("wecom", receiver), _message(60), client=client
        )
    assert outcome.ok
    content = receiver.only().json()["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert content.endswith("(cut: message too long)")


def test_feishu_signature_uses_the_documented_timestamp(receiver: Receiver) -> None:
    now = time.time()
    with httpx.Client(timeout=5) as client:
        send_once(
            kind_of("feishu"), _config("feishu", receiver), _message(), client=client, now=now
        )
    assert receiver.only().json()["timestamp"] == str(int(now))


def test_secrets_and_url_tokens_are_masked() -> None:
    config = {"url": "https://oapi.dingtalk.com/robot/send?access_token=abc", "secret": "SECx"}
    shown = public_config(kind_of("dingtalk"), config)
    assert shown == {"url": f"https://oapi.dingtalk.com/{MASK}", "secret": MASK}
    assert "abc" not in json.dumps(shown)
    assert "SECx" not in json.dumps(shown)


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("slack", {}, "slack notifier needs 'url'"),
        ("slack", {"url": "ftp://x"}, "slack notifier needs 'url'"),
        ("feishu", {"url": "https://x", "secrte": "s"}, "unknown keys ['secrte']"),
        ("dingtalk", {"url": "https://x", "secret": 5}, "'secret' must be a string"),
        ("pager", {"url": "https://x"}, "unknown notifier kind 'pager'"),
    ],
)
def test_bad_configs_are_refused_with_the_fix(kind: str, config: dict, message: str) -> None:
    with pytest.raises(NotifierConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kind_of(kind).validate(config)
