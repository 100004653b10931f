"""The customer stage (`storepulse customers-worker`): the worker's app on the customer topic.

The same machinery as the session worker (streams/worker/app.py): Faust at least once, batches
split by partition, one Lua call per partition applying the facts with the partition's offset
(apply_customers.lua), resume from the offsets in Redis on every assignment, recreated-topic
checks, dead letters for messages that are not facts, the stall watchdog; and the account
directory's topic feed (streams/worker/directory_feed.py) beside it. Its own consumer group
(STOREPULSE_WORKER_ID + "-customers"), so it scales and fails independently of the session
worker, and its own metrics port (STOREPULSE_CUSTOMER_WORKER_WEB_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prometheus_client import CollectorRegistry

from streams.settings import Settings
from streams.store.customers import CustomerStore
from streams.store.directory import DirectoryStore
from streams.worker.app import StorepulseApp, raw_topic, stage_options, wire
from streams.worker.customer_batch import FactBatchBuilder
from streams.worker.deadletters import DeadLetterProducer
from streams.worker.directory_feed import DirectoryFeed
from streams.worker.metrics import Endpoint, web_port
from streams.worker.processor import BatchProcessor, ConsumerControl

__all__ = ["CustomerApp", "create_customer_app", "customer_group"]

# The feed's last fetch (0.5 s) and apply finish well within this at a stop.
_FEED_STOP_SECONDS = 5.0


def customer_group(settings: Settings) -> str:
    """The customer stage's Faust app id, i.e. its Kafka consumer group."""
    return f"{settings.worker_id}-customers"


class CustomerApp(StorepulseApp):
    """The worker app applying the customer topic's facts."""

    def __init__(self, settings: Settings, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(settings, endpoint, app_id=customer_group(settings), **kwargs)
        self.source_topic = settings.customer_topic
        self.web_port = web_port(settings, "customers")
        self.feed_stopping = asyncio.Event()
        self.feed_task: asyncio.Task[None] | None = None
        self.feed_dlq: DeadLetterProducer | None = None

    async def on_start(self) -> None:
        await super().on_start()
        # The directory's topic feed runs beside the facts (docs/semantics.md, "Accounts").
        self.feed_dlq = DeadLetterProducer(self.sp, self.sp.accounts_topic)
        await self.feed_dlq.start()
        feed = DirectoryFeed(self.sp, DirectoryStore(self.redis, self.sp), self.feed_dlq)
        self.feed_task = asyncio.create_task(feed.run(self.feed_stopping))

    async def on_stop(self) -> None:
        self.feed_stopping.set()
        if self.feed_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.feed_task), _FEED_STOP_SECONDS)
        if self.feed_dlq is not None:
            await self.feed_dlq.stop()
        await super().on_stop()

    async def make_processor(self, consumer: ConsumerControl) -> BatchProcessor:
        assert self.dlq is not None
        return BatchProcessor(
            self.sp,
            CustomerStore(self.redis, self.sp),
            self.dlq,
            self.worker_metrics,
            consumer,
            builder=FactBatchBuilder(self.sp),
        )


def create_customer_app(
    settings: Settings, registry: CollectorRegistry | None = None, endpoint: Endpoint | None = None
) -> CustomerApp:
    """The customer stage's app for these settings (tests pass their own registry;
    `storepulse customers-worker` the endpoint it serves already)."""
    options = stage_options(settings)
    options["datadir"] = str(settings.state_dir / "faust" / customer_group(settings))
    options["topic_partitions"] = settings.customer_partition_count
    app = CustomerApp(settings, endpoint or Endpoint(registry), **options)
    source = raw_topic(app, settings, settings.customer_topic, settings.customer_partition_count)
    wire(app, source)
    return app
