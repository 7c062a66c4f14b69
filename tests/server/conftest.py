"""Fixtures for server tests, reusable by the alert tests below this directory.

- ``db_engine``: a migrated database per backend, ``sqlite`` (a temp file) and ``postgres``
  (``LOSSRADAR_TEST_POSTGRES_URL``, in a schema of its own; missing in CI is a failure).
- ``db_connection`` / ``db_session``: a connection inside an outer transaction that is rolled
  back after the test; sessions join it with savepoints (SQLAlchemy's "join an external
  transaction" recipe), so commits inside the app stay isolated.
- ``app`` / ``client``: ``create_app`` whose sessions use that connection, and a TestClient.
- ``make_token(*scopes) -> str`` and ``auth(*scopes) -> headers``.
- ``live_server``: a real server process (see `tests.server.live`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.db.engine import make_engine
from server.db.migrate import alembic_config
from server.settings import Settings
from server.tokens import create_token
from tests.server.live import live_server  # noqa: F401  (re-exported fixture)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_url() -> str:
    """The test PostgreSQL URL; skips locally, fails in CI (``CI=true``) when it is unset."""
    url = os.environ.get("LOSSRADAR_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("LOSSRADAR_TEST_POSTGRES_URL is not set; CI must test on PostgreSQL")
        pytest.skip("set LOSSRADAR_TEST_POSTGRES_URL to also test on PostgreSQL")
    return url


def make_test_engine(backend: str, tmp_dir: Path) -> tuple[Engine, str, Callable[[], None]]:
    """(engine, url, cleanup) of an empty database: a SQLite file or a fresh PostgreSQL schema.

    The PostgreSQL engine's connections use ``search_path`` = the new schema, so tests of
    several engineers share one database without seeing each other's tables.
    """
    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / f'test-{uuid.uuid4().hex[:8]}.db'}"
        engine = make_engine(url)
        return engine, url, engine.dispose
    url = postgres_url()
    schema = f"lrtest_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})

    def cleanup() -> None:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return engine, url, cleanup


def upgrade_engine(engine: Engine, url: str, revision: str = "head") -> None:
    """Run Alembic on ``engine``'s connection (keeps the PostgreSQL search_path)."""
    from alembic import command

    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@pytest.fixture(scope="session", params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def db_engine(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine, url, cleanup = make_test_engine(db_backend, tmp_path_factory.mktemp("db"))
    upgrade_engine(engine, url)
    try:
        yield engine
    finally:
        cleanup()


@pytest.fixture
def db_connection(db_engine: Engine) -> Iterator[Connection]:
    connection = db_engine.connect()
    outer = connection.begin()
    try:
        yield connection
    finally:
        if outer.is_active:
            outer.rollback()
        connection.close()


@pytest.fixture
def session_factory(db_connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}")


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session]) -> FastAPI:
    application = create_app(settings)
    application.state.sessionmaker = session_factory
    application.state.alert_outbox_thread = False  # one connection must not serve two threads
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_token(session_factory: sessionmaker[Session]) -> Callable[..., str]:
    """``make_token("read", "write") -> secret`` inside the test transaction."""

    def make(*scopes: str) -> str:
        with session_factory() as session:
            _, secret = create_token(session=session, name="test", scopes=scopes or ("read",))
            session.commit()
        return secret

    return make


@pytest.fixture
def auth(make_token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """``auth("write") -> {"Authorization": "Bearer ..."}`` with a fresh token."""

    def headers(*scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(*scopes)}"}

    return headers
