"""Sending: one attempt (for the persisted outbox), or attempts with backoff (test-send, CLI).

Backoff before attempt ``i`` (1-based, after the first) is ``base * 2^(i-2)``, capped at
``max_delay``, or the vendor's ``Retry-After`` when it gives one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from server.notifiers.base import NotifierConfigError, NotifierKind, Outcome
from server.notifiers.dingtalk import DingTalk
from server.notifiers.feishu import Feishu
from server.notifiers.message import AlertMessage
from server.notifiers.slack import Slack
from server.notifiers.webhook import Webhook
from server.notifiers.wecom import WeCom

KINDS: dict[str, NotifierKind] = {
    k.name: k for k in (Slack(), Webhook(), Feishu("feishu"), Feishu("lark"), DingTalk(), WeCom())
}


def kind_of(name: str) -> NotifierKind:
    """The notifier kind called ``name``, or an error listing the valid kinds."""
    if name not in KINDS:
        raise NotifierConfigError(f"unknown notifier kind {name!r}; use one of {', '.join(KINDS)}")
    return KINDS[name]


def send_once(
    kind: NotifierKind,
    config: Mapping[str, Any],
    message: AlertMessage,
    *,
    client: httpx.Client,
    now: float | None = None,
) -> Outcome:
    """One attempt: build, POST, judge. Network errors and timeouts are retryable outcomes."""
    request = kind.build(config, message, now=time.time() if now is None else now)
    try:
        response = client.post(request.url, content=request.body, headers=request.headers)
    except httpx.HTTPError as exc:
        return Outcome(False, True, f"{type(exc).__name__}: {exc}")
    return kind.judge(response.status_code, response.content, response.headers)


def backoff_s(attempt: int, *, base: float, max_delay: float, outcome: Outcome | None) -> float:
    """Seconds to wait before attempt ``attempt`` (2, 3, ...)."""
    if outcome is not None and outcome.retry_after_s is not None:
        return min(max_delay, max(0.0, outcome.retry_after_s))
    return min(max_delay, base * 2 ** max(0, attempt - 2))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt as the delivery log records it."""

    number: int
    outcome: Outcome
    at: float
    duration_s: float


def deliver(
    kind: NotifierKind,
    config: Mapping[str, Any],
    message: AlertMessage,
    *,
    client: httpx.Client,
    attempts: int = 4,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Attempt]:
    """Try up to ``attempts`` times with exponential backoff; return every attempt."""
    log: list[Attempt] = []
    last: Outcome | None = None
    for number in range(1, attempts + 1):
        if number > 1:
            sleep(backoff_s(number, base=base_delay, max_delay=max_delay, outcome=last))
        start = time.time()
        last = send_once(kind, config, message, client=client, now=start)
        log.append(Attempt(number, last, start, time.time() - start))
        if last.ok or not last.retry:
            break
    return log
