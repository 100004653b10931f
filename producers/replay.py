"""`storepulse replay`: publish recorded JSONL lines verbatim, re-timed or not, and lose none."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from producers.lines import inspect_line, retime_line
from producers.rate import Pacer, Progress
from producers.sinks import KafkaSink, Message, SinkError, create_topics, open_lines, start_sink
from streams.settings import Settings

__all__ = ["ReplayOptions", "ReplayReport", "Schedule", "read_lines", "replay"]

_BATCH = 500  # lines per sink call
# A jump in event time larger than this (either way) costs no waiting: a stray timestamp or a
# gap between recordings must not stall a replay. 1 h = the worker's default allowed lateness.
_MAX_GAP_MS = 3_600_000


@dataclass
class ReplayOptions:
    """A replay run; speed None means as fast as the broker takes it (--speed max)."""

    files: list[str]
    keep_time: bool = False
    speed: float | None = 1.0
    rate: float | None = None
    create_topics: bool = False
    compression: str | None = None
    now_ms: int | None = None  # the re-timed first event's ts; default: the wall clock at start


@dataclass
class ReplayReport:
    read: int
    published: int
    failed: int
    bytes: int
    duration_s: float
    interrupted: bool
    last_error: str | None
    read_error: bool
    first_ts_ms: int | None
    now_ms: int

    @property
    def rate(self) -> float:
        return self.published / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.published == self.read and not self.interrupted and not self.read_error

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "published": self.published,
            "failed": self.failed,
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "rate": round(self.rate, 1),
            "interrupted": self.interrupted,
            "last_error": self.last_error,
            "first_ts_ms": self.first_ts_ms,
            "now_ms": self.now_ms,
        }

    def summary(self) -> str:
        text = (
            f"replay: {self.read:,} lines read, {self.published:,} published (acknowledged), "
            f"{self.failed:,} failed, {self.bytes:,} bytes in {self.duration_s:.2f}s "
            f"= {self.rate:,.0f} lines/s"
        )
        if self.interrupted:
            text += "; interrupted: stopped reading, every line read was flushed"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        return text


class Schedule:
    """When a line is due, on the monotonic clock, from its event time and the speed.

    The position follows event time forwards; a late line (earlier ts) is due at once and does
    not move it back; a jump of more than an hour either way is taken without waiting.
    """

    def __init__(self, speed: float, origin: float, max_gap_ms: int = _MAX_GAP_MS) -> None:
        self.speed = speed
        self._due = origin
        self._pos_ms: int | None = None
        self._max_gap = max_gap_ms

    def due(self, ts_ms: int | None) -> float:
        if ts_ms is None:
            return self._due
        if self._pos_ms is None:
            self._pos_ms = ts_ms
            return self._due
        delta = ts_ms - self._pos_ms
        if abs(delta) > self._max_gap:
            self._pos_ms = ts_ms
        elif delta > 0:
            self._due += delta / 1_000 / self.speed
            self._pos_ms = ts_ms
        return self._due


def read_lines(paths: list[str]) -> Iterator[bytes]:
    """Every line of every file in order, without its trailing newline, bytes untouched."""
    for path in paths:
        fh = open_lines(path)
        try:
            for raw in fh:
                yield raw[:-1] if raw.endswith(b"\n") else raw
        finally:
            if path != "-":
                fh.close()


def _missing_files(paths: list[str]) -> list[str]:
    return [p for p in paths if p != "-" and (not os.path.exists(p) or os.path.isdir(p))]


async def _sleep_until(deadline: float, stop: asyncio.Event) -> None:
    wait = deadline - time.monotonic()
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


async def replay(
    settings: Settings,
    opts: ReplayOptions,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> ReplayReport:
    """Publish every line of the files; on `stop`, stop reading and flush what was read."""
    missing = _missing_files(opts.files)
    if missing:
        raise SinkError(f"no such file: {', '.join(missing)}")
    stop = stop or asyncio.Event()
    if opts.create_topics:
        await create_topics(settings)
    sink = await start_sink(KafkaSink(settings, compression=opts.compression))
    read = 0
    sent_bytes = 0
    first_ts: int | None = None
    now_ms = opts.now_ms if opts.now_ms is not None else time.time_ns() // 1_000_000
    ts_speed = opts.speed or 1.0  # --speed max keeps the gaps as they are
    started = time.monotonic()
    schedule = Schedule(opts.speed, started) if opts.speed else None
    pacer = Pacer() if opts.rate else None
    tokens = 0
    batch: list[Message] = []
    read_error: str | None = None

    def shift(ms: int) -> int:
        assert first_ts is not None
        return now_ms + round((ms - first_ts) / ts_speed)

    try:
        try:
            for line in read_lines(opts.files):
                read += 1
                info = inspect_line(line)
                if first_ts is None and info.ts_ms is not None:
                    first_ts = info.ts_ms
                value = line
                if not opts.keep_time and info.ts_ms is not None:
                    value = retime_line(line, shift)
                if schedule is not None:
                    due = schedule.due(info.ts_ms)
                    if due > time.monotonic():
                        await sink.send_batch(batch)
                        batch = []
                        await _sleep_until(due, stop)
                if pacer is not None and opts.rate:
                    if tokens == 0:
                        await sink.send_batch(batch)
                        batch = []
                        tokens = await pacer.acquire(opts.rate)
                    tokens -= 1
                batch.append((info.key, value))
                sent_bytes += len(value)
                if len(batch) >= _BATCH:
                    await sink.send_batch(batch)
                    batch = []
                    await asyncio.sleep(0)  # lets Ctrl-C be seen even if the broker never blocks
                    if progress is not None:
                        progress.update(sink.acked, sink.errors)
                if stop.is_set():
                    break
        except (OSError, EOFError, zlib.error) as exc:
            # A truncated .gz or an unreadable file: publish what was read, then say so.
            read_error = f"cannot read input: {exc}"
        await sink.send_batch(batch)
        batch = []
        await sink.flush()
    finally:
        await sink.stop()
        if progress is not None:
            progress.close()
    return ReplayReport(
        read=read,
        published=sink.acked,
        failed=sink.errors,
        bytes=sent_bytes,
        duration_s=time.monotonic() - started,
        interrupted=stop.is_set(),
        last_error=read_error or sink.last_error,
        read_error=read_error is not None,
        first_ts_ms=first_ts,
        now_ms=now_ms,
    )
