"""How the IM bot notifiers judge their vendors' answers (HTTP 200 with a JSON error code)."""

from __future__ import annotations

import json

import pytest

from server.notifiers.base import Outcome
from server.notifiers.dingtalk import DingTalk
from server.notifiers.feishu import Feishu
from server.notifiers.wecom import WeCom


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (DingTalk, _json({"errcode": 0, "errmsg": "ok"}), Outcome(True, False, "ok", 200)),
        (
            DingTalk,
            _json({"errcode": 130101, "errmsg": "send too fast"}),
            Outcome(False, True, "errcode 130101: send too fast", 200),
        ),
        (
            DingTalk,
            _json({"errcode": 310000, "errmsg": "sign not match"}),
            Outcome(False, False, "errcode 310000: sign not match", 200),
        ),
        (DingTalk, _json({"errcode": 1}), Outcome(False, False, "errcode 1: None", 200)),
        (WeCom, _json({"errcode": 0, "errmsg": "ok"}), Outcome(True, False, "ok", 200)),
        (
            WeCom,
            _json({"errcode": 45009, "errmsg": "api freq out of limit"}),
            Outcome(False, True, "errcode 45009: api freq out of limit", 200),
        ),
        (
            WeCom,
            _json({"errcode": -1, "errmsg": "busy"}),
            Outcome(False, True, "errcode -1: busy", 200),
        ),
        (
            WeCom,
            _json({"errcode": 93000, "errmsg": "invalid webhook url"}),
            Outcome(False, False, "errcode 93000: invalid webhook url", 200),
        ),
        (Feishu, _json({"code": 0, "msg": "success"}), Outcome(True, False, "ok", 200)),
        (
            Feishu,
            _json({"StatusCode": 0, "StatusMessage": "success"}),
            Outcome(True, False, "ok", 200),
        ),
        (
            Feishu,
            _json({"code": 11232, "msg": "frequency limited"}),
            Outcome(False, True, "code 11232: frequency limited", 200),
        ),
        (
            Feishu,
            _json({"code": 19021, "msg": "sign match fail"}),
            Outcome(False, False, "code 19021: sign match fail", 200),
        ),
        (Feishu, _json({"code": 9499}), Outcome(False, True, "code 9499: ", 200)),
        (
            DingTalk,
            b"<html>gateway</html>",
            Outcome(False, True, "unreadable answer b'<html>gateway</html>'", 200),
        ),
        (WeCom, _json([0]), Outcome(False, True, "unreadable answer b'[0]'", 200)),
        (Feishu, _json("ok"), Outcome(False, True, "unreadable answer b'\"ok\"'", 200)),
    ],
)
def test_answer_codes(kind: type, body: bytes, expected: Outcome) -> None:
    assert kind().judge(200, body, {}) == expected


@pytest.mark.parametrize("kind", [DingTalk, WeCom, Feishu])
def test_http_status_comes_first(kind: type) -> None:
    ok_body = _json({"errcode": 0, "code": 0})
    assert kind().judge(503, ok_body, {"Retry-After": "7"}) == Outcome(
        False, True, "HTTP 503", 503, 7.0
    )
    assert kind().judge(404, ok_body, {}) == Outcome(False, False, "HTTP 404", 404)
