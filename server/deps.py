"""Typed FastAPI dependencies shared by every router (the alert routes reuse them).

``SessionDep`` is a session bound to the app's engine, committed by the route that writes.
``require_read`` / ``require_write`` check the ``Authorization: Bearer <token>`` header:
401 when it is missing or unknown, 403 when the token lacks the scope. Reads need no token when
``LOSSRADAR_OPEN_READS=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from server.db.engine import begin_write
from server.settings import Settings
from server.tokens import find_token


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _check(request: Request, session: Session, scope: str) -> None:
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing token: send 'Authorization: Bearer <token>' (create one with "
            "`lossradar token create`)",
            headers=_UNAUTHORIZED,
        )
    token = find_token(session=session, secret=secret.strip())
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", headers=_UNAUTHORIZED
        )
    if scope not in token.scopes.split():
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"token {token.prefix}... lacks the {scope!r} scope; create one with "
            f"`lossradar token create --scope {scope}`",
        )
    session.commit()  # end the read transaction: a write then starts a fresh one (SQLite WAL)


def require_read(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    """Reads: a token with the ``read`` scope, unless the operator opened reads."""
    if not settings.open_reads:
        _check(request, session, "read")


def require_write(request: Request, session: SessionDep) -> None:
    """Writes: always a token with the ``write`` scope; the session then begins as a writer
    (``BEGIN IMMEDIATE`` on SQLite, see `server.db.engine.begin_write`)."""
    _check(request, session, "write")
    begin_write(session)


ReadAccess = Depends(require_read)
WriteAccess = Depends(require_write)
