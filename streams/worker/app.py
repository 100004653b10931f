"""The Faust application: the batch path hands each fetched batch to the BatchProcessor."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from streams.kafka import ensure_topics, faust_broker_options
from streams.logstorm import contain_log_storms
from streams.settings import Settings
from streams.store.client import connect, ping
from streams.store.funnel import FunnelStore
from streams.worker import metrics as worker_metrics
from streams.worker.batch import Record
from streams.worker.batchpath import BatchConsumer, BatchTransport, consume_batches
from streams.worker.deadletters import DeadLetterProducer
from streams.worker.facts import FactProducer, FactSink
from streams.worker.health import TRANSIENT
from streams.worker.metrics import Endpoint
from streams.worker.processor import BatchProcessor

__all__ = [
    "EXIT_STALLED",
    "FAUST_OPTIONS",
    "StorepulseApp",
    "Transport",
    "create_app",
    "faust_options",
    "raw_topic",
    "stage_options",
    "wire",
]

log = logging.getLogger("storepulse.worker")


SHUTDOWN_GRACE_SECONDS = 15.0
# The exit status of a worker that stopped progressing: its supervisor restarts it, and the
# new process resumes from the offsets in Redis (docs/runbooks.md).
EXIT_STALLED = 3


def _exit_stalled(seconds: float) -> None:
    log.error(
        "no batch applied for %.0fs while Kafka and Redis answer and data waits (or a "
        "rebalance has not finished): the consumer is stuck; exiting with status %d so that "
        "the supervisor restarts the worker (it resumes from the offsets stored in Redis)",
        seconds,
        EXIT_STALLED,
    )
    logging.shutdown()
    os._exit(EXIT_STALLED)


def _forced_exit(status: int) -> None:
    log.warning(
        "shutdown still waiting after %.0fs (Kafka unreachable?); exiting now. Nothing is lost: "
        "applied offsets are stored in Redis with the counters.",
        SHUTDOWN_GRACE_SECONDS,
    )
    logging.shutdown()
    os._exit(status)


# Faust creates its aiokafka consumer with fetch_max_wait_ms=1500, hard-coded. A broker that
# holds a fetch for the whole wait when no data is there yet (Tansu does) then hands a live
# stream over in 1.5 s lumps: p99 1.8 s at 2,000 events/s (0.21 s with 100 ms, `make bench`).
# A Kafka broker answers as soon as data arrives, so there 100 ms only means at most 10 empty
# fetches per second while idle.
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _ResumingConsumer(BatchConsumer):
    """The batch path's consumer, which after seeking to the committed offsets resumes from
    Redis."""

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        app = self.app
        if isinstance(app, StorepulseApp) and app.processor is not None:
            topic = app.source_topic
            ours = sorted(tp.partition for tp in self.assignment() if tp.topic == topic)
            for partition, offset in (await app.processor.on_assigned(ours)).items():
                tp = TP(topic, partition)
                if offset < 0:
                    earliest = (await self.earliest_offsets(tp)).get(tp) or 0
                    log.info(
                        "partition %d: nothing applied in Redis; reading from offset %d",
                        partition,
                        earliest,
                    )
                    offset = int(earliest)
                else:
                    log.info(
                        "partition %d: resuming from offset %d (stored in Redis)", partition, offset
                    )
                await self.seek(tp, offset)


class Transport(BatchTransport):
    """The worker's transport: its consumer resumes from Redis and fetches with a short wait.

    Public so that the benchmark's other agents fetch exactly as the worker does (the resume
    step acts only for a StorepulseApp, the batch path only for topics given a handler by
    consume_batches: the agents' topics go through Faust's per-message delivery).
    """

    Consumer = _ResumingConsumer


class _FaustConsumer:
    """ConsumerControl over Faust's consumer: high-water marks of fetched data and seeks."""

    def __init__(self, app: StorepulseApp) -> None:
        self.app = app

    def highwater(self, partition: int) -> int | None:
        try:
            hw = self.app.consumer.highwater(TP(self.app.source_topic, partition))
        except Exception:  # not fetched yet, or not assigned any more
            return None
        return None if hw is None else int(hw)

    async def seek(self, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(self.app.source_topic, partition), offset)

    async def seek_to_earliest(self, partition: int) -> int:
        tp = TP(self.app.source_topic, partition)
        earliest = await self.app.consumer.earliest_offsets(tp)
        offset = int(earliest.get(tp, 0) or 0)
        await self.app.consumer.seek(tp, offset)
        return offset


class StorepulseApp(faust.App):
    """faust.App with a consumer that resumes partitions from the offsets kept in Redis.

    The session worker (this class) and the customer stage (streams/worker/customer_app.py)
    differ in their source topic, consumer group, metrics port and processor only.
    """

    source_topic: str  # the topic whose partitions the processor applies

    def __init__(
        self,
        settings: Settings,
        endpoint: Endpoint,
        app_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.sp = settings
        self.source_topic = settings.topic
        self.web_port = worker_metrics.web_port(settings, "sessions")
        self.facts: FactProducer | None = None
        self.endpoint = endpoint
        self.worker_metrics = endpoint.metrics
        self.processor: BatchProcessor | None = None
        self.redis: Any = None
        self.dlq: DeadLetterProducer | None = None
        # When the current rebalance began (monotonic), None outside one: a rebalance that
        # never ends is a stall too (seen on Tansu after a restart: assignment never finished).
        self.rebalance_began: float | None = None
        # The exit status of a shutdown cut short by the watchdog: that of the stop signal.
        self.forced_exit_status = 0
        super().__init__(app_id or settings.worker_id, **kwargs)

    def on_rebalance_start(self) -> None:
        if self.rebalance_began is None:
            self.rebalance_began = time.monotonic()
        super().on_rebalance_start()

    def on_rebalance_end(self) -> None:
        self.rebalance_began = None
        super().on_rebalance_end()

    def rebalancing_for(self) -> float:
        """Seconds the current rebalance has lasted (0 outside one)."""
        began = self.rebalance_began
        return 0.0 if began is None else time.monotonic() - began

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        # Runs before Faust starts its consumer: the processor exists by the first assignment.
        sp = self.sp
        contain_log_storms()  # Faust has set up logging by now
        # First, so that a worker waiting for Kafka or Redis reports storepulse_worker_up 0
        # (`storepulse worker` serves it already, before Faust is even imported: run.py).
        self.endpoint.serve(sp.worker_web_host, self.web_port)
        await _until_reachable(
            "kafka",
            sp.kafka_bootstrap,
            "start the broker (`storepulse stack up` runs the local one) or fix "
            "STOREPULSE_KAFKA_BOOTSTRAP",
            lambda: ensure_topics(sp),
            self.worker_metrics,
        )
        self.redis = connect(sp)
        await self._check_redis()
        self.dlq = DeadLetterProducer(sp, self.source_topic)
        await self.dlq.start()
        self.processor = await self.make_processor(_FaustConsumer(self))
        log.info(
            "worker %s: topic %s -> redis %s, dead letters to %s, metrics on :%s, %s loop",
            self.conf.id,
            self.source_topic,
            sp.redis_url_shown,
            sp.dlq_topic,
            self.web_port or "-",
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        await super().on_start()

    async def make_processor(self, consumer: _FaustConsumer) -> BatchProcessor:
        """The session worker's processor; with customer facts, their producer and sink."""
        sp, store = self.sp, FunnelStore(self.redis, self.sp)
        sink = None
        if sp.customer_facts:
            self.facts = FactProducer(sp)
            await self.facts.start()
            sink = FactSink(store, self.facts, self.worker_metrics.facts_published_total)
        assert self.dlq is not None
        return BatchProcessor(sp, store, self.dlq, self.worker_metrics, consumer, facts=sink)

    async def _check_redis(self) -> None:
        """Say once, clearly, when Redis does not answer at start; the batches retry it anyway."""
        try:
            await ping(self.redis)
        except (RedisError, *TRANSIENT) as exc:
            self.worker_metrics.redis_up.set(0)
            self.worker_metrics.up.set(0)
            log.warning(
                "redis unreachable at start (%s: %s); the worker waits for it before storing a "
                "batch: start it (`storepulse stack up` runs the local one) or fix "
                "STOREPULSE_REDIS_URL",
                self.sp.redis_url_shown,
                exc,
            )

    async def on_stop(self) -> None:
        # aiokafka's close retries a dead broker for minutes (leave group, commit). Nothing is
        # lost by not waiting: stored offsets live in Redis, so after 15 s the process just ends.
        watchdog = threading.Timer(
            SHUTDOWN_GRACE_SECONDS, _forced_exit, args=(self.forced_exit_status,)
        )
        watchdog.daemon = True
        watchdog.start()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.dlq is not None:
            await self.dlq.stop()
        if self.facts is not None:
            await self.facts.stop()
        if self.redis is not None:
            await self.redis.aclose()
        self.endpoint.stop()


async def _until_reachable(
    name: str,
    address: str,
    hint: str,
    call: Callable[[], Awaitable[object]],
    metrics: worker_metrics.WorkerMetrics,
) -> None:
    """Retry a start-up call with backoff (0.5 s doubling to 10 s) until the dependency answers."""
    delay = 0.5
    while True:
        try:
            await call()
        except (OSError, KafkaError) as exc:
            metrics.kafka_up.set(0)
            metrics.up.set(0)
            metrics.retries_total.labels(name).inc()
            log.warning(
                "%s unreachable at start (%s: %s); retrying in %.1fs: %s",
                name,
                address,
                exc,
                delay,
                hint,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        else:
            metrics.kafka_up.set(1)
            return


def raw_topic(
    app: faust.App, settings: Settings, name: str | None = None, partitions: int | None = None
) -> Any:
    """The events topic (or name) with raw bytes keys and values: the worker validates them."""
    return app.topic(
        name or settings.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions or settings.partitions,
    )


# The Faust settings every storepulse app runs with (the worker and the bench's agents).
FAUST_OPTIONS: dict[str, Any] = {
    # At least once: the local broker cannot run idempotent or transactional producers;
    # exactly-once *effect* comes from the offsets the Lua script stores with each batch.
    "processing_guarantee": "at_least_once",
    # Tansu delays a group join by half the session timeout: 6 s keeps rebalances short.
    "broker_session_timeout": 6.0,
    "broker_rebalance_timeout": 6.0,
    "broker_heartbeat_interval": 1.5,
    "broker_commit_interval": 1.0,
    "consumer_auto_offset_reset": "earliest",
    # Faust's own web server is off; the worker serves /metrics with prometheus_client.
    "web_enabled": False,
    "loghandlers": [],
}


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of faust.App for these settings: brokers, topics, data directory."""
    datadir = settings.state_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    return {
        **FAUST_OPTIONS,
        **faust_broker_options(settings),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "datadir": str(datadir / settings.worker_id),
    }


def stage_options(settings: Settings) -> dict[str, Any]:
    """faust_options of a stage on the batch path (the session worker, the customer stage).

    One fetch hands over at most a batch: one handler call per fetch. The bench's Faust agents
    keep faust_options as they are (the trivial agent is the reference as Faust configures it).
    """
    return {**faust_options(settings), "broker_max_poll_records": settings.batch_size}


def create_app(
    settings: Settings, registry: CollectorRegistry | None = None, endpoint: Endpoint | None = None
) -> StorepulseApp:
    """The worker app for these settings (tests pass their own registry; `storepulse worker`
    the endpoint it serves already)."""
    app = StorepulseApp(settings, endpoint or Endpoint(registry), **stage_options(settings))
    return wire(app, raw_topic(app, settings))


def wire(app: StorepulseApp, source: Any) -> StorepulseApp:
    """The batch path handing the fetches of source to the app's processor, and the timers."""
    settings = app.sp

    async def apply(batches: Mapping[TP, Sequence[Record]]) -> None:
        assert app.processor is not None
        # Every partition of the fetch in one call: one pipelined round trip to Redis.
        await app.processor.process([r for records in batches.values() for r in records])

    consume_batches(app, source, apply)

    @app.timer(0.25)  # type: ignore[untyped-decorator]
    async def highwaters() -> None:
        """Every 0.25 s: a fallen high-water mark sends the partition back to check its log."""
        if app.processor is not None:
            await app.processor.watch_highwaters()

    @app.timer(2.0)  # type: ignore[untyped-decorator]
    async def health() -> None:
        """Every 2 s: health of Redis, Kafka and progress; recreated topics; the stall exit."""
        if app.processor is not None and app.redis is not None and app.dlq is not None:
            await app.processor.flush()  # the last batch of a burst, settled within 2 s
            await app.processor.dependencies.probe("redis", app.redis.ping)
            await app.processor.dependencies.probe("kafka", app.dlq.reachable)
            await app.processor.check_partitions()
            await app.processor.drain_facts()  # left by a worker that died before publishing
            processor, dependencies = app.processor, app.processor.dependencies
            stalled = max(processor.stalled_for(), app.rebalancing_for())
            dependencies.set_stall(stalled, settings.stall_seconds / 3)
            if dependencies.must_exit(stalled, settings.stall_seconds):
                _exit_stalled(stalled)

    return app
