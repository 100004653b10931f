"""Benchmark agents (trivial, naive, real worker) run as `python -m`, timed by a Faust sensor."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from storepulse.bench.quantiles import quantile
from streams.loop import use_event_loop
from streams.redact import install_log_redaction
from streams.settings import Settings, load_settings
from streams.store.client import connect
from streams.worker.app import Transport, create_app, faust_options, raw_topic
from streams.worker.batch import Record
from streams.worker.customer_app import create_customer_app

__all__ = [
    "MODES",
    "TimingSensor",
    "build_app",
    "by_second",
    "latency_summary",
    "main",
    "naive_key",
    "quantile",
    "read_raw_latencies",
]

# trivial: `async for value in stream` + json.loads, the framework's per-message ceiling;
# trivial-batch: the same decode inside take_events (the batching the worker uses);
# naive: json.loads + one awaited HINCRBY per event, the obvious baseline;
# worker: streams.app.create_app, the real worker exactly as `storepulse worker` builds it;
# customers: the customer stage exactly as `storepulse customers-worker` builds it.
MODES = ("trivial", "trivial-batch", "naive", "worker", "customers")

# The sensor's background loop: how often it checks for "done" and samples CPU time. Times of
# the first and last message are taken per message; this only bounds how soon the result is
# written and the CPU reading's lag (at most one 50 ms tick of an idle process: ~0 CPU).
_TICK_S = 0.05


def naive_key(topic: str, partition: int) -> str:
    """The naive agent's per-partition counter hash: event type (or reject label) -> count."""
    return f"bench:naive:{{{topic}/{partition}}}"


def latency_summary(values: Any) -> dict[str, float]:
    """Exact nearest-rank quantiles of latencies (seconds), any order."""
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": quantile(ordered, 0.0),
        "p50": quantile(ordered, 0.50),
        "p90": quantile(ordered, 0.90),
        "p99": quantile(ordered, 0.99),
        "p999": quantile(ordered, 0.999),
        "max": float(ordered[-1]) if ordered else 0.0,
    }


def by_second(acked_at: Any, latencies: Any) -> list[list[float]]:
    """[second since the first ack, events acked in it, their median and max latency]."""
    if not acked_at:
        return []
    start = min(acked_at)
    seconds: dict[int, list[float]] = {}
    for at, latency in zip(acked_at, latencies, strict=True):
        seconds.setdefault(int(at - start), []).append(latency)
    rows = []
    for second, values in sorted(seconds.items()):
        values.sort()
        rows.append([second, len(values), round(quantile(values, 0.5), 4), round(values[-1], 4)])
    return rows


def raw_latency_files(result: Path) -> tuple[Path, Path]:
    """Where a sensor leaves its per-event (ack time, latency) arrays, for merging processes."""
    return result.with_suffix(".acked"), result.with_suffix(".latency")


def read_raw_latencies(result: Path) -> tuple[array[float], array[float]]:
    """The (ack times, latencies) one sensor left next to its result."""
    acked, latencies = array("d"), array("d")
    for values, path in zip((acked, latencies), raw_latency_files(result), strict=True):
        values.frombytes(path.read_bytes())
    return acked, latencies


# How long a sensor told to finish waits for the batch still in its handler.
FINISH_GRACE_S = 5.0


class TimingSensor(faust.Sensor):
    """First message in, last message out, CPU time and (optionally) per-event latency.

    on_message_in fires when a stream takes a message (after the group join and the fetch);
    on_message_out fires when the message is acknowledged, i.e. when the agent is done with it:
    for take_events only after the loop body returned (for the worker: after the Lua call
    applied the batch in Redis). Both cost a call and a clock read per message (< 0.5 µs,
    next to Faust's ~90 µs of per-message machinery).
    """

    def __init__(
        self,
        result: Path,
        expect: int,
        finish_file: Path | None,
        latency: bool,
        expect_file: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.result = result
        self.expect = expect
        self.finish_file = finish_file
        self.expect_file = expect_file
        self.latency = latency
        self.count = 0
        self.first_in: float | None = None
        self.last_out: float | None = None
        self.cpu_first: float | None = None
        self.cpu_last: float | None = None
        self._cpu_seen = 0
        self.partitions: set[int] = set()
        # Seconds from each record's Kafka timestamp (producer append time, ms resolution) to
        # its acknowledgement; 8 bytes per event, 100k events = 0.8 MB.
        self.latencies = array("d")
        self.acked_at = array("d")
        self.written = False
        self.rebalances = 0
        self.extra: dict[str, Any] = {}
        # Records handed to the batch path's handler and not yet returned from it, and when the
        # finish file was first seen (see _watch).
        self._in_handler = 0
        self._finish_seen: float | None = None

    @property
    def assigned_marker(self) -> Path:
        """Exists once the first rebalance (group join and assignment) has completed."""
        return self.result.with_suffix(".assigned")

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        self.rebalances += 1
        self.assigned_marker.write_text(str(self.rebalances))

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        if self.first_in is None:
            self.first_in = time.time()
            self.cpu_first = time.process_time()

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        now = time.time()
        self.count += 1
        self.last_out = now
        self.partitions.add(tp.partition)
        if self.latency and message.timestamp:
            self.latencies.append(now - message.timestamp)
            self.acked_at.append(now)
        if self.count == self.expect:
            self.cpu_last = time.process_time()
            self._cpu_seen = self.count

    # The batch path (streams/worker/batchpath.py): one call per partition's batch, taken
    # when it is handed to the handler and when the handler returned (applied in Redis).
    def on_batch_in(self, tp: TP, records: Sequence[Record]) -> None:
        self._in_handler += len(records)
        if self.first_in is None:
            self.first_in = time.time()
            self.cpu_first = time.process_time()

    def on_batch_out(self, tp: TP, records: Sequence[Record]) -> None:
        now = time.time()
        self._in_handler -= len(records)
        self.count += len(records)
        self.last_out = now
        self.partitions.add(tp.partition)
        if self.latency:
            for r in records:
                if r.timestamp_ms is not None:
                    self.latencies.append(now - r.timestamp_ms / 1000)
                    self.acked_at.append(now)
        if 0 < self.expect <= self.count and self._cpu_seen < self.expect:
            self.cpu_last = time.process_time()
            self._cpu_seen = self.count

    @faust.Service.task
    async def _watch(self) -> None:
        while not self.should_stop and not self.written:
            await asyncio.sleep(_TICK_S)
            if self.count != self._cpu_seen:
                # Sampled here, not per message: process_time() is a system call.
                self.cpu_last = time.process_time()
                self._cpu_seen = self.count
            if self.expect <= 0 and self.expect_file is not None and self.expect_file.exists():
                # Told later (live runs): the number of messages the feed published.
                self.expect = int(self.expect_file.read_text())
            done = self.expect > 0 and self.count >= self.expect
            if done or self._finished():
                self.write()

    def _finished(self) -> bool:
        """The bench's finish file is there and the batch in the handler has returned.

        The bench writes it once Redis holds every message; the worker's handler returns a
        little later (it publishes the batch's customer facts after the apply): a sensor that
        reported at once missed that batch (2,462 of 3,000 messages over two workers). A batch
        whose handler failed never returns (it is read again): at most FINISH_GRACE_S then.
        """
        if self.finish_file is None or not self.finish_file.exists():
            return False
        now = time.monotonic()
        if self._finish_seen is None:
            self._finish_seen = now
        return self._in_handler <= 0 or now - self._finish_seen >= FINISH_GRACE_S

    def write(self) -> None:
        """Write the result atomically (once); the bench waits for the file."""
        if self.written:
            return
        self.written = True
        body: dict[str, Any] = {
            "pid": os.getpid(),
            "count": self.count,
            "first_in": self.first_in,
            "last_out": self.last_out,
            "cpu_first": self.cpu_first,
            "cpu_last": self.cpu_last,
            "partitions": sorted(self.partitions),
            "rebalances": self.rebalances,
            **self.extra,
        }
        if self.latency:
            body["latency"] = latency_summary(self.latencies)
            body["latency_by_second"] = by_second(self.acked_at, self.latencies)
            # The raw arrays too (8 bytes per event), so the bench can merge several processes.
            for values, path in zip(
                (self.acked_at, self.latencies), raw_latency_files(self.result), strict=True
            ):
                path.write_bytes(values.tobytes())
        tmp = self.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self.result)


class _BenchApp(faust.App):
    """A faust.App owning one Redis client (naive agent), started and closed with the app."""

    def __init__(self, settings: Settings, with_redis: bool, **kwargs: Any) -> None:
        self.sp = settings
        self.with_redis = with_redis
        self.redis: Any = None
        super().__init__(settings.worker_id, **kwargs)

    def _new_transport(self) -> Any:
        # The worker's own transport and consumer class, so every variant fetches exactly as the
        # worker does (its resume-from-Redis step only acts for the worker's app class).
        return Transport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        if self.with_redis:
            self.redis = connect(self.sp)
        await super().on_start()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.redis is not None:
            await self.redis.aclose()


def _decode(value: bytes | None) -> str:
    """The event type of a message, or a reject label: the trivial agents' whole work."""
    try:
        obj = json.loads(value or b"")
    except ValueError:
        return "malformed"
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else "other"


def build_app(mode: str, settings: Settings, sensor: TimingSensor) -> Any:
    """The Faust app of one variant, with the timing sensor installed."""
    if mode in {"worker", "customers"}:
        worker_app = create_customer_app(settings) if mode == "customers" else create_app(settings)
        worker_app.sensors.add(sensor)
        return worker_app
    app = _BenchApp(settings, with_redis=mode == "naive", **faust_options(settings))
    topic = raw_topic(app, settings)
    seen = sensor.extra
    seen["agent_count"] = 0

    if mode == "trivial":

        @app.agent(topic, name="bench.trivial")
        async def trivial(stream: Any) -> None:
            async for value in stream:
                _decode(value)
                seen["agent_count"] += 1

    elif mode == "trivial-batch":

        @app.agent(topic, name="bench.trivial_batch")
        async def trivial_batch(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, settings.batch_seconds):
                for event in events:
                    _decode(event.message.value)
                seen["agent_count"] += len(events)

    else:

        @app.agent(topic, name="bench.naive")
        async def naive(stream: Any) -> None:
            async for event in stream.events():
                # One awaited round trip per event: the write is stored before the ack.
                kind = _decode(event.message.value)
                key = naive_key(settings.topic, event.message.partition)
                await app.redis.hincrby(key, kind, 1)
                seen["agent_count"] += 1

    app.sensors.add(sensor)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storepulse.bench.agents",
        description="One benchmark variant as a Faust worker; settings from STOREPULSE_*.",
    )
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--result", type=Path, required=True, help="result JSON to write")
    parser.add_argument("--expect", type=int, default=0, help="done after this many messages")
    parser.add_argument("--finish-file", type=Path, help="done once this file exists")
    parser.add_argument(
        "--expect-file", type=Path, help="done after as many messages as this file will say"
    )
    parser.add_argument("--latency", action="store_true", help="record per-event latency")
    args = parser.parse_args(argv)
    install_log_redaction()  # its log is the bench's to show (BenchError quotes its tail)
    settings = load_settings()
    # Every variant on the worker's event loop, so the ratios compare like with like.
    use_event_loop(settings.event_loop)
    sensor = TimingSensor(
        args.result, args.expect, args.finish_file, args.latency, expect_file=args.expect_file
    )
    app = build_app(args.mode, settings, sensor)
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
