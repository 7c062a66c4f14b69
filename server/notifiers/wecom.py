"""WeCom (企业微信) group robot.

POST ``{"msgtype": "markdown", "markdown": {"content": ...}}`` to
``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>``; the key in the URL is the only
credential (no signing). Content is at most 4096 bytes of UTF-8: longer messages are cut at an
item boundary. The robot answers ``{"errcode": 0, "errmsg": "ok"}``; errcode 45009 (over the
20-messages-a-minute limit) and -1 (system busy) are retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.notifiers.base import (
    HttpRequest,
    Outcome,
    bot_api_outcome,
    reject_unknown,
    require_url,
)
from server.notifiers.dingtalk import markdown_lines
from server.notifiers.message import AlertMessage, title

MAX_BYTES = 4096
RETRIED = {45009, -1}


class WeCom:
    name = "wecom"
    secret_fields: tuple[str, ...] = ()

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        reject_unknown(config, self.name, ("url",))
        hint = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."
        return {"url": require_url(config, self.name, hint)}

    def build(self, config: Mapping[str, Any], message: AlertMessage, *, now: float) -> HttpRequest:
        lines = [f'**<font color="warning">{title(message)}</font>**']
        for line in markdown_lines(message, len(message.items)):
            candidate = "\n".join([*lines, line])
            if len(candidate.encode()) > MAX_BYTES - 32:
                lines.append("- ... (cut: message too long)")
                break
            lines.append(line)
        payload = {"msgtype": "markdown", "markdown": {"content": "\n".join(lines)}}
        body = json.dumps(payload, ensure_ascii=False).encode()
        return HttpRequest(config["url"], body, {"Content-Type": "application/json"})

    def judge(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return bot_api_outcome(
            status,
            body,
            headers,
            code_keys=("errcode",),
            message_keys=("errmsg",),
            message_default=None,
            label="errcode",
            retried=RETRIED,
        )
