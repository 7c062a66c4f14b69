"""The content of one notification: a group of alert events of one run, and its plain text.

Several alerts that fire together become one message (IM bots accept about 20 messages a
minute). Each item says which run, channel and rule, the value, the step where it began, and
links to the dashboard at ``{public_url}/#/runs/{run_id}?channel=...&step=...``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

#: Version of the generic webhook's JSON payload (bump on incompatible change).
PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertItem:
    """One alert event inside a message."""

    alert_id: int | None
    run_id: int
    run_name: str
    channel: str | None
    rule: str
    event: str  # firing | resolved | repeat | test
    value: float | None
    summary: str
    start_step: int | None
    step: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertMessage:
    """A group of alert events to deliver together."""

    items: Sequence[AlertItem]
    public_url: str
    sent_at: float  # epoch seconds, when the message was composed
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("an AlertMessage needs at least one AlertItem")


def link(public_url: str, item: AlertItem) -> str:
    """Dashboard link of an item: the run, focused on the channel and the alert's start step."""
    url = f"{public_url.rstrip('/')}/#/runs/{item.run_id}"
    query = []
    if item.channel is not None:
        query.append(f"channel={quote(item.channel, safe='')}")
    step = item.start_step if item.start_step is not None else item.step
    if step is not None:
        query.append(f"step={step}")
    return url + ("?" + "&".join(query) if query else "")


def format_value(value: float | None) -> str:
    """A value for humans: 4 significant digits, NaN/Inf spelled out, '-' when missing."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


_EMOJI = {"firing": "🔴", "repeat": "🔁", "resolved": "✅", "test": "🧪"}


def title(message: AlertMessage) -> str:
    """One line: how many alerts, of which runs."""
    items = message.items
    firing = sum(1 for i in items if i.event in ("firing", "repeat", "test"))
    resolved = len(items) - firing
    runs = sorted({i.run_name for i in items})
    parts = []
    if firing:
        parts.append(f"{firing} firing")
    if resolved:
        parts.append(f"{resolved} resolved")
    return f"[lossradar] {', '.join(parts)}: {', '.join(runs)}"


def item_line(item: AlertItem) -> str:
    """``firing divergence on finance (run 3 "name"): <summary>; value 1.2, since step 150``."""
    where = item.channel if item.channel is not None else "the whole run"
    since = f", since step {item.start_step}" if item.start_step is not None else ""
    return (
        f"{_EMOJI.get(item.event, '')} {item.event} {item.rule} on {where} "
        f'(run {item.run_id} "{item.run_name}"): {item.summary}; '
        f"value {format_value(item.value)}{since}"
    ).strip()


def plain_text(message: AlertMessage) -> str:
    """The whole message as plain text with one line and one link per item."""
    lines = [title(message)]
    for item in message.items:
        lines.append(item_line(item))
        lines.append(link(message.public_url, item))
    return "\n".join(lines)


def to_json(message: AlertMessage) -> dict[str, Any]:
    """The versioned JSON document of the generic webhook (numbers; NaN/Inf as strings)."""

    def num(v: float | None) -> float | str | None:
        if v is None or math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")

    return {
        "version": PAYLOAD_VERSION,
        "source": "lossradar",
        "title": title(message),
        "sent_at": message.sent_at,
        "alerts": [
            {
                "alert_id": i.alert_id,
                "run_id": i.run_id,
                "run_name": i.run_name,
                "channel": i.channel,
                "rule": i.rule,
                "event": i.event,
                "value": num(i.value),
                "summary": i.summary,
                "start_step": i.start_step,
                "step": i.step,
                "url": link(message.public_url, i),
            }
            for i in message.items
        ],
    }
