"""Engines and sessions: SQLite in WAL mode with working savepoints, or PostgreSQL.

SQLite notes: ``journal_mode=WAL`` lets readers run beside the single writer, and
``synchronous=NORMAL`` is durable across application crashes (a power cut can lose the last
commits, never corrupt the file). pysqlite's own transaction handling breaks SAVEPOINT, so the
driver is put in autocommit mode and SQLAlchemy emits ``BEGIN`` itself (the recipe from the
SQLAlchemy SQLite dialect docs); write routes begin with ``BEGIN IMMEDIATE`` (`begin_write`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

#: Execution option: begin this SQLite transaction with ``BEGIN IMMEDIATE`` (take the write
#: lock first, waiting up to ``busy_timeout``), so a read-then-write transaction never fails
#: with "database is locked" when another writer commits in between.
SQLITE_IMMEDIATE = "lossradar_sqlite_immediate"


def begin_write(session: Session) -> None:
    """Start ``session``'s transaction as a writer (``BEGIN IMMEDIATE`` on SQLite)."""
    session.connection(execution_options={SQLITE_IMMEDIATE: True})


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url``; for a SQLite file, create its directory and enable WAL."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, **kwargs)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (savepoints work)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
