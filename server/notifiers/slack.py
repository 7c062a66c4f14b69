"""Slack incoming webhook with Block Kit.

POST ``{"text": fallback, "blocks": [header, section per alert, context]}`` to the webhook URL
(https://api.slack.com/messaging/webhooks). Slack answers ``200 ok``; errors are 4xx with a
plain-text reason (``invalid_payload``, ``no_service``), 429 with ``Retry-After`` when rate
limited. Text fields are mrkdwn: ``&``, ``<`` and ``>`` must be escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.notifiers.base import (
    HttpRequest,
    Outcome,
    http_outcome,
    reject_unknown,
    require_url,
)
from server.notifiers.message import AlertMessage, format_value, link, title

#: Slack's limits: 50 blocks per message, 3000 characters per section, 150 per header.
MAX_ITEMS = 40


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    name = "slack"
    secret_fields: tuple[str, ...] = ()

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        reject_unknown(config, self.name, ("url",))
        return {"url": require_url(config, self.name, "https://hooks.slack.com/services/...")}

    def build(self, config: Mapping[str, Any], message: AlertMessage, *, now: float) -> HttpRequest:
        head = title(message)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150]}}
        ]
        for item in message.items[:MAX_ITEMS]:
            where = item.channel if item.channel is not None else "whole run"
            since = f" since step {item.start_step}" if item.start_step is not None else ""
            text = (
                f"*{item.event}* `{item.rule}` on *{escape(where)}* "
                f"(run {item.run_id} {escape(item.run_name)})\n"
                f"{escape(item.summary)}\nvalue {format_value(item.value)}{since} "
                f"<{link(message.public_url, item)}|open in lossradar>"
            )
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
        more = len(message.items) - MAX_ITEMS
        if more > 0:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"... and {more} more"}}
            )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "sent by lossradar"}]}
        )
        body = json.dumps({"text": head, "blocks": blocks}, ensure_ascii=False).encode()
        return HttpRequest(config["url"], body, {"Content-Type": "application/json"})

    def judge(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        bad = http_outcome(status, headers)
        if bad is not None:
            return Outcome(
                False, bad.retry, f"{bad.detail}: {body[:200]!r}", status, bad.retry_after_s
            )
        text = body.decode(errors="replace").strip()
        if text == "ok":
            return Outcome(True, False, "ok", status)
        return Outcome(False, False, f"unexpected answer {text[:200]!r}", status)
