"""The worker's own Prometheus metrics, built in one factory for a given registry, and served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streams.settings import Settings

__all__ = ["Endpoint", "Stage", "WorkerMetrics", "create", "web_port"]

# The session worker (`storepulse worker`) or the customer stage (`storepulse customers-worker`).
Stage = Literal["sessions", "customers"]

# Batch apply is one Redis round trip running a Lua script over up to batch_size events
# (6-12 us of Redis time per event): ~1 ms for small batches, ~10 ms for 1,000 events.
# Buckets from 0.5 ms to 2.5 s resolve both and show a Redis that stalls.
APPLY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Event to store spans producer linger, broker, batching (batch_seconds, 50 ms) and the apply:
# tens of ms when keeping up, seconds to minutes when lagging or replaying old data.
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class WorkerMetrics:
    batch_apply_seconds: Histogram
    event_to_store_seconds: Histogram
    batches_total: Counter
    messages_total: Counter
    dlq_messages_total: Counter
    dlq_lost_total: Counter
    retries_total: Counter
    topic_resets_total: Counter
    facts_published_total: Counter
    up: Gauge
    stalled_seconds: Gauge
    redis_up: Gauge
    kafka_up: Gauge


def create(registry: CollectorRegistry) -> WorkerMetrics:
    """All worker metrics, registered in registry (tests pass their own)."""
    return WorkerMetrics(
        batch_apply_seconds=Histogram(
            "storepulse_batch_apply_seconds",
            "Time of one batch's Redis round trip (one Lua call per partition, pipelined).",
            buckets=APPLY_BUCKETS,
            registry=registry,
        ),
        event_to_store_seconds=Histogram(
            "storepulse_event_to_store_seconds",
            "From the Kafka record timestamp to the batch holding it being applied in Redis.",
            buckets=E2E_BUCKETS,
            registry=registry,
        ),
        batches_total=Counter(
            "storepulse_worker_batches_total", "Batches applied to Redis.", registry=registry
        ),
        messages_total=Counter(
            "storepulse_worker_messages_total",
            "Kafka messages consumed and accounted for (accepted, duplicate or rejected).",
            registry=registry,
        ),
        dlq_messages_total=Counter(
            "storepulse_dlq_messages_total",
            "Messages published to the dead-letter topic (at least once).",
            ["reason"],
            registry=registry,
        ),
        dlq_lost_total=Counter(
            "storepulse_worker_dlq_lost_total",
            "Dead letters Kafka refused for good (too large, invalid topic, not authorised), by "
            "error; each rejection is still counted in storepulse_events_rejected_total.",
            ["error"],
            registry=registry,
        ),
        retries_total=Counter(
            "storepulse_worker_retries_total",
            "Retries after a dependency failed, by dependency.",
            ["dependency"],
            registry=registry,
        ),
        topic_resets_total=Counter(
            "storepulse_worker_topic_resets_total",
            "Partitions found recreated (Redis offsets the broker no longer has).",
            registry=registry,
        ),
        facts_published_total=Counter(
            "storepulse_worker_facts_published_total",
            "Customer facts this worker published to the customer topic and Kafka acknowledged "
            "(at least once: facts left in an outbox by a crash are published again).",
            registry=registry,
        ),
        up=Gauge(
            "storepulse_worker_up",
            "1 when the worker reaches Kafka and Redis and is progressing or idle with nothing to "
            "read; 0 when a dependency fails or data has waited 1/3 of STOREPULSE_STALL_SECONDS "
            "with no batch applied.",
            registry=registry,
        ),
        stalled_seconds=Gauge(
            "storepulse_worker_stalled_seconds",
            "Seconds since the last applied batch while an assigned partition has data to read "
            "(0 when idle); at STOREPULSE_STALL_SECONDS the worker exits with status 3.",
            registry=registry,
        ),
        redis_up=Gauge(
            "storepulse_worker_redis_up", "1 when the last Redis call succeeded.", registry=registry
        ),
        kafka_up=Gauge(
            "storepulse_worker_kafka_up",
            "1 when the last dead-letter publish or fetch succeeded.",
            registry=registry,
        ),
    )


def web_port(settings: Settings, stage: Stage) -> int:
    """The port a stage serves its metrics on (0: none)."""
    return settings.customer_worker_web_port if stage == "customers" else settings.worker_web_port


class Endpoint:
    """A stage's /metrics: its registry, its metrics and the HTTP server serving them.

    `storepulse worker` and `customers-worker` serve it before they import Faust and build the
    app (1.2 s on an idle 2-core box, ~5 s while other work keeps both cores busy), so that a
    starting worker already answers with storepulse_worker_up 0 rather than not at all.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.metrics = create(self.registry)
        self._server: tuple[Any, Any] | None = None

    def serve(self, host: str, port: int) -> None:
        """Serve on host:port from now on (port 0: not at all); a second call changes nothing."""
        if port and self._server is None:
            self._server = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            (server, thread), self._server = self._server, None
            server.shutdown()
            thread.join(timeout=5)
