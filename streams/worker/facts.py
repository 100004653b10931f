"""Customer facts out of the session worker: the outbox entries published, acknowledged, deleted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from prometheus_client import Counter

from streams.kafka import client_options
from streams.settings import Settings
from streams.store.funnel import ApplyResult, FunnelStore, OutboxEntry

__all__ = ["FactProducer", "FactSink", "FactTransport"]

log = logging.getLogger("storepulse.worker")

# Entries read per partition and round trip while draining (500 facts each at most).
_DRAIN_ENTRIES = 20


class FactTransport(Protocol):
    """Where facts go: Kafka in production, a list in tests."""

    async def send_all(self, facts: Sequence[tuple[bytes, bytes]]) -> None:
        """Send (key, value) pairs and wait for every acknowledgement (errors raise)."""
        ...


class FactSink:
    """Publishes outbox entries keyed by customer, then deletes exactly those entries.

    At least once: an entry is deleted only after Kafka acknowledged every fact in it, so a
    crash in between publishes it again (from the outbox, on the next assignment or drain);
    the customer stage applies a fact twice with no effect (docs/semantics.md).
    """

    def __init__(
        self, store: FunnelStore, transport: FactTransport, published: Counter | None = None
    ) -> None:
        self.store = store
        self.transport = transport
        self.published = published

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        facts = [fact for entry in entries for fact in entry.facts]
        if facts:
            await self.transport.send_all(facts)
            if self.published is not None:
                self.published.inc(len(facts))
        by_partition: dict[int, list[bytes]] = {}
        for entry in entries:
            by_partition.setdefault(entry.partition, []).append(entry.entry_id)
        await asyncio.gather(*(self.store.delete_outbox(p, ids) for p, ids in by_partition.items()))

    async def publish_results(self, results: Sequence[ApplyResult]) -> None:
        """Publish the outbox entries of applied batches. The outbox keeps them until Kafka
        acknowledged them, so a crash before that only means they are published again."""
        entries = [entry for result in results for entry in result.outbox]
        if entries:
            await self.publish(entries)

    async def drain(self, partitions: Sequence[int]) -> int:
        """Publish every entry the partitions' outboxes hold; returns the facts published."""
        total = 0
        for p in partitions:
            while entries := await self.store.read_outbox(p, _DRAIN_ENTRIES):
                await self.publish(entries)
                n = sum(len(e.facts) for e in entries)
                total += n
                log.info("partition %d: published %d customer facts left in the outbox", p, n)
        return total


class FactProducer:
    """The Kafka producer of customer facts: acks=all, keyed by customer (murmur2, like Java).

    The facts of a call go out as one record batch per partition (`send_batch`), not one
    `send` each: 17 instead of 33 us of CPU per fact (30,000 facts against the local broker;
    at 0.15 facts per event, 2.5 us per event saved). The records are the same (key, value)
    pairs, on the partition the default partitioner picks.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Not idempotent (the local broker refuses it): a re-sent fact changes nothing.
        self.producer = AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=False, linger_ms=5
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send_all(self, facts: Sequence[tuple[bytes, bytes]]) -> None:
        assert self.producer is not None, "start() first"
        if not facts:
            return
        producer, topic = self.producer, self.settings.customer_topic
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in facts:
            # DefaultPartitioner's rule, so a customer's facts always share one partition.
            p = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            by_partition.setdefault(p, []).append((key, value))
        futures = []
        for p, records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(
                            f"a customer fact of {len(value):,} bytes is over the batch size"
                        )
            futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)
