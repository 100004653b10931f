"""Real services for integration tests (Tansu, redis, prometheus, alertmanager) on free ports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from storepulse._procs import ManagedProcess, ProcessSpec, free_port
from storepulse.stack import (
    alertmanager_spec,
    broker_spec,
    prometheus_spec,
    redis_spec,
    render_alertmanager_config,
    render_prometheus_config,
)
from streams.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
STOREPULSE = [sys.executable, "-m", "storepulse.cli"]


@dataclass
class Service:
    proc: ManagedProcess
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def start(spec: ProcessSpec, run_dir: Path, host: str, port: int, timeout: float = 30) -> Service:
    proc = ManagedProcess(spec, run_dir)
    proc.start(timeout)
    return Service(proc, host, port)


def start_broker(run_dir: Path) -> Service:
    port = free_port()
    return start(broker_spec("127.0.0.1", port), run_dir, "127.0.0.1", port)


def start_redis(run_dir: Path, port: int | None = None) -> Service:
    port = port or free_port()
    return start(redis_spec("127.0.0.1", port, run_dir / "redis"), run_dir, "127.0.0.1", port)


def start_prometheus(
    run_dir: Path,
    exporter_targets: Sequence[str],
    alertmanager_targets: Sequence[str] = (),
    rule_files: Sequence[str] = (),
    interval: str = "1s",
) -> Service:
    port = free_port()
    config = run_dir / "prometheus.yml"
    config.write_text(
        render_prometheus_config(exporter_targets, alertmanager_targets, rule_files, interval)
    )
    return start(prometheus_spec(port, config, run_dir / "prom-data"), run_dir, "127.0.0.1", port)


def start_alertmanager(run_dir: Path, webhook_url: str) -> Service:
    port = free_port()
    config = run_dir / "alertmanager.yml"
    config.write_text(render_alertmanager_config(webhook_url, group_wait="1s"))
    return start(alertmanager_spec(port, config, run_dir / "am-data"), run_dir, "127.0.0.1", port)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def env_for(settings: Settings) -> dict[str, str]:
    """Environment that makes a `storepulse` child process use exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREPULSE_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, tuple | list):
            value = ",".join(value)
        elif hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"STOREPULSE_{name.upper()}"] = str(value)
    return env


def run_cli(
    args: Iterable[str], settings: Settings, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*STOREPULSE, *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_DIR,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"storepulse {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Publish (key, value) pairs and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str, topic: str, expected: int | None = None, wait: float = 20
) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every message of a topic as (partition, offset, key, value); reads until idle or expected."""
    # No group: the consumer is assigned every partition and reads from the beginning.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        out: list[tuple[int, int, bytes | None, bytes]] = []
        deadline = time.monotonic() + wait
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                out.extend((tp.partition, r.offset, r.key, r.value or b"") for r in records)
            if batch:
                idle_since = time.monotonic()
            if expected is not None and len(out) >= expected:
                break
            if expected is None and time.monotonic() - idle_since > 2:
                break
        return out
    finally:
        await consumer.stop()


class Worker:
    """`storepulse worker` as a child process with its own log, killable like a crash."""

    def __init__(self, settings: Settings, run_dir: Path, name: str = "worker") -> None:
        spec = ProcessSpec(
            name=name,
            argv=[*STOREPULSE, "worker"],
            ready=lambda: True,
            address=settings.kafka_bootstrap,
            env=env_for(settings),
        )
        self.proc = ManagedProcess(spec, run_dir)

    def start(self) -> Worker:
        self.proc.start(timeout=5)
        return self

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop(timeout=20)

    def alive(self) -> bool:
        return self.proc.pid() is not None


def accounted(settings: Settings) -> dict[str, int]:
    """The stored totals summed over partitions, with "accounted" = accepted + dup + rejected."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        totals: dict[str, int] = {}
        for p in client.smembers(f"sp:{settings.topic}:partitions"):
            for k, v in client.hgetall(f"sp:{{{settings.topic}/{int(p)}}}:tot").items():
                totals[k.decode()] = totals.get(k.decode(), 0) + int(v)
    finally:
        client.close()
    totals["accounted"] = sum(
        v for k, v in totals.items() if k.startswith(("ev|", "rej|")) or k == "dup"
    )
    return totals


def wait_accounted(
    settings: Settings, n: int, timeout: float = 90, worker: Worker | None = None
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    totals = accounted(settings)
    while totals["accounted"] < n and time.monotonic() < deadline:
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died:\n{worker.proc.log_tail(40)}")
        time.sleep(0.1)
        totals = accounted(settings)
    if totals["accounted"] != n:
        log = worker.proc.log_tail(40) if worker else ""
        raise AssertionError(f"accounted {totals['accounted']} of {n} messages\n{log}")
    return totals
