"""Server settings, read from the environment (prefix ``LOSSRADAR_``) with safe defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the SQLite database lives when ``LOSSRADAR_DATABASE_URL`` is not set.
DEFAULT_SQLITE_PATH = Path.home() / ".local" / "share" / "lossradar" / "lossradar.db"


def default_database_url() -> str:
    """``sqlite:///~/.local/share/lossradar/lossradar.db`` (absolute), the documented default."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


class Settings(BaseSettings):
    """Everything the server reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="LOSSRADAR_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    """SQLAlchemy URL: SQLite (WAL) by default, ``postgresql+psycopg://...`` for scale."""
    host: str = "127.0.0.1"
    """Interface `lossradar serve` binds to; loopback unless the operator opens it."""
    port: int = 8765
    open_reads: bool = False
    """When true, GET endpoints need no token (writes always do)."""
    public_url: str = "http://127.0.0.1:8765"
    """The URL people reach the dashboard at, used in alert links."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest accepted request body, before and after gzip decompression (413 above)."""
    active_run_window_s: float = 900.0
    """A run counts as active (Prometheus per-channel gauges) if it got points this recently."""
    metrics_max_runs: int = 50
    """At most this many active runs get per-channel gauges, the most recently updated first."""

    @field_validator("max_body_bytes")
    @classmethod
    def _positive_body_limit(cls, value: int) -> int:
        if value < 1024:
            raise ValueError(
                f"LOSSRADAR_MAX_BODY_BYTES={value} is too small; use at least 1024 (default 32 MiB)"
            )
        return value

    @field_validator("port")
    @classmethod
    def _valid_port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"LOSSRADAR_PORT={value} is not a TCP port; use 0..65535")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"LOSSRADAR_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, "
                f"got {value.split('://')[0]}://..."
            )
        return value
