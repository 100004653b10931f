"""The batch processor: validate, admit, dead-letter and apply one batch exactly once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from streams.contract.events import EventParser
from streams.contract.funnel import PartitionCursor, StageMap, fingerprint
from streams.settings import Settings
from streams.store.funnel import ApplyResult, SessionLimit
from streams.store.keys import FIELD_DLQ_LOST, STATUS_CONFLICT, STATUS_LIMIT
from streams.worker.batch import BatchBuilder, Prepared, Record
from streams.worker.deadletters import DeadLetterSink
from streams.worker.facts import FactSink
from streams.worker.health import Dependencies
from streams.worker.metrics import WorkerMetrics
from streams.worker.progress import Progress
from streams.worker.stage import CallBuilder, ConsumerControl, PartitionStore

__all__ = ["BatchProcessor", "CallBuilder", "ConsumerControl", "PartitionStore", "Record"]

log = logging.getLogger("storepulse.worker")
# An awaited offset not delivered after this long is sought again (see _repeat_seeks).
REPEAT_SEEK_SECONDS = 1.0


@dataclass
class _InFlight:
    prepared: list[Prepared]
    task: asyncio.Future[list[ApplyResult]]


class BatchProcessor:
    """Turns consumed records into one atomic Redis update per partition.

    Exactly-once effect on top of at-least-once delivery: each partition's batch is applied by
    one Lua call that also stores the partition's last applied offset; records at or below it are
    skipped. Rejected records go to the dead-letter topic *before* the batch is applied, so a crash
    in between re-publishes them (the DLQ is at least once) but never loses one.
    """

    def __init__(
        self,
        settings: Settings,
        store: PartitionStore,
        dlq: DeadLetterSink,
        metrics: WorkerMetrics,
        consumer: ConsumerControl | None = None,
        clock: Callable[[], float] = time.time,
        builder: CallBuilder | None = None,
        facts: FactSink | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dlq = dlq
        self.metrics = metrics
        self.consumer = consumer
        self.clock = clock
        self.builder = builder or BatchBuilder(
            settings,
            EventParser(settings.checkout_steps, settings.max_event_bytes),
            StageMap(settings.checkout_steps),
        )
        self.facts = facts  # the customer facts out (docs/semantics.md, Customers); None: none
        self.cursors: dict[int, PartitionCursor] = {}
        self.dependencies = Dependencies(metrics)
        self._retry = self.dependencies.retry
        # Batches and the periodic partition check never interleave on one partition.
        self._lock = asyncio.Lock()
        self._suspects: set[int] = set()
        # Partition -> highest high-water mark of the fetched data since it was assigned.
        self._hw_peak: dict[int, int] = {}
        self._inflight: _InFlight | None = None
        # Partition -> offset the consumer was sent back to; other records wait for it.
        self._awaiting: dict[int, int] = {}
        # Partition -> when the consumer was last sent to its awaited offset (monotonic).
        self._sent_at: dict[int, float] = {}
        self.progress = Progress()
        # Partition -> sessions the script found at their cap (STATUS_LIMIT), for the redo.
        self._limits: dict[int, dict[str, SessionLimit]] = {}

    # Assignment --------------------------------------------------------------------------

    async def on_assigned(self, partitions: Sequence[int]) -> dict[int, int]:
        """Reload cursors of newly assigned partitions; returns where to seek each one.

        The consumer re-reads the last applied record (offset R, not R+1) so that its fingerprint
        proves the topic is still the one Redis counted. A partition with nothing applied (-1)
        is read from its earliest offset: Redis, not Kafka's committed offset, says what was
        counted, and a committed offset can belong to another log (a broker that restarted
        empty while a worker kept committing its old positions on it).
        """
        await self._retry("redis", partial(self.store.register_partitions, partitions))
        seeks: dict[int, int] = {}
        for p in partitions:
            cursor = await self._retry("redis", partial(self.store.load_cursor, p))
            self.cursors[p] = cursor
            self._awaiting.pop(p, None)
            self._hw_peak.pop(p, None)
            seeks[p] = cursor.offset
        if self.facts is not None:  # facts of a worker that died before publishing go first
            await self._retry("kafka", partial(self.facts.drain, list(partitions)))
        return seeks

    async def drain_facts(self) -> int:
        """Publish what the outboxes hold once the batch in flight settled (left by a worker
        that stopped before publishing, or lost its partitions); returns the facts sent."""
        if self.facts is None:
            return 0
        async with self._lock:
            await self._flush()
            return await self._retry("kafka", partial(self.facts.drain, sorted(self.cursors)))

    # Batches -----------------------------------------------------------------------------

    async def process(self, records: Sequence[Record], wait: bool = True) -> None:
        """Apply one batch; with wait, return once every record is stored or dead-lettered.

        Without wait, the batch's Redis call runs while the next batch is validated (the batch
        path's handler waits: it returns when applied). Exactness does not depend on Kafka
        commits (a restarted or re-assigned worker resumes from the offsets stored in Redis), so
        acknowledging a batch whose apply is still in flight would lose nothing. Call flush() to
        wait for it.
        """
        async with self._lock:
            try:
                by_partition = await self._group(records)
                prepared = await self._prepare_all(by_partition)
            except BaseException:
                # Nothing of this batch was applied, but its preparation may have moved cursors.
                self._forget({r.partition for r in records})
                await self._settle_after_error()
                raise
            if self._inflight is not None:
                inflight, self._inflight = self._inflight, None
                try:
                    settled = await self._settle(inflight)
                except BaseException:
                    # Prepared on top of a batch whose outcome is unknown: never applied.
                    self._forget(x.call.partition for x in prepared)
                    raise
                if not settled:
                    # A conflict was recovered from: what was prepared above chained on offsets
                    # that were not applied. Start again from what Redis holds.
                    await self._reload([p for p in by_partition if p in self.cursors])
                    await self._process_now(by_partition)
                    return
            if prepared:
                self._inflight = _InFlight(prepared, asyncio.ensure_future(self._apply(prepared)))
            if wait:
                await self._flush()

    async def flush(self) -> None:
        """Wait for the batch still being applied, if any."""
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            await self._settle(inflight)

    async def _group(self, records: Sequence[Record]) -> dict[int, list[Record]]:
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        new = [p for p in by_partition if p not in self.cursors]
        if new:
            await self.on_assigned(new)
        return by_partition

    async def _reload(self, partitions: Sequence[int]) -> None:
        for p in partitions:
            self.cursors[p] = await self._retry("redis", partial(self.store.load_cursor, p))

    async def _prepare_all(self, by_partition: dict[int, list[Record]]) -> list[Prepared]:
        """Prepare every partition's call and dead-letter the rejections (before any apply)."""
        prepared = [
            prep
            for p, recs in by_partition.items()
            if (prep := await self._prepare(p, recs)) is not None
        ]
        rejections = [rej for prep in prepared for rej in prep.rejections]
        if rejections:
            lost = await self._retry("kafka", partial(self.dlq.publish, rejections))
            for rej in rejections:
                self.metrics.dlq_messages_total.labels(rej.reason).inc()
            # Refused for good (too large, invalid topic, not authorised): counted with the batch
            # in Redis and by the worker, logged once; retrying would stop every partition.
            calls = {prep.call.partition: prep.call for prep in prepared}
            for item in lost:
                self.metrics.dlq_lost_total.labels(item.error).inc()
                totals = calls[item.rejection.partition].totals
                totals[FIELD_DLQ_LOST] = totals.get(FIELD_DLQ_LOST, 0) + 1
        return prepared

    async def _apply(self, prepared: list[Prepared]) -> list[ApplyResult]:
        # Runs as a background task while the next batch is prepared: it must not touch the
        # cursors (_settle does, under the lock, once the outcome is known).
        started = time.perf_counter()
        results = await self._retry("redis", partial(self.store.apply, [x.call for x in prepared]))
        self.metrics.batch_apply_seconds.observe(time.perf_counter() - started)
        if self.facts is not None:  # acknowledged before the batch counts as done (FactSink)
            await self._retry("kafka", partial(self.facts.publish_results, results))
        return results

    def _forget(self, partitions: Iterable[int]) -> None:
        """Drop the cursors of partitions with an unknown outcome; the next batch reloads them."""
        for p in partitions:
            self.cursors.pop(p, None)

    async def _settle_after_error(self) -> None:
        """Settle the batch in flight once another error stopped this one (that error surfaces)."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            try:
                await self._settle(inflight)
            except Exception:
                log.exception("the batch in flight failed as well")

    async def _settle(self, inflight: _InFlight) -> bool:
        """Account an applied batch; False when a conflict had to be recovered from."""
        try:
            results = await inflight.task
        except BaseException:
            # Unknown outcome (a non-transient Redis error; transient ones are retried).
            self._forget(x.call.partition for x in inflight.prepared)
            raise
        conflicts = self._account(inflight.prepared, results)
        if not conflicts:
            return True
        await self._reload([prep.call.partition for prep in inflight.prepared])
        await self._process_now(conflicts)
        return False

    def _account(
        self, prepared: list[Prepared], results: list[ApplyResult]
    ) -> dict[int, list[Record]]:
        """Metrics of the applied partitions; returns the records of the ones to redo."""
        conflicts: dict[int, list[Record]] = {}
        now = self.clock()
        for prep, result in zip(prepared, results, strict=True):
            p = prep.call.partition
            if result.status == STATUS_CONFLICT:
                # Another worker applied this partition meanwhile (rebalance): reload, redo.
                log.warning(
                    "partition %d: stored offset %d, expected %d; reloading and retrying",
                    p,
                    result.offset,
                    prep.call.expected_offset,
                )
                conflicts[p] = prep.records
                continue
            if result.status == STATUS_LIMIT:
                # Sessions at their cap: redo the batch knowing what they hold, so that exactly
                # the events past the cap are dead-lettered (before the apply, as all rejects).
                self._limits.setdefault(p, {}).update(result.limits)
                conflicts[p] = prep.records
                continue
            self._limits.pop(p, None)
            self.progress.moved()
            self.metrics.batches_total.inc()
            self.metrics.messages_total.inc(len(prep.records))
            for r in prep.records:
                if r.timestamp_ms is not None:
                    self.metrics.event_to_store_seconds.observe(
                        max(0.0, now - r.timestamp_ms / 1e3)
                    )
        return conflicts

    async def _process_now(self, by_partition: dict[int, list[Record]]) -> None:
        """Apply synchronously, retrying partitions that conflict (rebalances)."""
        pending = by_partition
        for _attempt in range(5):
            prepared = await self._prepare_all(pending)
            if not prepared:
                return
            try:
                results = await self._apply(prepared)
            except BaseException:
                self._forget(x.call.partition for x in prepared)
                raise
            conflicts = self._account(prepared, results)
            if not conflicts:
                return
            await self._reload(list(conflicts))
            pending = conflicts
        raise RuntimeError(
            f"partitions {sorted(pending)} kept conflicting; is another worker misconfigured?"
        )

    def stalled_for(self) -> float:
        """Seconds without an applied batch while an assigned partition has data to read.

        Data waits when the high-water mark of the fetched data is past the next offset to
        apply; a partition not assigned here has no high-water mark and never counts.
        """
        waiting = False
        if self.consumer is not None:
            for p, cursor in self.cursors.items():
                hw = self.consumer.highwater(p)
                if hw is not None and hw > cursor.offset + 1:
                    waiting = True
                    break
        return self.progress.stalled_for(waiting)

    async def watch_highwaters(self) -> list[int]:
        """Re-read the last applied record of partitions whose high-water mark fell.

        The mark of one log never falls. A broker that restarted with a new, empty log while
        the consumer kept its position (Tansu's in-memory engine) makes it fall; if the new log
        then grows past the applied offset R before anyone looks, the records before R would
        be skipped for good. So at the first fall the consumer goes back to R: the same record
        there means the same log (a Kafka leader change can lower the mark for a moment), a
        different one means a new log, which is re-read from its start. Returns the partitions
        sent back. Called every 0.25 s: cheap, it only reads the consumer's marks.
        """
        sent_back: list[int] = []
        if self.consumer is None:
            return sent_back
        async with self._lock:
            for p, cursor in list(self.cursors.items()):
                hw = self.consumer.highwater(p)
                if hw is None:
                    continue
                peak = self._hw_peak.get(p, hw)
                self._hw_peak[p] = max(peak, hw)
                if hw >= peak or cursor.offset < 0 or p in self._awaiting:
                    continue
                log.warning(
                    "partition %d: the high-water mark fell from %d to %d (a new log?); "
                    "re-reading offset %d to check that it is the record applied",
                    p,
                    peak,
                    hw,
                    cursor.offset,
                )
                self._hw_peak[p] = hw
                await self._send_back(p, cursor.offset)
                sent_back.append(p)
            await self._repeat_seeks()
        return sent_back

    async def _send_back(self, p: int, offset: int) -> None:
        """Seek p to offset; records before it are dropped until the consumer delivers it."""
        assert self.consumer is not None
        self._awaiting[p] = offset
        self._sent_at[p] = time.monotonic()
        await self.consumer.seek(p, offset)

    async def _repeat_seeks(self) -> None:
        """Seek again where an awaited offset has not come within a second.

        Faust drops a fetched record below its read offset. A seek resets that offset, but when
        it happens while Faust still hands out the rest of an earlier fetch (our agent seeks
        from inside a batch), those records move the read offset back past the seek target and
        everything the seek brings is dropped: the partition would wait forever. Seeking again
        once that fetch is drained ends it (seen after a broker restart under the worker).
        """
        assert self.consumer is not None
        now = time.monotonic()
        for p, offset in list(self._awaiting.items()):
            if self.consumer.highwater(p) is None:
                continue  # not fetched here (not assigned any more): nothing to drop
            if now - self._sent_at.get(p, 0.0) >= REPEAT_SEEK_SECONDS:
                log.info("partition %d: offset %d not delivered yet; seeking again", p, offset)
                await self._send_back(p, offset)

    async def check_partitions(self) -> None:
        """Find recreated topics while no record arrives.

        A broker that lost its log may answer a fetch beyond its end with nothing at all (Tansu
        does, rather than OFFSET_OUT_OF_RANGE), so waiting for records would wait forever; the
        high-water mark of the (empty) fetches tells.
        """
        async with self._lock:
            for p, cursor in list(self.cursors.items()):
                hw = self.consumer.highwater(p) if self.consumer else None
                if hw is None or cursor.offset < 0 or hw > cursor.offset:
                    self._suspects.discard(p)
                elif p not in self._suspects:
                    # A high-water mark can predate the assignment; believe it only if the
                    # next check (2 s later, after fresh fetches) still shows it.
                    self._suspects.add(p)
                else:
                    self._suspects.discard(p)
                    await self._check_same_topic(p, cursor, [])

    async def _prepare(self, p: int, records: list[Record]) -> Prepared | None:
        """Build one partition's Lua call; None when nothing in it is new."""
        if not await self._check_same_topic(p, self.cursors[p], records):
            return None
        cursor = self.cursors[p]  # replaced when the topic was found recreated
        waiting = self._awaiting.get(p)
        if waiting is not None:
            # After a seek, drop buffered records until the consumer delivers the seek target.
            records = [r for r in records if r.offset >= waiting]
            if not records or records[0].offset != waiting:
                return None
            del self._awaiting[p]
        fresh = [r for r in records if r.offset > cursor.offset]
        if not fresh:
            return None
        hw = self.consumer.highwater(p) if self.consumer else None
        now_ms = int(self.clock() * 1_000)
        return self.builder.build(p, cursor, fresh, now_ms, hw, self._limits.get(p, {}))

    async def _check_same_topic(
        self, p: int, cursor: PartitionCursor, records: list[Record]
    ) -> bool:
        """False (and the partition reset and re-read) when the topic was recreated."""
        if cursor.offset < 0:
            return True
        hw = self.consumer.highwater(p) if self.consumer else None
        reason = None
        if hw is not None and 0 <= hw <= cursor.offset:
            reason = f"the broker's high-water mark is {hw}"
        else:
            for r in records:
                if (
                    r.offset == cursor.offset
                    and cursor.fp
                    and fingerprint(r.key, r.value) != cursor.fp
                ):
                    reason = f"the record at offset {r.offset} differs from the one applied"
                    break
        if reason is None:
            return True
        log.error(
            "topic %s partition %d was recreated: Redis has applied up to offset %d but %s. "
            "Rule: counters keep what was counted; the partition restarts from the beginning of "
            "the new log and every new record is processed (event_id de-duplication still holds).",
            self.store.topic,
            p,
            cursor.offset,
            reason,
        )
        self.metrics.topic_resets_total.inc()
        await self._retry("redis", partial(self.store.reset_partition, p))
        self.cursors[p] = PartitionCursor(watermark_ms=None)
        self._hw_peak.pop(p, None)
        if self.consumer is not None:
            await self._send_back(p, await self.consumer.seek_to_earliest(p))
            return False
        return True
