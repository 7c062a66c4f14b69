"""Feishu / Lark custom bot, with optional signing.

POST ``{"msg_type": "post", "content": {"post": {"zh_cn": {"title", "content"}}}}`` to
``https://open.feishu.cn/open-apis/bot/v2/hook/<token>`` (Lark:
``https://open.larksuite.com/...``). With a signing secret the body also carries
``"timestamp"`` (unix seconds, as a string) and ``"sign"``:

    sign = base64( HMAC-SHA256(key = f"{timestamp}\\n{secret}", message = b"") )

(the vendor's documented algorithm: the string to sign is the *key*, the message is empty).
The bot answers HTTP 200 with ``{"code": 0}`` (older: ``{"StatusCode": 0}``); code 9499 and
11232 mean "too many requests" and are retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from server.notifiers.base import (
    HttpRequest,
    Outcome,
    bot_api_outcome,
    optional_secret,
    reject_unknown,
    require_url,
)
from server.notifiers.message import AlertMessage, item_line, link, title

MAX_ITEMS = 30
RATE_LIMITED = {9499, 11232}


def sign(secret: str, timestamp: int) -> str:
    """Feishu/Lark's bot signature of ``timestamp`` (seconds)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class Feishu:
    secret_fields: tuple[str, ...] = ("secret",)

    def __init__(self, name: str = "feishu") -> None:
        self.name = name

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        reject_unknown(config, self.name, ("url", "secret"))
        hint = "https://open.feishu.cn/open-apis/bot/v2/hook/..."
        out: dict[str, Any] = {"url": require_url(config, self.name, hint)}
        secret = optional_secret(config, self.name)
        if secret is not None:
            out["secret"] = secret
        return out

    def build(self, config: Mapping[str, Any], message: AlertMessage, *, now: float) -> HttpRequest:
        rows = [
            [
                {"tag": "text", "text": item_line(item) + " "},
                {"tag": "a", "text": "open", "href": link(message.public_url, item)},
            ]
            for item in message.items[:MAX_ITEMS]
        ]
        more = len(message.items) - MAX_ITEMS
        if more > 0:
            rows.append([{"tag": "text", "text": f"... and {more} more"}])
        payload: dict[str, Any] = {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": title(message), "content": rows}}},
        }
        if config.get("secret"):
            timestamp = int(now)
            payload["timestamp"] = str(timestamp)
            payload["sign"] = sign(config["secret"], timestamp)
        body = json.dumps(payload, ensure_ascii=False).encode()
        return HttpRequest(config["url"], body, {"Content-Type": "application/json"})

    def judge(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return bot_api_outcome(
            status,
            body,
            headers,
            code_keys=("code", "StatusCode"),
            message_keys=("msg", "StatusMessage"),
            message_default="",
            label="code",
            retried=RATE_LIMITED,
        )
