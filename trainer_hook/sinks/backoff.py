"""Exponential backoff with jitter for the sender's retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(kw_only=True, slots=True)
class Backoff:
    """Delay before retry number n (n = 0, 1, ...) after consecutive failures.

    cap_n = min(max_s, base_s * factor**n); the delay is drawn uniformly from
    [cap_n / 2, cap_n] ("equal jitter"), so retries from many jobs spread out yet never collapse
    to zero.
    """

    base_s: float = 0.5
    """First delay's upper bound (seconds)."""
    max_s: float = 30.0
    """Largest delay (seconds)."""
    factor: float = 2.0
    """Growth per consecutive failure."""
    rng: random.Random = field(default_factory=random.Random)
    """Source of jitter (seed it in tests)."""
    failures: int = 0
    """Consecutive failures so far."""

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.max_s:
            raise ValueError(
                f"Backoff needs 0 < base_s <= max_s, got base_s={self.base_s}, "
                f"max_s={self.max_s}; raise max_s or lower base_s"
            )
        if self.factor < 1:
            raise ValueError(f"Backoff factor must be >= 1, got {self.factor}")

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        cap = min(self.max_s, self.base_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return self.rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0
