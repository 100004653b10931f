"""The batch path: Faust's consumer handing each fetched batch of a partition to one handler.

Faust delivers a message at a time: a ConsumerMessage, a task pair per message in the fetcher
(`wait_first`), the conductor, the stream's queue, an event and an ack with a lock, ~160 µs of
the ~185 µs per event its trivial agent costs on the reference machine (docs/benchmarks.md).
Here the fetcher's loop (`Consumer._drain_messages`, the one seam between Faust's fetch and
its per-message delivery) hands the records one fetch returned to a handler, by partition,
`await handler({tp: records, ...})`, and acknowledges them together once it returns.

What stays Faust's: the consumer group (join, heartbeats, assignment, rebalances and their
revoke/assign callbacks), the fetch itself (`_wait_next_records`: flow control, paused and
active partitions), read offsets (records below one are dropped; a seek resets it), offset
commits (acked offsets, gaps, `broker_commit_interval` and `broker_commit_every`), waiting for
the work in hand before a rebalance or a stop (`wait_empty`), timers, the livelock detector
(fed by the Monitor's inbound times), rebalance and commit sensors. What it does not do on this
path: per-message sensor calls (`on_message_in/out`, `on_stream_event_in/out`); sensors that
implement BatchSensor get one call per batch instead. Topics without a handler still go through
Faust's per-message delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import faust
from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.futures import notify

from streams.worker.batch import Record

__all__ = ["BatchConsumer", "BatchHandler", "BatchSensor", "BatchTransport", "consume_batches"]

log = logging.getLogger("storepulse.worker")

# A batch whose handler raised is fetched again after this long (not in a hot loop).
RETRY_SECONDS = 1.0

# Applies the records one fetch brought, by partition (each in offset order), and returns once
# they are applied: one call per fetch, so that the processor applies every partition of it in
# one pipelined Redis round trip.
BatchHandler = Callable[[Mapping[TP, Sequence[Record]]], Awaitable[None]]


@runtime_checkable
class BatchSensor(Protocol):
    """A Faust sensor that also wants the batch path's batches (one call each, not per record)."""

    def on_batch_in(self, tp: TP, records: Sequence[Record]) -> None: ...

    def on_batch_out(self, tp: TP, records: Sequence[Record]) -> None: ...


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering the topics with a handler batch by batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Partition -> seeks so far: a seek during a handler (the processor sends a partition
        # back to check its log) must not be overwritten by the batch's read offset.
        self._seeks: dict[TP, int] = {}
        # Set while no handler runs: a rebalance or a stop waits for the batch in hand.
        self._idle = asyncio.Event()
        self._idle.set()

    async def seek(self, partition: TP, offset: int) -> None:
        self._seeks[partition] = self._seeks.get(partition, 0) + 1
        await super().seek(partition, offset)

    async def _seek(self, partition: TP, offset: int) -> None:
        # Faust calls aiokafka's seek() from the app's thread, and seek() deletes the
        # partition's prefetched records while the consumer thread may be iterating them in
        # fetched_records(): KeyError, and the worker died in the second-worker drill (CI,
        # stop 18). On the consumer thread the two never interleave.
        thread = self._thread

        async def seek_there() -> None:
            thread.seek(partition, offset)

        await thread.call_thread(seek_there)

    async def wait_empty(self) -> None:
        """Wait for the batch being applied, then for Faust's own unacknowledged messages."""
        await self._idle.wait()
        await super().wait_empty()

    def _routes(self) -> Mapping[str, BatchHandler]:
        transport = self.transport
        return transport.batch_routes if isinstance(transport, BatchTransport) else {}

    async def _drain_messages(self, fetcher: Any) -> None:
        routes = self._routes()
        if not routes:
            await super()._drain_messages(fetcher)
            return
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # as Faust does: a fetch loop never starves the timers
                if records and not self.should_stop:
                    if self.flow_active:
                        await self._deliver(records, active, routes)
                    else:
                        await self._seek_back()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            log.info("the broker stopped the consumer; shutting down")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _seek_back(self) -> None:
        # Fetched while a rebalance stopped the flow: Faust's getmany seeks back to the committed
        # offsets (and the worker's consumer then to Redis's), so that nothing fetched is skipped.
        try:
            await self.perform_seek()
        except Exception as exc:
            log.warning("seek after a fetch during a rebalance failed: %r", exc)

    async def _deliver(
        self, records: Mapping[TP, list[Any]], active: set[TP] | None, routes: Any
    ) -> None:
        generation = self.app.consumer_generation_id
        batches: dict[BatchHandler, dict[TP, list[Record]]] = {}
        for tp, fetched in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break  # a rebalance began: the new assignment seeks where to resume
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            handler = routes.get(tp.topic)
            if handler is None:
                await self._deliver_each(tp, fetched)
            elif batch := await self._batch(tp, fetched):
                batches.setdefault(handler, {})[tp] = batch
        for handler, by_partition in batches.items():
            await self._deliver_batches(handler, by_partition, generation)

    async def _batch(self, tp: TP, fetched: list[Any]) -> list[Record]:
        """One partition's fetched records as Records, those below the read offset dropped."""
        read = self._read_offset[tp]
        if read is not None and fetched[0].offset < read:
            # Below the read offset: the rest of a fetch from before a seek; Faust drops them.
            fetched = [r for r in fetched if r.offset >= read]
            if not fetched:
                return []
        p = tp.partition
        # Kafka's "no timestamp" is -1 (and None in aiokafka for old message formats).
        batch = [
            Record(p, r.offset, r.key, r.value, r.timestamp if (r.timestamp or 0) > 0 else None)
            for r in fetched
        ]
        if self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gaps(tp, read, batch)
        return batch

    async def _deliver_batches(
        self, handler: BatchHandler, batches: dict[TP, list[Record]], generation: int
    ) -> None:
        sensors = [s for s in self.app.sensors if isinstance(s, BatchSensor)]
        for tp, batch in batches.items():
            self._track(tp, batch)
            for sensor in sensors:
                sensor.on_batch_in(tp, batch)
        seeks = {tp: self._seeks.get(tp, 0) for tp in batches}
        self._idle.clear()
        try:
            await handler(batches)
        except Exception:
            # Not acknowledged, and read again: aiokafka's position is already past the
            # batches, so going on would leave a hole in what the handler applied.
            log.exception(
                "the batches of %s failed; reading them again in %.0f s",
                ", ".join(f"{tp.topic}/{tp.partition}@{b[0].offset}" for tp, b in batches.items()),
                RETRY_SECONDS,
            )
            await self.sleep(RETRY_SECONDS)
            for tp, batch in batches.items():
                try:
                    await self.seek(tp, batch[0].offset)
                except Exception as exc:  # revoked meanwhile: its new owner resumes it
                    log.warning("%s: no seek back (%r)", tp, exc)
            return
        finally:
            self._idle.set()
        for tp, batch in batches.items():
            for sensor in sensors:
                sensor.on_batch_out(tp, batch)
        if self.app.consumer_generation_id != generation:
            return  # revoked meanwhile: its offsets are no longer ours to commit
        for tp, batch in batches.items():
            if self._seeks.get(tp, 0) == seeks[tp]:
                self._read_offset[tp] = batch[-1].offset
            if self.app.topics.acks_enabled_for(tp.topic):
                await self._ack_batch(tp, batch)

    async def _add_gaps(self, tp: TP, read: int | None, batch: list[Record]) -> None:
        """Offsets missing before or inside the batch (compaction, transaction markers).

        Faust counts them as done so that commits can pass them, as its own loop does.
        """
        previous = read
        if batch[-1].offset - batch[0].offset == len(batch) - 1:
            if previous and batch[0].offset - previous > 1:
                await self._add_gap(tp, previous + 1, batch[0].offset - 1)
            return
        for record in batch:
            if previous and record.offset - previous > 1:
                await self._add_gap(tp, previous + 1, record.offset - 1)
            previous = record.offset

    async def _ack_batch(self, tp: TP, batch: list[Record]) -> None:
        """What Faust's ack() does per message, once for the batch: the offsets become
        committable (the commit timer commits them, as for any acknowledged message)."""
        committed = self._committed_offset[tp]
        index = self._acked_index[tp]
        offsets = [
            r.offset
            for r in batch
            if (committed is None or r.offset >= committed) and r.offset not in index
        ]
        index.update(offsets)
        self._acked[tp].extend(offsets)
        self._n_acked += len(offsets)
        notify(self._waiting_for_ack)
        every = self._commit_every
        if every is not None and self._n_acked >= every:
            self._n_acked = 0
            await self.commit()

    def _track(self, tp: TP, batch: list[Record]) -> None:
        """The Monitor's figures per batch: end offsets, read offsets, counts, inbound time.

        The inbound time is what Faust's livelock detector reads ("stream idle" warnings).
        """
        monitor = self.app.monitor
        monitor.track_tp_end_offset(tp, self.highwater(tp))
        if isinstance(monitor, Monitor):
            n = len(batch)
            monitor.messages_received_total += n
            monitor.messages_received_by_topic[tp.topic] += n
            monitor.events_total += n
            monitor.tp_read_offsets[tp] = batch[-1].offset
            monitor.stream_inbound_time[tp] = time.monotonic()

    async def _deliver_each(self, tp: TP, fetched: list[Any]) -> None:
        """A topic without a handler: Faust's per-message delivery, read offsets included."""
        for record in fetched:
            read = self._read_offset[tp]
            if read is not None and record.offset < read:
                continue
            if read and record.offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, read + 1, record.offset - 1)
            message = self._to_message(tp, record)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = record.offset


class BatchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the batch consumer and its topic -> handler routes."""

    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_routes: dict[str, BatchHandler] = {}


def consume_batches(app: faust.App, topic: Any, handler: BatchHandler) -> None:
    """Subscribe app to topic, its fetched records going to handler one fetch at a time.

    The app's transport must be a BatchTransport (its `_new_transport` returns one). handler
    gets {partition: records} with each partition's records in offset order, at most
    `broker_max_poll_records` in all per fetch; they are acknowledged (committable) once it
    returns, so it returns when they are applied. When it raises, nothing of the call is
    acknowledged and each partition is sought back to its batch's first offset: the batches
    come again (at least once), never a hole.
    """
    transport = app.transport
    if not isinstance(transport, BatchTransport):
        raise TypeError(f"{type(app).__name__}'s transport is not a BatchTransport")
    for name in topic.topics:
        transport.batch_routes[name] = handler
    app.topics.add(topic)
