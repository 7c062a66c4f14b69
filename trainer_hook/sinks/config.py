"""Settings of the HTTP sender; unset connection fields come from the environment."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(kw_only=True, slots=True)
class SenderConfig:
    """How the logging rank reaches the lossradar server, and how hard it tries."""

    url: str | None = None
    """Server base URL, e.g. http://monitor:8765; default: $LOSSRADAR_URL."""
    token: str | None = None
    """Write token (Bearer); default: $LOSSRADAR_TOKEN."""
    run_key: str | None = None
    """Stable key of the run: the same on every restart of the job; default: $LOSSRADAR_RUN_KEY."""
    run_name: str | None = None
    """Display name given when the run is created."""
    project: str | None = None
    """Project of the run."""
    tags: Sequence[str] = ()
    """Tags of the run."""
    run_config: Mapping[str, Any] = field(default_factory=dict)
    """Free-form config stored with the run (JSON-serialisable)."""
    channels: Sequence[str | Mapping[str, Any]] = ()
    """Channels registered up front: names or {"name", "target_share"}; others on first use."""
    spool_dir: Path | None = None
    """Spool root; the run's files go to <spool_dir>/<run key>/. Default:
    $LOSSRADAR_SPOOL_DIR or ~/.cache/lossradar/spool."""
    max_queue_steps: int = 10_000
    """Steps held in memory before log_step spills to the spool itself."""
    batch_max_points: int = 4096
    """Points per POST at most (one step is never split). Smaller batches hold Python's GIL
    for shorter stretches in the sender thread (building a batch costs ~0.5 µs per point)."""
    batch_max_steps: int = 1000
    """Steps per POST at most."""
    drain_interval_s: float = 0.05
    """How often the writer thread moves queued steps to the spool."""
    send_interval_s: float = 0.2
    """How often an idle sender thread looks for new records."""
    timeout_s: float = 10.0
    """HTTP timeout of one request (connect and each read)."""
    backoff_base_s: float = 0.5
    """First retry delay's upper bound."""
    backoff_max_s: float = 30.0
    """Largest retry delay."""
    fsync_interval_s: float = 1.0
    """The spool is fsynced at most this often (and on flush/close)."""
    compact_bytes: int = 64 << 20
    """Truncate the fully acknowledged spool once it is larger than this."""
    exit_timeout_s: float = 10.0
    """How long the atexit handler waits for the server before leaving the rest spooled."""

    def __post_init__(self) -> None:
        self.url = self.url or os.environ.get("LOSSRADAR_URL") or None
        self.token = self.token or os.environ.get("LOSSRADAR_TOKEN") or None
        self.run_key = self.run_key or os.environ.get("LOSSRADAR_RUN_KEY") or None
        if not self.url:
            raise ValueError(
                "no lossradar server URL: pass url='http://host:8765' or set LOSSRADAR_URL"
            )
        if not self.run_key:
            raise ValueError(
                "no run key: pass run_key= or set LOSSRADAR_RUN_KEY to a name that stays the same "
                "when the job restarts, so a resumed job continues its run"
            )
        if self.spool_dir is None:
            env = os.environ.get("LOSSRADAR_SPOOL_DIR")
            self.spool_dir = Path(env) if env else Path.home() / ".cache" / "lossradar" / "spool"
        self.spool_dir = Path(self.spool_dir).expanduser()
        for name in ("max_queue_steps", "batch_max_points", "batch_max_steps", "compact_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "drain_interval_s",
            "send_interval_s",
            "timeout_s",
            "backoff_base_s",
            "backoff_max_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_base_s "
                f"({self.backoff_base_s})"
            )
        if self.fsync_interval_s < 0 or self.exit_timeout_s < 0:
            raise ValueError("fsync_interval_s and exit_timeout_s must be >= 0")

    @property
    def run_spool_dir(self) -> Path:
        """<spool_dir>/<run key made filesystem-safe>-<8 hex of its hash>."""
        assert self.spool_dir is not None
        assert self.run_key is not None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.run_key)[:80]
        digest = hashlib.sha256(self.run_key.encode()).hexdigest()[:8]
        return self.spool_dir / f"{safe}-{digest}"

    def channel_entries(self) -> list[dict[str, Any]]:
        """`channels` as the RunCreate body wants them."""
        out: list[dict[str, Any]] = []
        for c in self.channels:
            if isinstance(c, str):
                out.append({"name": c})
            else:
                if "name" not in c:
                    raise ValueError(f"channel entry {c!r} has no 'name'")
                out.append(dict(c))
        return out
