"""Shared fixtures: real services started once per test session on free ports, in temp dirs."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from streams.settings import Settings
from tests import harness


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# A SIGTERM (CI time-out, `timeout`) unwinds like Ctrl-C, so fixtures stop their services.
signal.signal(signal.SIGTERM, _interrupt)

# Tests never read the developer's own STOREPULSE_* environment.
for _name in [n for n in os.environ if n.startswith("STOREPULSE_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[harness.Service]:
    """A Tansu broker (Kafka protocol, in-memory storage)."""
    service = harness.start_broker(services_dir / "broker")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[harness.Service]:
    """A redis-server with AOF on; tests isolate by database number or flush."""
    service = harness.start_redis(services_dir / "redis")
    yield service
    service.stop()


@pytest.fixture
def redis_url(redis_server: harness.Service) -> str:
    """A flushed database of the session's redis-server."""
    url = f"redis://{redis_server.address}/0"
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    return url


@pytest.fixture
def make_settings(
    broker: harness.Service, redis_url: str, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings pointing at the test services, with topics unique to the test."""
    topic = harness.unique("events")

    def factory(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka_bootstrap": broker.address,
            "redis_url": redis_url,
            "topic": topic,
            "dlq_topic": f"{topic}.dlq",
            "customer_topic": f"{topic}.customers",
            "customer_worker_web_port": harness.free_port(),
            "partitions": 3,
            "state_dir": tmp_path / "state",
            "worker_id": harness.unique("worker"),
            "exporter_port": 0,
            "worker_web_port": harness.free_port(),
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return factory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a test marked slow first, each file kept whole (a stable sort by file).

    With `--dist loadfile` (Makefile) xdist hands out whole files in this order: the files that
    wait minutes (demo, backtest, bench, alerting, dashboards) start at once instead of being
    the suite's tail (13.6 min with them last), and each file's module-scoped stack starts once.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)
