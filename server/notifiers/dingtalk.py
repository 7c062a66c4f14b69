"""DingTalk custom robot, with signing (加签).

POST ``{"msgtype": "markdown", "markdown": {"title", "text"}}`` to
``https://oapi.dingtalk.com/robot/send?access_token=<token>``. With a secret (``SEC...``) the
URL also gets ``&timestamp=<unix ms>&sign=<urlencoded signature>``, where

    sign = base64( HMAC-SHA256(key = secret, message = f"{timestamp}\\n{secret}") )

The robot answers ``{"errcode": 0, "errmsg": "ok"}``; errcode 130101 ("send too fast", the
limit is 20 messages a minute) is retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

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
RATE_LIMITED = {130101}


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature of ``timestamp_ms`` (base64, before URL encoding)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def markdown_lines(message: AlertMessage, max_items: int) -> list[str]:
    """One markdown bullet per item with its dashboard link (shared with WeCom)."""
    lines = [
        f"- {item_line(item)} [open]({link(message.public_url, item)})"
        for item in message.items[:max_items]
    ]
    more = len(message.items) - max_items
    if more > 0:
        lines.append(f"- ... and {more} more")
    return lines


class DingTalk:
    name = "dingtalk"
    secret_fields: tuple[str, ...] = ("secret",)

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        reject_unknown(config, self.name, ("url", "secret"))
        hint = "https://oapi.dingtalk.com/robot/send?access_token=..."
        out: dict[str, Any] = {"url": require_url(config, self.name, hint)}
        secret = optional_secret(config, self.name)
        if secret is not None:
            out["secret"] = secret
        return out

    def build(self, config: Mapping[str, Any], message: AlertMessage, *, now: float) -> HttpRequest:
        head = title(message)
        text = "\n".join([f"#### {head}", "", *markdown_lines(message, MAX_ITEMS)])
        payload = {"msgtype": "markdown", "markdown": {"title": head, "text": text}}
        url = config["url"]
        if config.get("secret"):
            timestamp_ms = int(now * 1000)
            signature = quote_plus(sign(config["secret"], timestamp_ms))
            url += ("&" if "?" in url else "?") + f"timestamp={timestamp_ms}&sign={signature}"
        body = json.dumps(payload, ensure_ascii=False).encode()
        return HttpRequest(url, body, {"Content-Type": "application/json"})

    def judge(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return bot_api_outcome(
            status,
            body,
            headers,
            code_keys=("errcode",),
            message_keys=("errmsg",),
            message_default=None,
            label="errcode",
            retried=RATE_LIMITED,
        )
