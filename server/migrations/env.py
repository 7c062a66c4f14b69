"""Alembic environment: the URL comes from the config (server.db.migrate) or the settings."""

from __future__ import annotations

import contextlib

from alembic import context
from sqlalchemy import Connection

import server.db.models
from server.db.base import Base
from server.db.engine import is_sqlite, make_engine
from server.settings import Settings

with contextlib.suppress(ImportError):  # the alert tables, once they exist
    import server.alerts.models  # noqa: F401

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(_url()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection: Connection, url: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(url),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """On ``config.attributes["connection"]`` when given (tests), else a new engine."""
    url = _url()
    given = config.attributes.get("connection")
    if given is not None:
        _migrate(given, url)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _migrate(connection, url)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
