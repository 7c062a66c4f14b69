"""The tables: runs, their channels, series, chunks of points, and API tokens.

Points are stored in chunks: all points of one series whose step falls in
``[chunk * CHUNK_STEPS, (chunk + 1) * CHUNK_STEPS)`` live in one row, as packed little-endian
arrays (``steps`` int64, ``values`` float64, ``wall_times`` float64, sorted by step), next to a
``summary`` of the chunk (its minimum and maximum point) and a ``fine_summary`` (the same per
16-step block; ``NULL`` in rows written before migration ``0003_fine_summaries``, computed on
read) used for downsampled reads. See
``server.series.chunks`` for the encoding.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db.base import Base


class Run(Base):
    """One training run, found again by its client-supplied ``key`` when the job resumes."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    project: Mapped[str | None] = mapped_column(String(255), index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    last_step_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    channels: Mapped[list[RunChannel]] = relationship(
        back_populates="run",
        order_by="RunChannel.index",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )


class RunChannel(Base):
    """A channel of a run's blend, in registration order, with its planned token share."""

    __tablename__ = "run_channels"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    target_share: Mapped[float | None] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="channels")


class Series(Base):
    """One (run, metric, channel) series; ``channel`` is ``""`` for run-level metrics."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("run_id", "metric", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(255), default="")


class PointChunk(Base):
    """The points of one series in one fixed step range, packed (see module docstring)."""

    __tablename__ = "point_chunks"

    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), primary_key=True
    )
    chunk: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer)
    steps: Mapped[bytes] = mapped_column(LargeBinary)
    values: Mapped[bytes] = mapped_column(LargeBinary)
    wall_times: Mapped[bytes] = mapped_column(LargeBinary)
    summary: Mapped[bytes] = mapped_column(LargeBinary)
    fine_summary: Mapped[bytes | None] = mapped_column(LargeBinary)


class ApiToken(Base):
    """An API token, stored as the SHA-256 of the secret; ``scopes`` is e.g. ``"read write"``."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
