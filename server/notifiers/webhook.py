"""Generic webhook: the versioned JSON document, signed with HMAC-SHA256.

Body: :func:`server.notifiers.message.to_json` (``"version": 1``). Headers:

- ``X-Lossradar-Version: 1``
- ``X-Lossradar-Timestamp: <unix seconds>``
- ``X-Lossradar-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` when a
  secret is set. Receivers recompute it over the raw body, compare in constant time, and
  refuse timestamps older than a few minutes (replay).

Any 2xx is success; 408, 425, 429 and 5xx are retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from server.notifiers.base import (
    HttpRequest,
    NotifierConfigError,
    Outcome,
    http_outcome,
    optional_secret,
    reject_unknown,
    require_url,
)
from server.notifiers.message import PAYLOAD_VERSION, AlertMessage, to_json


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body`` keyed by ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook:
    name = "webhook"
    secret_fields: tuple[str, ...] = ("secret",)

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        reject_unknown(config, self.name, ("url", "secret", "headers"))
        out: dict[str, Any] = {"url": require_url(config, self.name, "your receiver")}
        secret = optional_secret(config, self.name)
        if secret is not None:
            out["secret"] = secret
        headers = config.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise NotifierConfigError("webhook notifier 'headers' must map strings to strings")
        if headers:
            out["headers"] = dict(headers)
        return out

    def build(self, config: Mapping[str, Any], message: AlertMessage, *, now: float) -> HttpRequest:
        body = json.dumps(to_json(message), ensure_ascii=False, allow_nan=False).encode()
        timestamp = int(now)
        headers = {
            **config.get("headers", {}),
            "Content-Type": "application/json",
            "User-Agent": "lossradar-webhook",
            "X-Lossradar-Version": str(PAYLOAD_VERSION),
            "X-Lossradar-Timestamp": str(timestamp),
        }
        if config.get("secret"):
            headers["X-Lossradar-Signature"] = signature(config["secret"], timestamp, body)
        return HttpRequest(config["url"], body, headers)

    def judge(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        bad = http_outcome(status, headers)
        if bad is not None:
            return bad
        return Outcome(True, False, f"HTTP {status}", status)
