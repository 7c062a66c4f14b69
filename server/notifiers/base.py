"""What every notifier kind provides: request building, response checking, secret masking.

A notifier kind turns an :class:`AlertMessage` into one HTTP request (vendor payload, signature)
and judges the vendor's response: delivered, worth retrying (rate limit, server error,
timeout), or failed for good (bad URL, bad signature). Configurations are JSON objects; their
secrets (signing secrets, and the tokens that vendors put in webhook URLs) never leave the
server: :func:`public_config` masks them for the API.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from server.notifiers.message import AlertMessage

MASK = "********"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST to send."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went: ``ok``; else ``retry`` says whether trying again may help."""

    ok: bool
    retry: bool
    detail: str
    status: int | None = None
    retry_after_s: float | None = None


class NotifierConfigError(ValueError):
    """A notifier configuration is invalid; the message says what to fix."""


class NotifierKind(Protocol):
    """A vendor: builds the request for a message, and reads the vendor's answer."""

    name: str
    secret_fields: tuple[str, ...]

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]: ...

    def build(
        self, config: Mapping[str, Any], message: AlertMessage, *, now: float
    ) -> HttpRequest: ...

    def judge(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome: ...


def require_url(config: Mapping[str, Any], kind: str, hosts_hint: str) -> str:
    """The config's ``url``: an http(s) URL, or a NotifierConfigError saying what to set."""
    url = config.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise NotifierConfigError(
            f"{kind} notifier needs 'url': the bot's webhook URL ({hosts_hint}), got {url!r}"
        )
    if not urlsplit(url).netloc:
        raise NotifierConfigError(f"{kind} notifier 'url' {url!r} has no host")
    return url


def optional_secret(config: Mapping[str, Any], kind: str, key: str = "secret") -> str | None:
    """An optional non-empty string secret."""
    value = config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NotifierConfigError(f"{kind} notifier {key!r} must be a string")
    return value


def reject_unknown(config: Mapping[str, Any], kind: str, allowed: tuple[str, ...]) -> None:
    """Refuse keys the kind does not know (typos would otherwise silently do nothing)."""
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise NotifierConfigError(
            f"{kind} notifier: unknown keys {unknown}; allowed keys are {list(allowed)}"
        )


def mask_url(url: str) -> str:
    """``https://host/******** `` : vendors put the bot's token in the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/{MASK}"


def http_outcome(status: int, headers: Mapping[str, str]) -> Outcome | None:
    """The verdict implied by the HTTP status alone, or None for a 2xx (read the body)."""
    if 200 <= status < 300:
        return None
    retry_after = None
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if raw:
        try:
            retry_after = float(raw)
        except ValueError:
            retry_after = None
    retry = status in (408, 425, 429) or status >= 500
    return Outcome(False, retry, f"HTTP {status}", status, retry_after)


def _first(answer: Mapping[str, Any], keys: tuple[str, ...], default: Any) -> Any:
    """The value of the first of `keys` present in `answer`, else `default`."""
    for key in keys:
        if key in answer:
            return answer[key]
    return default


def bot_api_outcome(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    code_keys: tuple[str, ...],
    message_keys: tuple[str, ...],
    message_default: Any,
    label: str,
    retried: Collection[int],
) -> Outcome:
    """The verdict of an IM bot API that answers a JSON object with an error code (0 = sent):
    the HTTP status first (:func:`http_outcome`), then the first of `code_keys` in the answer;
    codes in `retried` (rate limits, transient errors) are worth retrying, others are not."""
    bad = http_outcome(status, headers)
    if bad is not None:
        return bad
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return Outcome(False, True, f"unreadable answer {body[:200]!r}", status)
    code = _first(answer, code_keys, None)
    if code == 0:
        return Outcome(True, False, "ok", status)
    message = _first(answer, message_keys, message_default)
    return Outcome(False, code in retried, f"{label} {code}: {message}", status)


def public_config(kind: NotifierKind, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as the API shows it: URL tokens and secrets replaced by a mask."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "url" and isinstance(value, str):
            out[key] = mask_url(value)
        elif key in kind.secret_fields:
            out[key] = MASK if value else None
        else:
            out[key] = value
    return out
