"""Fixtures of the alert tests: a real local HTTP receiver playing the vendors' bots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.settings import Settings

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


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session]) -> FastAPI:
    """The server app on the test transaction, with the outbox thread off (tests call
    ``app.state.alert_dispatcher.run_once()``: one connection must not serve two threads)."""
    application = create_app(settings)
    application.state.sessionmaker = session_factory
    application.state.alert_outbox_thread = False
    return application
