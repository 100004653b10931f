"""The exporter's one cache: a value per key for at most a second, computed once for all callers."""

from __future__ import annotations

import asyncio
import logging
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

log = logging.getLogger("storepulse.exporter")


class SingleFlightCache:
    """Values at most max_age seconds old; concurrent callers of one key share one computation.

    A computation that fails is not cached: its callers all see the error, the next call tries
    again. With refresh_after, a caller finding a value at least that old (and still fresh) gets
    it and starts one computation of the next value in the background: under steady traffic no
    caller waits for a computation, and no value served is older than max_age. Runs on one
    asyncio loop (the exporter's HTTP loop).
    """

    def __init__(
        self,
        max_age: float = MAX_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
        refresh_after: float | None = None,
    ) -> None:
        if not 0 <= max_age <= MAX_CACHE_SECONDS:
            raise ValueError(f"cache age must be within 0..{MAX_CACHE_SECONDS} s, got {max_age}")
        if refresh_after is not None and not 0 <= refresh_after <= max_age:
            raise ValueError(f"refresh_after must be within 0..{max_age} s, got {refresh_after}")
        self.max_age = max_age
        self.refresh_after = refresh_after
        self._clock = clock
        self._max_keys = max_keys
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        self.computations = 0

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        cached = self._values.get(key)
        if cached is not None and now - cached[0] <= self.max_age:
            if (
                self.refresh_after is not None
                and now - cached[0] >= self.refresh_after
                and key not in self._flights
            ):
                self._refresh(key, compute)
            value: T = cached[1]
            return value
        flight = self._flights.get(key)
        if flight is not None:
            # shield: one caller giving up (a closed connection) must not cancel the others.
            shared: T = await asyncio.shield(flight)
            return shared
        return await self._compute(key, compute, self._new_flight(key))

    def _new_flight(self, key: Hashable) -> asyncio.Future[Any]:
        flight: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        return flight

    async def _compute(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], flight: asyncio.Future[Any]
    ) -> T:
        try:
            taken = self._clock()
            result = await compute()
            self.computations += 1
        except BaseException as exc:
            if not flight.done():
                error: BaseException = exc
                if isinstance(exc, asyncio.CancelledError):
                    # The caller computing it was cancelled (its request's time limit): the
                    # others get an error they can answer with, not a cancellation.
                    error = TimeoutError("the shared computation was cancelled")
                flight.set_exception(error)
                flight.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            self._store(key, taken, result)
            flight.set_result(result)
            return result
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _refresh(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> None:
        """Compute key again in the background; meanwhile callers get the value still fresh."""
        flight = self._new_flight(key)  # at once: one refresh per key, however many callers

        async def refresh() -> None:
            try:
                await self._compute(key, compute, flight)
            except Exception as exc:
                # Not kept: the first caller once the value is too old computes again.
                log.debug("background refresh of %r failed: %s", key, exc)

        def done(task: asyncio.Task[None]) -> None:
            self._refreshing.discard(task)
            if not flight.done():  # cancelled before it ran (aclose): its waiters answer
                flight.set_exception(TimeoutError("the exporter is stopping"))
                flight.exception()
            if self._flights.get(key) is flight:
                del self._flights[key]

        task = asyncio.get_running_loop().create_task(refresh())
        self._refreshing.add(task)
        task.add_done_callback(done)

    async def aclose(self) -> None:
        """Cancel the background refreshes still running (before their loop stops)."""
        for task in list(self._refreshing):
            task.cancel()
        await asyncio.gather(*self._refreshing, return_exceptions=True)

    def _store(self, key: Hashable, taken: float, value: Any) -> None:
        if key not in self._values and len(self._values) >= self._max_keys:
            cutoff = self._clock() - self.max_age
            for old in [k for k, (at, _) in self._values.items() if at < cutoff]:
                del self._values[old]
            if len(self._values) >= self._max_keys:
                return  # still full of fresh keys: serve this one uncached
        self._values[key] = (taken, value)
