"""The exporter's one cache: a value per key for at most a second, computed once for all callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

__all__ = ["MAX_CACHE_SECONDS", "SingleFlightCache"]

# Prometheus scrapes every 5-15 s; several scrapers (two Prometheus replicas, the board, a
# curl) within one second share one Redis read. Longer would serve stale KPIs.
MAX_CACHE_SECONDS = 1.0
# Distinct keys kept at most (a key is a scrape format or an /api query string): the board and
# Prometheus ask a handful; a client inventing queries must not grow memory without bound.
MAX_KEYS = 1_000

T = TypeVar("T")


class SingleFlightCache:
    """Values at most max_age seconds old; concurrent callers of one key share one computation.

    A computation that fails is not cached: its callers all see the error, the next call tries
    again. Runs on one asyncio loop (the exporter's).
    """

    def __init__(
        self,
        max_age: float = MAX_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if not 0 <= max_age <= MAX_CACHE_SECONDS:
            raise ValueError(f"cache age must be within 0..{MAX_CACHE_SECONDS} s, got {max_age}")
        self.max_age = max_age
        self._clock = clock
        self._max_keys = max_keys
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self.computations = 0

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        cached = self._values.get(key)
        if cached is not None and now - cached[0] <= self.max_age:
            value: T = cached[1]
            return value
        flight = self._flights.get(key)
        if flight is not None:
            # shield: one caller giving up (a closed connection) must not cancel the others.
            shared: T = await asyncio.shield(flight)
            return shared
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            taken = self._clock()
            result = await compute()
            self.computations += 1
        except BaseException as exc:
            if not flight.cancelled():
                flight.set_exception(exc)
                flight.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            self._store(key, taken, result)
            flight.set_result(result)
            return result
        finally:
            del self._flights[key]

    def _store(self, key: Hashable, taken: float, value: Any) -> None:
        if key not in self._values and len(self._values) >= self._max_keys:
            cutoff = self._clock() - self.max_age
            for old in [k for k, (at, _) in self._values.items() if at < cutoff]:
                del self._values[old]
            if len(self._values) >= self._max_keys:
                return  # still full of fresh keys: serve this one uncached
        self._values[key] = (taken, value)
