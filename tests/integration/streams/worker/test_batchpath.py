"""The batch path on the real worker: a failed batch is read again, and Faust still commits."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests import harness
from tests.integration.streams.worker.test_drills import wait_log, wait_progress
from tests.integration.streams.worker.test_worker import (
    check_against_reference,
    make_trace,
    published,
)

pytestmark = pytest.mark.slow


async def committed(settings, partitions: int) -> dict[int, int | None]:
    """The consumer group's committed offsets, as Kafka keeps them (no join: only a lookup)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.worker_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(settings.topic, p))
            for p in range(partitions)
        }
    finally:
        await consumer.stop()


def near_the_future_edge(message: tuple[bytes | None, bytes], now_ms: int) -> bool:
    """An event the reference (clock: now_ms) and the worker (its clock, seconds later) could
    judge differently: within 2 min of the 5 min future skew."""
    try:
        ts = json.loads(message[1])["ts"]
    except (ValueError, KeyError, TypeError, RecursionError):  # the bad lines of the trace
        return False
    return isinstance(ts, int) and abs(ts - now_ms - 300_000) < 120_000


def test_a_batch_that_fails_is_read_again_and_faust_commits_what_was_applied(
    make_settings, tmp_path: Path
) -> None:
    """Redis refuses writes (maxmemory, not a transient error) for a few seconds mid-stream.

    The handler raises for every batch meanwhile; aiokafka's position is already past them, so
    only the batch path's seek back keeps them from being skipped. Once Redis takes writes
    again every message counts exactly once, and the group's committed offsets in Kafka (Faust's
    commit timer, fed by the batch acknowledgements) reach the end of every partition.
    """
    own = harness.start_redis(tmp_path / "own-redis")
    settings = make_settings(batch_size=100, redis_url=f"redis://{own.address}/0")
    now_ms = int(time.time() * 1000)
    trace = [m for m in make_trace(1200, now_ms, seed=41) if not near_the_future_edge(m, now_ms)]
    feeder = harness.Feeder(settings.kafka_bootstrap, settings.topic, trace, rate=400)
    feeder.start()
    worker = harness.Worker(settings, tmp_path).start()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        wait_progress(settings, len(trace) // 5)
        client.config_set("maxmemory", "1")  # every write is refused: OOM (a ResponseError)
        wait_log(worker, "failed; reading them again")
        stuck = harness.accounted(settings)["accounted"]
        time.sleep(3)
        assert harness.accounted(settings)["accounted"] == stuck  # nothing was written
        assert worker.alive()
        client.config_set("maxmemory", "0")
        assert feeder.finish() == len(trace)
        harness.wait_accounted(settings, len(trace), worker=worker)
        messages = asyncio.run(published(settings, len(trace)))
        ends = {p: max(o for q, o in messages if q == p) + 1 for p in range(settings.partitions)}
        deadline = time.monotonic() + 20
        while (got := asyncio.run(committed(settings, settings.partitions))) != ends:
            assert time.monotonic() < deadline, f"committed {got}, partitions end at {ends}"
            time.sleep(0.5)
        worker.stop()
        check_against_reference(settings, messages, now_ms)
    finally:
        worker.stop()
        client.close()
        own.stop()
