"""The declarative base shared by every table, with a constraint naming convention.

The convention gives every index and constraint a deterministic name, so Alembic migrations can
drop and alter them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of all lossradar tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
