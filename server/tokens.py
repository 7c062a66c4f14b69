"""API tokens: random secrets shown once, stored as SHA-256 hashes, with read/write scopes.

A token is ``lr_`` + 43 URL-safe characters (256 random bits), so a plain SHA-256 is a safe
hash (no brute force reaches it) and one indexed lookup authenticates a request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import ApiToken

SCOPES = ("read", "write")
TOKEN_PREFIX = "lr_"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, session: Session, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret (shown once, never stored)."""
    wanted = sorted(set(scopes))
    bad = [s for s in wanted if s not in SCOPES]
    if bad or not wanted:
        raise ValueError(f"unknown or missing scope {bad or wanted!r}; use 'read' and/or 'write'")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name, token_hash=hash_token(secret), prefix=secret[:10], scopes=" ".join(wanted)
    )
    session.add(token)
    session.flush()
    return token, secret


def find_token(*, session: Session, secret: str) -> ApiToken | None:
    """The live (not revoked) token with this secret, if any."""
    return session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(secret), ApiToken.revoked_at.is_(None)
        )
    ).first()


def list_tokens(*, session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(*, session: Session, token_id: int) -> bool:
    token = session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = datetime.now(UTC)
    return True
