"""The directory's topic feed in the customers-worker: CRM upserts into the account directory.

STOREPULSE_ACCOUNTS_TOPIC carries one JSON object per upsert (streams/contract/directory.py),
keyed by its account_id; the latest one of an account wins (Kafka keeps a key's order within
its partition). The feed reads every partition itself (no consumer group: it is small, and
every customers-worker may run it), resumes from the offsets stored in Redis with the upserts,
and applies each partition's batch with its offset in one call (streams/store/directory.py):
two feeds, or a crash and a re-read, change nothing twice. A message that is not a directory
record is dead-lettered (reason, detail, the payload) before its batch is applied, and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from streams.contract.accounts import DirectoryRow
from streams.contract.directory import DirectoryError, parse_record
from streams.contract.events import RejectReason
from streams.kafka import client_options
from streams.settings import Settings
from streams.store.directory import DirectoryStore
from streams.worker.deadletters import DeadLetterSink, Rejection
from streams.worker.health import TRANSIENT

__all__ = ["DirectoryFeed", "FeedRecord", "FeedSource", "check_records"]

log = logging.getLogger("storepulse.worker")

_MAX_RECORDS = 1_000
_RETRY_SECONDS = 2.0


class FeedRecord(Protocol):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FeedSource(Protocol):
    """Kafka for the feed: Kafka's consumer in production, a list in tests."""

    async def partitions(self) -> list[int]: ...

    def seek(self, partition: int, offset: int) -> None: ...

    async def fetch(self, timeout_ms: int) -> dict[int, Sequence[FeedRecord]]: ...


def check_records(
    records: Sequence[FeedRecord],
) -> tuple[list[DirectoryRow], list[Rejection]]:
    """The rows of a batch in order, and its messages that are not records (with the reason)."""
    rows: list[DirectoryRow] = []
    rejections: list[Rejection] = []
    for r in records:
        reason: RejectReason = "schema"
        try:
            try:
                value = json.loads(r.value or b"")
            except (ValueError, RecursionError):
                reason = "malformed"
                raise DirectoryError(1, "not a JSON object") from None
            if not isinstance(value, dict):
                reason = "malformed"
            row = parse_record(r.value)
            if r.key is None or r.key != row.account_id.encode("utf-8", "surrogatepass"):
                reason = "key"
                raise DirectoryError(1, "the message key must be the record's account_id")
        except DirectoryError as exc:
            rejections.append(Rejection(reason, exc.reason, r.partition, r.offset, r.value, r.key))
            continue
        rows.append(row)
    return rows, rejections


class _KafkaSource:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.accounts_topic
        self.consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def partitions(self) -> list[int]:
        found = self.consumer.partitions_for_topic(self.topic)
        while not found:
            await self.consumer.topics()  # a metadata round trip: the topic may be new
            found = self.consumer.partitions_for_topic(self.topic)
            if not found:
                await asyncio.sleep(_RETRY_SECONDS)
        parts = sorted(found)
        self.consumer.assign([TopicPartition(self.topic, p) for p in parts])
        return parts

    def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(self.topic, partition), offset)

    async def fetch(self, timeout_ms: int) -> dict[int, Sequence[FeedRecord]]:
        got = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=_MAX_RECORDS)
        return {tp.partition: records for tp, records in got.items()}


class DirectoryFeed:
    """Applies the accounts topic to the directory, partition by partition, exactly once."""

    def __init__(
        self,
        settings: Settings,
        store: DirectoryStore,
        dlq: DeadLetterSink,
        source: FeedSource | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dlq = dlq
        self._kafka = _KafkaSource(settings) if source is None else None
        self.source: FeedSource = source or self._kafka  # type: ignore[assignment]
        self.offsets: dict[int, int] = {}
        self.applied = 0

    async def _resume(self) -> None:
        parts = await self.source.partitions()
        self.offsets = await self.store.feed_offsets(parts)
        for p, offset in self.offsets.items():
            self.source.seek(p, offset + 1)

    async def step(self, timeout_ms: int = 500) -> int:
        """One fetch, applied; returns the records applied (rejected ones not counted)."""
        batches = await self.source.fetch(timeout_ms)
        done = 0
        for p, records in batches.items():
            fresh = [r for r in records if r.offset > self.offsets.get(p, -1)]
            if not fresh:
                continue
            rows, rejections = check_records(fresh)
            if rejections:
                for lost in await self.dlq.publish(rejections):
                    log.error("accounts topic: dead letter lost: %s", lost.error)
            counts: dict[str, int] = {}
            for rej in rejections:
                counts[rej.reason] = counts.get(rej.reason, 0) + 1
            ok, stored = await self.store.apply_feed(
                p, self.offsets.get(p, -1), fresh[-1].offset, rows, counts
            )
            if not ok:
                # Another feed applied meanwhile: go on from what Redis holds.
                log.info("accounts topic partition %d: applied elsewhere up to %d", p, stored)
                self.source.seek(p, stored + 1)
            else:
                done += len(rows)
            self.offsets[p] = stored
        self.applied += done
        return done

    async def run(self, stopping: asyncio.Event) -> None:
        """Until stopping is set: start, resume, apply; errors of Kafka or Redis are retried
        from the offsets in Redis."""
        started = resumed = False
        while not stopping.is_set():
            try:
                if not started and self._kafka is not None:
                    await self._kafka.start()
                started = True
                if not resumed:
                    await self._resume()
                    resumed = True
                await self.step()
            except (KafkaError, RedisError, *TRANSIENT) as exc:
                log.warning("accounts topic feed: %s; retrying in %.0fs", exc, _RETRY_SECONDS)
                resumed = False
                await asyncio.sleep(_RETRY_SECONDS)
        if self._kafka is not None and started:
            await self._kafka.stop()
