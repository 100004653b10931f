"""The worker's health: dependency retries with backoff, progress, and the up gauges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.worker.metrics import WorkerMetrics

__all__ = ["TRANSIENT", "Dependencies"]

log = logging.getLogger("storepulse.worker")
T = TypeVar("T")
# Failures that mean "the dependency is unreachable right now": retried, never fatal.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError, KafkaError)


class Dependencies:
    """Redis and Kafka as the worker sees them: calls retried, health kept in the gauges."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        # "progressing": not stalled (data waiting, nothing applied) for long; see set_stall.
        self._healthy = {"redis": True, "kafka": True, "progressing": True}

    async def probe(self, dependency: str, call: Callable[[], Awaitable[object]]) -> bool:
        """One health check of a dependency while idle; updates the up gauges, never raises."""
        try:
            ok = bool(await asyncio.wait_for(call(), timeout=3))
        except (TimeoutError, *TRANSIENT):
            ok = False
        self.set_health(dependency, ok)
        return ok

    def set_health(self, dependency: str, ok: bool) -> None:
        self._healthy[dependency] = ok
        gauge = self.metrics.redis_up if dependency == "redis" else self.metrics.kafka_up
        gauge.set(1 if ok else 0)
        self._publish()

    def set_stall(self, seconds: float, down_after: float) -> None:
        """How long the worker has not moved with data waiting; down past down_after seconds."""
        self.metrics.stalled_seconds.set(seconds)
        self._healthy["progressing"] = seconds < down_after
        self._publish()

    def must_exit(self, stalled: float, limit: float) -> bool:
        """A stall past the limit that no unreachable dependency explains: exit for a restart."""
        return stalled >= limit and self.reachable

    @property
    def reachable(self) -> bool:
        """Both dependencies answered their last call: a stall is then not explained by them."""
        return self._healthy["redis"] and self._healthy["kafka"]

    def _publish(self) -> None:
        self.metrics.up.set(1 if all(self._healthy.values()) else 0)

    async def retry(self, dependency: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a dependency call with exponential backoff (0.1 s doubling to 5 s), forever.

        Blocking the stream is the point: nothing is acknowledged to Kafka until it is stored.
        """
        delay = 0.1
        while True:
            try:
                result = await call()
            except TRANSIENT as exc:
                self.set_health(dependency, False)
                self.metrics.retries_total.labels(dependency).inc()
                log.warning(
                    "%s unavailable (%s: %s); retrying in %.1fs",
                    dependency,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.set_health(dependency, True)
            return result
