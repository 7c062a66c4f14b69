"""Request and response bodies of the runs API (``RunCreate``, ``RunPublic``, ...)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

RunStatus = Literal["running", "finished", "failed", "crashed"]


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    target_share: float | None = Field(default=None, ge=0.0, le=1.0)

    @field_validator("target_share")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("target_share must be a finite number in [0, 1]")
        return v


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=255, description="client-supplied idempotency key")
    name: str | None = Field(default=None, max_length=255, description="defaults to the key")
    project: str | None = Field(default=None, max_length=255)
    tags: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    channels: list[ChannelIn] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, v: list[ChannelIn]) -> list[ChannelIn]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel names must be unique; repeated: {dupes}")
        return v


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: RunStatus | None = None
    name: str | None = Field(default=None, min_length=1, max_length=255)
    tags: list[str] | None = None


class ChannelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    index: int
    name: str
    target_share: float | None


def _utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    project: str | None
    tags: list[str]
    config: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime
    last_step: int | None
    last_step_at: datetime | None
    channels: list[ChannelPublic]

    @field_serializer("created_at", "updated_at", "last_step_at")
    def _iso_utc(self, value: datetime | None) -> str | None:
        return _utc(value)


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class IngestResponse(BaseModel):
    accepted: int
    last_step: int | None
