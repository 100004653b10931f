"""Worker health: up means reachable and progressing; a stall exits only when unexplained."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.worker import metrics
from streams.worker.health import Dependencies


def test_up_follows_dependencies_and_progress() -> None:
    registry = CollectorRegistry()
    deps = Dependencies(metrics.create(registry))
    value = registry.get_sample_value
    deps.set_stall(3.0, down_after=10.0)
    assert value("storepulse_worker_up") == 1 and value("storepulse_worker_stalled_seconds") == 3
    deps.set_stall(11.0, down_after=10.0)
    assert value("storepulse_worker_up") == 0
    assert deps.must_exit(30.0, limit=30.0) and not deps.must_exit(29.0, limit=30.0)
    deps.set_health("kafka", False)  # the stall is explained: retry, do not exit
    assert not deps.must_exit(60.0, limit=30.0)
    deps.set_health("kafka", True)
    deps.set_stall(0.0, down_after=10.0)
    assert value("storepulse_worker_up") == 1 and value("storepulse_worker_kafka_up") == 1
