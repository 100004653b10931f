"""Real services for integration tests (Tansu, redis, prometheus, alertmanager) on free ports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from storepulse.local.procs import ManagedProcess, ProcessSpec, free_port
from storepulse.local.stack import alertmanager_spec, broker_spec, prometheus_spec, redis_spec
from storepulse.monitoring.config import render_alertmanager_config, render_prometheus_config
from streams.settings import Settings, child_environment
from streams.store import keys

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


def start_broker(run_dir: Path, port: int | None = None, advertised: int | None = None) -> Service:
    """Tansu on port; clients are told to connect to `advertised` (a proxy) when given."""
    port = port or free_port()
    spec = broker_spec("127.0.0.1", port)
    if advertised is not None:
        argv = list(spec.argv)
        argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{advertised}"
        spec = ProcessSpec(spec.name, argv, spec.ready, spec.address)
    return start(spec, run_dir, "127.0.0.1", port)


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


env_for = child_environment


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
    """`storepulse worker` (or `customers-worker`) as a child process with its own log,
    killable like a crash."""

    def __init__(
        self,
        settings: Settings,
        run_dir: Path,
        name: str = "worker",
        command: str = "worker",
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        spec = ProcessSpec(
            name=name,
            argv=[*STOREPULSE, command],
            ready=ready,
            address=settings.kafka_bootstrap,
            env=env_for(settings),
        )
        self.proc = ManagedProcess(spec, run_dir)

    def start(self, timeout: float = 5) -> Worker:
        self.proc.start(timeout=timeout)
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
        for p in client.smembers(keys.partitions_key(settings.topic)):
            tot = keys.partition_prefix(settings.topic, int(p)) + keys.TOTALS
            for k, v in client.hgetall(tot).items():
                totals[k.decode()] = totals.get(k.decode(), 0) + int(v)
    finally:
        client.close()
    totals["accounted"] = keys.parse_totals(totals).accounted
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


class Feeder(threading.Thread):
    """Publishes messages at a steady rate from a background thread (traffic during a drill)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        messages: Sequence[tuple[bytes | None, bytes]],
        rate: float,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.messages, self.rate = bootstrap, topic, messages, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by finish()
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, enable_idempotence=False
        )
        await producer.start()
        try:
            chunk = max(1, int(self.rate / 20))  # 20 sends a second
            started = time.monotonic()
            for i in range(0, len(self.messages), chunk):
                futures = [
                    await producer.send(self.topic, v, key=k)
                    for k, v in self.messages[i : i + chunk]
                ]
                await asyncio.gather(*futures)
                self.sent += len(futures)
                ahead = started + self.sent / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()

    def finish(self, timeout: float = 120) -> int:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), "feeder did not finish"
        return self.sent


class TcpProxy(threading.Thread):
    """A loopback TCP forwarder that can be cut (refuse and drop every connection) and restored."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        super().__init__(daemon=True)
        self.port = port or free_port()
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def _call(self, coro: Any) -> Any:
        if not self.is_alive():
            self.start()
            self._ready.wait(5)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def open(self) -> None:
        self._call(self._open())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        if self.is_alive():
            self._call(self._cut())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.join(5)
        self.loop.close()


class LocalHTTP:
    """A test's own small HTTP server (a webhook receiver, another origin) on a free port.

    A context manager: serving in a thread inside, shut down and closed on exit.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], path: str = "/") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
