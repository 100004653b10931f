"""The worker's own Prometheus metrics, built in one factory for a given registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics", "create"]

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
