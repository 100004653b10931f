"""Fault drills on the real worker: rebalances, Redis crash, recreated topic, unreachable deps."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest

from storepulse.local.procs import http_ready
from streams.kafka import ensure_topics
from tests import harness
from tests.integration.streams.worker.test_worker import (
    check_against_reference,
    make_trace,
    published,
)

pytestmark = pytest.mark.slow


def wait_progress(settings, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = harness.accounted(settings)["accounted"]
        if done >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError(f"no progress to {at_least} within {timeout}s")


def wait_log(worker: harness.Worker, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.log_file.exists() and text in worker.proc.log_file.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log of {worker.proc.spec.name} after {timeout}s")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_second_worker_joins_and_leaves_mid_stream(make_settings, tmp_path: Path) -> None:
    settings = make_settings(batch_size=100)
    now_ms = int(time.time() * 1000)
    trace = make_trace(3000, now_ms, seed=21)
    # About 36 s of traffic at 300 messages/s: long enough for a join and a leave, also on the
    # 2-core box with other suites on it, where the second worker took 15 s from its start to
    # its partitions (9 s of it before Faust's first log line) and a 24 s feed had ended: the
    # batch path keeps up with the feed, so no backlog was left for it to take over.
    feeder = harness.Feeder(settings.kafka_bootstrap, settings.topic, trace, rate=300)
    feeder.start()
    first = harness.Worker(settings, tmp_path, "worker-a").start()
    second_settings = settings.model_copy(update={"worker_web_port": harness.free_port()})
    second = harness.Worker(second_settings, tmp_path, "worker-b")
    try:
        wait_progress(settings, 1)
        second.start()  # joins: the partitions are split between the two
        wait_log(second, "resuming from offset")  # it took over partitions mid-stream
        # Before waiting for progress: a feed that has ended leaves nothing to progress to.
        assert feeder.is_alive(), "the feed ended before the rebalance: slow it down"
        done = harness.accounted(settings)["accounted"]
        wait_progress(settings, done + 200)
        assert second.alive()
        assert feeder.is_alive(), "the feed ended before the second worker left: slow it down"
        second.stop()  # leaves: its partitions go back to the first worker
        assert feeder.finish() == len(trace)
        harness.wait_accounted(settings, len(trace), worker=first)
    finally:
        second.stop()
        first.stop()
    messages = asyncio.run(published(settings, len(trace)))
    check_against_reference(settings, messages, now_ms)


def test_redis_killed_and_restarted_from_aof(make_settings, tmp_path: Path) -> None:
    redis_dir = tmp_path / "own-redis"
    own = harness.start_redis(redis_dir)
    settings = make_settings(batch_size=100, redis_url=f"redis://{own.address}/0")
    now_ms = int(time.time() * 1000)
    trace = make_trace(1500, now_ms, seed=5)
    feeder = harness.Feeder(settings.kafka_bootstrap, settings.topic, trace, rate=500)
    feeder.start()
    worker = harness.Worker(settings, tmp_path).start()
    try:
        wait_progress(settings, len(trace) // 4)
        own.proc.kill()  # kill -9 mid-stream
        time.sleep(2)
        metrics = scrape(settings.worker_web_port)
        assert "storepulse_worker_redis_up 0.0" in metrics
        assert worker.alive()
        own = harness.start_redis(redis_dir, port=own.port)  # loads the AOF
        assert feeder.finish() == len(trace)
        harness.wait_accounted(settings, len(trace), worker=worker)
        assert "redis unavailable" in worker.proc.log_file.read_text()
        retries = [
            line
            for line in scrape(settings.worker_web_port).splitlines()
            if line.startswith('storepulse_worker_retries_total{dependency="redis"}')
        ]
        assert retries and float(retries[0].split()[-1]) > 0
        worker.stop()
        messages = asyncio.run(published(settings, len(trace)))
        check_against_reference(settings, messages, now_ms)
    finally:
        worker.stop()
        own.stop()


def test_recreated_topic_is_detected_and_new_events_all_count(
    make_settings, tmp_path: Path
) -> None:
    brokers = [harness.start_broker(tmp_path / "own-broker")]
    workers: list[harness.Worker] = []
    try:
        settings = make_settings(kafka_bootstrap=brokers[0].address)
        now_ms = int(time.time() * 1000)
        old = make_trace(120, now_ms, seed=1)
        asyncio.run(harness.produce(brokers[0].address, settings.topic, old))
        workers.append(harness.Worker(settings, tmp_path).start())
        harness.wait_accounted(settings, len(old), worker=workers[0])
        workers[0].stop()
        before = harness.accounted(settings)
        # The in-memory broker restarts empty, as after `storepulse stack down/up` with Redis kept.
        brokers[0].stop()
        brokers.append(harness.start_broker(tmp_path / "own-broker", port=brokers[0].port))
        new = [
            (k and k.replace(b"sess-", b"new-sess-"), v.replace(b'"sess-', b'"new-sess-'))
            for k, v in make_trace(30, now_ms, seed=2)
        ]
        asyncio.run(harness.produce(brokers[1].address, settings.topic, new))
        workers.append(harness.Worker(settings, tmp_path, "worker-2").start())
        harness.wait_accounted(settings, len(old) + len(new), worker=workers[1])
        workers[1].stop()
    finally:
        for worker in workers:
            worker.stop()
        for broker in brokers:
            broker.stop()
    after = harness.accounted(settings)
    assert "was recreated" in workers[1].proc.log_file.read_text()
    assert after["topic_resets"] >= 1
    # Every new record counted on top of what was there: nothing skipped, nothing lost.
    assert after["accounted"] - before["accounted"] == len(new)


def test_kafka_and_redis_unreachable_at_start_then_during_the_run(
    make_settings, tmp_path: Path
) -> None:
    proxy = harness.TcpProxy(target_port=0)
    broker = harness.start_broker(tmp_path / "proxied", advertised=proxy.port)
    proxy.target_port = broker.port
    redis_port = harness.free_port()
    settings = make_settings(
        kafka_bootstrap=f"127.0.0.1:{proxy.port}", redis_url=f"redis://127.0.0.1:{redis_port}/0"
    )
    now_ms = int(time.time() * 1000)
    first, second = make_trace(200, now_ms, seed=3), make_trace(200, now_ms, seed=4)
    second = [(k, v.replace(b'"sess-', b'"b-sess-')) for k, v in second]
    # Started once its metrics answer: its imports take 2-3 s, more on a busy machine (a
    # fixed 3 s wait saw "connection refused" in CI).
    metrics = http_ready(f"http://127.0.0.1:{settings.worker_web_port}/metrics")
    worker = harness.Worker(settings, tmp_path, ready=metrics).start(timeout=30)
    own_redis = None
    try:
        time.sleep(3)  # neither Kafka nor Redis answers
        assert worker.alive()
        assert "storepulse_worker_up 0.0" in scrape(settings.worker_web_port)
        assert "kafka unreachable at start" in worker.proc.log_file.read_text()
        proxy.open()
        asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, first))
        time.sleep(8)  # the worker consumes but cannot store: Redis is still down
        assert worker.alive()
        own_redis = harness.start_redis(tmp_path / "late-redis", port=redis_port)
        harness.wait_accounted(settings, len(first), worker=worker)
        proxy.cut()  # Kafka goes away mid-run
        time.sleep(3)
        assert worker.alive()
        proxy.open()
        asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, second))
        harness.wait_accounted(settings, len(first) + len(second), worker=worker)
        assert "storepulse_worker_up 1.0" in scrape(settings.worker_web_port)
    finally:
        worker.stop()
        proxy.close()
        broker.stop()
        if own_redis is not None:
            own_redis.stop()


def test_a_stuck_worker_reports_down_and_exits_for_its_supervisor(
    make_settings, tmp_path: Path
) -> None:
    """kill -9 of the in-memory broker and a new one on the same port, traffic running.

    The worker either recovers or, within STOREPULSE_STALL_SECONDS of data waiting with no
    batch applied, reports storepulse_worker_up 0 and exits with status 3; the test restarts it
    as a supervisor would. Every message of the new log counts exactly once either way.
    """
    brokers = [harness.start_broker(tmp_path / "b0")]
    settings = make_settings(kafka_bootstrap=brokers[0].address, stall_seconds=15.0)
    now_ms = int(time.time() * 1000)
    first = make_trace(150, now_ms, seed=31)
    second = [
        (k and k.replace(b"sess-", b"late-sess-"), v.replace(b'"sess-', b'"late-sess-'))
        for k, v in make_trace(400, now_ms, seed=32)
    ]
    workers = [harness.Worker(settings, tmp_path, "worker-0").start()]
    feeder: harness.Feeder | None = None
    ups: list[str] = []
    exits: list[int | None] = []
    try:
        asyncio.run(harness.produce(brokers[0].address, settings.topic, first))
        harness.wait_accounted(settings, len(first), worker=workers[0])
        brokers[0].proc.kill()
        brokers.append(harness.start_broker(tmp_path / "b1", port=brokers[0].port))
        # The new broker's topic has fewer partitions (created by whoever came first, as a
        # producer's auto-creation would): partitions 1 and 2 are gone from under the worker.
        asyncio.run(ensure_topics(settings.model_copy(update={"partitions": 1})))
        feeder = harness.Feeder(settings.kafka_bootstrap, settings.topic, second, rate=40)
        feeder.start()
        deadline = time.monotonic() + 150
        while harness.accounted(settings)["accounted"] < len(first) + len(second):
            assert time.monotonic() < deadline, (
                f"the pipeline never caught up: {harness.accounted(settings)} exits {exits} "
                f"{workers[-1].proc.log_tail(25)}"
            )
            worker = workers[-1]
            if not worker.alive():
                exits.append(worker.proc.returncode())
                workers.append(harness.Worker(settings, tmp_path, f"worker-{len(workers)}"))
                workers[-1].start()
                continue
            try:
                text = scrape(settings.worker_web_port)
            except OSError:
                text = ""
            for line in text.splitlines():
                if line.startswith(("storepulse_worker_up ", "storepulse_worker_stalled_")):
                    ups.append(line)
            time.sleep(0.5)
        feeder.join(timeout=60)
        assert feeder.error is None and feeder.sent == len(second)
    finally:
        for worker in workers:
            worker.stop()
        for broker in brokers:
            broker.stop()
    after = harness.accounted(settings)
    assert after["accounted"] == len(first) + len(second)
    assert all(code == 3 for code in exits), exits  # only ever the stall exit, never a crash
    if exits:
        # Before it gave up, it said so: up 0 while stalled past a third of the limit.
        stalled = [float(u.split()[1]) for u in ups if u.startswith("storepulse_worker_stalled_")]
        assert max(stalled) >= settings.stall_seconds / 3
        assert "storepulse_worker_up 0.0" in ups
    # No log storm: a repeated error line passes once per 10 s.
    for worker in workers:
        lines = worker.proc.log_file.read_text().splitlines()
        commits = [line for line in lines if "OffsetCommit failed" in line]
        assert len(commits) <= 20, commits[:3]
