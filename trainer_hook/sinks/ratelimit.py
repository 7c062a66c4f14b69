"""A log call that repeats at most once per interval, so an outage does not flood the logs."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Logs a repeated problem at most once per `every_s` seconds, with the count meanwhile."""

    def __init__(self, logger: logging.Logger, level: int, every_s: float = 30.0) -> None:
        self.logger, self.level, self.every_s = logger, level, every_s
        self.last, self.skipped = -1e18, 0

    def __call__(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            self.skipped += 1
            return
        suffix = f" ({self.skipped} similar messages suppressed)" if self.skipped else ""
        self.logger.log(self.level, msg + suffix, *args)
        self.last, self.skipped = now, 0
