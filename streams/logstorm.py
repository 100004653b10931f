"""Log storms contained: a repeated message passes once per interval, with a count of the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimit", "contain_log_storms"]

# aiokafka logs a failed offset commit about 10 times a second while a broker is confused; one
# line per 10 s with the number suppressed keeps the log readable and the disk safe.
INTERVAL_SECONDS = 10.0
# Distinct messages remembered at most (a storm has few templates; this bounds memory).
MAX_KEYS = 1_000


class RateLimit(logging.Filter):
    """Per (logger, level, message template): the first record, then one per interval."""

    def __init__(
        self, interval: float = INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= MAX_KEYS:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} more like this in the last {now - last[0]:.0f}s)"
        return True


def contain_log_storms(interval: float = INTERVAL_SECONDS) -> RateLimit:
    """Install one RateLimit on every handler of the root logger (where all records end up)."""
    limit = RateLimit(interval)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RateLimit) for f in handler.filters):
            handler.addFilter(limit)
    return limit
