"""Fixtures of the alert tests: a real local HTTP receiver playing the vendors' bots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .receiver import Receiver, serve

SECRETS = {
    "feishu": "feishu-secret",
    "lark": "lark-secret",
    "dingtalk": "SECdingtalk",
    "webhook": "hook-secret",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve(SECRETS)
