"""Database layer: the declarative base, engines and sessions."""

from server.db.base import Base

__all__ = ["Base"]
