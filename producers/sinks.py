"""Where lines go: a Kafka topic (aiokafka, acknowledged) or a JSONL file (.gz by suffix)."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import sys
from collections.abc import Sequence
from typing import IO, Any, Protocol, TypeVar, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from streams.kafka import client_options, ensure_topics
from streams.settings import Settings

__all__ = [
    "FileSink",
    "KafkaSink",
    "Sink",
    "SinkError",
    "create_topics",
    "default_compression",
    "open_lines",
    "start_sink",
]

Message = tuple[bytes | None, bytes]
# zlib level 6 (gzip's default) costs about 3x level 1 for ~10% smaller files; 6 still keeps a
# million-event file well inside the time budget, and it is what `gzip` users expect.
_GZIP_LEVEL = 6


class SinkError(Exception):
    """The sink cannot be used (broker unreachable, topic missing, file not writable)."""


async def create_topics(settings: Settings) -> None:
    """The events and dead-letter topics, created when missing; SinkError when Kafka says no."""
    try:
        await ensure_topics(settings)
    except (KafkaError, OSError) as exc:
        raise SinkError(
            f"cannot create topics on Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from None


class Sink(Protocol):
    """A destination for lines; `acked` counts lines the destination confirmed."""

    description: str
    sent: int
    acked: int
    errors: int
    last_error: str | None

    async def start(self) -> None: ...

    async def send_batch(self, batch: Sequence[Message]) -> None: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


def default_compression() -> str:
    """lz4 when its codec is installed (faster), else gzip, which aiokafka always supports."""
    return "lz4" if importlib.util.find_spec("lz4") is not None else "gzip"


def open_lines(path: str) -> IO[bytes]:
    """A binary reader for a JSONL file, gunzipped when the name ends in .gz; '-' is stdin."""
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _open_write(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdout.buffer
    if path.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "wb", compresslevel=_GZIP_LEVEL))
    return open(path, "wb")


class FileSink:
    """JSONL to a file, gzip-compressed when the name ends in .gz; '-' writes to stdout."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"file {path}"
        self.sent = self.acked = self.errors = 0
        self.last_error: str | None = None
        self._fh: IO[bytes] | None = None

    async def start(self) -> None:
        try:
            self._fh = _open_write(self.path)
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    async def send_batch(self, batch: Sequence[Message]) -> None:
        assert self._fh is not None, "start() first"
        if not batch:
            return
        self._fh.write(b"\n".join(value for _, value in batch) + b"\n")
        self.sent += len(batch)
        self.acked += len(batch)

    async def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    async def stop(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None and fh is not sys.stdout.buffer:
            fh.close()
        elif fh is not None:
            fh.flush()


class KafkaSink:
    """Publishes to a topic with batching and compression; counts broker acknowledgements.

    acks="all" and no idempotence: the local Tansu broker does not support idempotent
    producers, and the worker de-duplicates by event_id anyway.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        compression: str | None = None,
        linger_ms: int = 10,
        max_batch_bytes: int = 256 * 1024,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.topic
        self.compression = compression or default_compression()
        self.description = f"kafka {settings.kafka_bootstrap} topic {self.topic}"
        self.sent = self.acked = self.errors = 0
        self.last_error: str | None = None
        self._producer = AIOKafkaProducer(
            **client_options(settings),
            acks="all",
            enable_idempotence=False,
            linger_ms=linger_ms,
            max_batch_size=max_batch_bytes,
            compression_type=None if self.compression == "none" else self.compression,
            request_timeout_ms=15_000,
        )
        self._started = False
        self._waiting: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        bootstrap = self.settings.kafka_bootstrap
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            await self._producer.stop()  # closes whatever the failed start opened
            verb = "reach" if isinstance(exc, KafkaConnectionError | OSError) else "connect to"
            raise SinkError(f"cannot {verb} Kafka at {bootstrap}: {exc}") from None
        self._started = True
        try:
            # A metadata request for all topics never auto-creates one, unlike a send would.
            metadata = await self._producer.client.fetch_all_metadata()
        except (KafkaError, OSError) as exc:
            raise SinkError(f"cannot read topic metadata from {bootstrap}: {exc}") from None
        if self.topic not in metadata.topics():
            raise SinkError(
                f"topic {self.topic!r} does not exist on {bootstrap} "
                "(create it, e.g. with --create-topics, or start the worker once)"
            )

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.errors += 1
            self.last_error = "cancelled"
        elif fut.exception() is not None:
            self.errors += 1
            self.last_error = f"{type(fut.exception()).__name__}: {fut.exception()}"
        else:
            self.acked += 1

    async def send_batch(self, batch: Sequence[Message]) -> None:
        send = self._producer.send
        topic = self.topic
        done = self._done
        waiting = self._waiting
        for key, value in batch:
            self.sent += 1
            try:
                fut = await send(topic, value, key=key)
            except (KafkaError, ValueError) as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            fut.add_done_callback(done)
            waiting.append(fut)
        if len(waiting) > 50_000:
            self._waiting = [f for f in waiting if not f.done()]

    async def flush(self) -> None:
        """Return when every line handed over is acknowledged or failed."""
        if not self._started:
            return
        await self._producer.flush()
        waiting, self._waiting = self._waiting, []
        if waiting:
            await asyncio.wait(waiting)
        await asyncio.sleep(0)  # let the last done-callbacks run

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()


S = TypeVar("S", bound=Sink)


async def start_sink(sink: S) -> S:
    """The sink, started; a failed start still releases what it opened."""
    try:
        await sink.start()
    except BaseException:
        await sink.stop()
        raise
    return sink
