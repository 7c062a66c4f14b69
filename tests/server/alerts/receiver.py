"""A real local HTTP server that plays the vendors' bots and checks what lossradar sends.

Each vendor path checks the payload format and the signature exactly as the vendor documents
them, and answers as the vendor does: Slack ``ok``; Feishu ``{"code": 0}`` or 19021 on a bad
signature; DingTalk ``{"errcode": 0}`` or 310000; WeCom ``{"errcode": 0}``; the generic webhook
204 or 401. ``fail_next`` queues canned failures (429, 500, vendor rate-limit codes) to exercise
retries. Signatures are recomputed here from the vendors' documented recipes, independently of
``server.notifiers``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    verdict: str  # "ok" or why it was refused

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=dict)  # vendor -> secret
    received: list[Received] = field(default_factory=list)
    fail_next: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def only(self) -> Received:
        assert len(self.received) == 1, [r.verdict for r in self.received]
        return self.received[0]


def _b64_hmac(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def check_slack(r: Received) -> str:
    doc = r.json()
    if not isinstance(doc.get("text"), str) or not doc["text"]:
        return "no fallback text"
    blocks = doc.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return "blocks must be a list of 1..50"
    for b in blocks:
        if b["type"] == "header":
            if b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150:
                return "bad header"
        elif b["type"] == "section":
            if b["text"]["type"] != "mrkdwn" or len(b["text"]["text"]) > 3000:
                return "bad section"
        elif b["type"] == "context":
            if not b["elements"]:
                return "bad context"
        else:
            return f"unexpected block {b['type']}"
    return "ok"


def check_feishu(r: Received, secret: str | None) -> str:
    doc = r.json()
    if doc.get("msg_type") != "post":
        return "msg_type must be post"
    post = doc["content"]["post"]["zh_cn"]
    if not post["title"] or not all(
        all(el["tag"] in ("text", "a") for el in row) for row in post["content"]
    ):
        return "bad post content"
    if secret is not None:
        ts = doc.get("timestamp")
        if not isinstance(ts, str) or abs(time.time() - int(ts)) > 3600:
            return "sign match fail or timestamp is not within one hour from current time"
        expected = _b64_hmac(f"{ts}\n{secret}".encode(), b"")
        if doc.get("sign") != expected:
            return "sign match fail or timestamp is not within one hour from current time"
    return "ok"


def check_dingtalk(r: Received, secret: str | None) -> str:
    if not r.query.get("access_token"):
        return "missing access_token"
    doc = r.json()
    if doc.get("msgtype") != "markdown" or not doc["markdown"]["title"]:
        return "msgtype must be markdown with a title"
    if not doc["markdown"]["text"]:
        return "empty text"
    if secret is not None:
        ts = r.query.get("timestamp", "")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
            return "sign not match"
        if r.query.get("sign") != _b64_hmac(secret.encode(), f"{ts}\n{secret}".encode()):
            return "sign not match"
    return "ok"


def check_wecom(r: Received) -> str:
    if not r.query.get("key"):
        return "invalid webhook url"
    doc = r.json()
    if doc.get("msgtype") != "markdown":
        return "msgtype must be markdown"
    if len(doc["markdown"]["content"].encode()) > 4096:
        return "markdown.content exceed max length 4096"
    return "ok"


def check_webhook(r: Received, secret: str | None) -> str:
    doc = r.json()
    if doc.get("version") != 1 or r.headers.get("x-lossradar-version") != "1":
        return "bad version"
    if secret is not None:
        ts = r.headers.get("x-lossradar-timestamp", "")
        mac = hmac.new(secret.encode(), ts.encode() + b"." + r.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(r.headers.get("x-lossradar-signature", ""), "sha256=" + mac):
            return "bad signature"
    return "ok"


def _answer(vendor: str, verdict: str) -> tuple[int, bytes]:
    ok = verdict == "ok"
    if vendor == "slack":
        return (200, b"ok") if ok else (400, b"invalid_payload")
    if vendor == "feishu":
        code = 0 if ok else (19021 if "sign" in verdict else 9499 + 10000)
        return 200, json.dumps({"code": code, "msg": "success" if ok else verdict}).encode()
    if vendor == "dingtalk":
        code = 0 if ok else (310000 if "sign" in verdict else 300001)
        return 200, json.dumps({"errcode": code, "errmsg": "ok" if ok else verdict}).encode()
    if vendor == "wecom":
        code = 0 if ok else 93000
        return 200, json.dumps({"errcode": code, "errmsg": "ok" if ok else verdict}).encode()
    return (204, b"") if ok else (401, verdict.encode())


def _handler(state: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            vendor = parts.path.strip("/").split("/")[0]
            r = Received(parts.path, query, headers, body, "")
            with state.lock:
                canned = state.fail_next.pop(0) if state.fail_next else None
            if canned is None:
                secret = state.secrets.get(vendor)
                checks = {
                    "slack": lambda: check_slack(r),
                    "feishu": lambda: check_feishu(r, secret),
                    "lark": lambda: check_feishu(r, secret),
                    "dingtalk": lambda: check_dingtalk(r, secret),
                    "wecom": lambda: check_wecom(r),
                    "webhook": lambda: check_webhook(r, secret),
                }
                r.verdict = checks[vendor]()
                status, answer = _answer("feishu" if vendor == "lark" else vendor, r.verdict)
                extra: dict[str, str] = {}
            else:
                status, answer, extra = canned
                r.verdict = f"canned {status}"
            with state.lock:
                state.received.append(r)
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


def serve(secrets: dict[str, str] | None = None) -> Iterator[Receiver]:
    """Run a receiver on a free port for the duration of a fixture."""
    state = Receiver(secrets=dict(secrets or {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
