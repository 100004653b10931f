"""Everything under tests/integration needs the real services."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.exporter import Exporter
from streams.settings import Settings
from tests import catalogue, harness


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def served(redis_server: harness.Service) -> catalogue.Families:
    """The storepulse_* families a real exporter serves over a real redis-server, once the
    worker's BatchProcessor has applied an hour of sessions, and those a worker serves."""
    from tests.integration.streams.exporter.test_exporter import fill, get, grid

    settings = Settings(
        redis_url=f"redis://{redis_server.address}/0",
        topic=harness.unique("served"),
        exporter_port=0,
        export_rep_labels=True,  # every family of the catalogue is served
    )
    hour_end = int(time.time()) // 60 * 60 - 60
    # 4 sessions a minute on 3 partitions: every window ratio is above the minimum sample.
    asyncio.run(fill(settings, grid(hour_end, 4)))
    with Exporter(settings, port=0) as exporter:
        status, _, body = get(exporter.url + "/metrics")
    assert status == 200, body
    families = catalogue.parse_exposition(body.decode())
    return families | catalogue.worker_families()
