"""Notifiers: Slack, generic webhook, Feishu/Lark, DingTalk and WeCom, with retry and backoff."""

from server.notifiers.message import AlertItem, AlertMessage
from server.notifiers.send import KINDS, deliver, kind_of, send_once

__all__ = ["KINDS", "AlertItem", "AlertMessage", "deliver", "kind_of", "send_once"]
