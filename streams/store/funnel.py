"""The funnel store: the batch write (one Lua call per partition) and the reads of its state."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from streams.contract.funnel import PartitionCursor
from streams.settings import Settings
from streams.store import keys, session_keys

__all__ = [
    "APPLY_SCRIPT",
    "ApplyResult",
    "BatchCall",
    "BucketSums",
    "FunnelStore",
    "OutboxEntry",
    "PartitionMeta",
    "SessionLimit",
]

# The script as loaded: the grammar's header, the session library, then the script's own text.
_SCRIPTS = resources.files("streams.store")
APPLY_SCRIPT = (
    keys.lua_header()
    + session_keys.lua_table("SK", session_keys.SESSION_LUA)
    + _SCRIPTS.joinpath("bytes.lua").read_text()
    + _SCRIPTS.joinpath("sessions.lua").read_text()
    + _SCRIPTS.joinpath("apply_batch.lua").read_text()
)


@dataclass
class BatchCall:
    """The arguments of one apply_batch.lua call for one partition.

    The customer stage's call is the same (apply_customers.lua): events are its fact records
    and bucket_horizon_s the start before which its periods are deleted.
    """

    partition: int
    expected_offset: int
    new_offset: int
    new_fp: str
    watermark_ms: int
    highwater: int
    now_ms: int
    session_horizon_ms: int
    bucket_horizon_s: int
    anon_horizon_s: int = 0  # anonymous-order days older than this are deleted (epoch s)
    totals: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # keys.EventRecord slots, flattened


@dataclass(frozen=True)
class SessionLimit:
    """A session the script found at its cap: what it holds, which of the batch's ids it has."""

    held: int
    known: frozenset[str]


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox entry: its stream id and the (customer, fact JSON) pairs it holds."""

    partition: int
    entry_id: bytes
    facts: list[tuple[bytes, bytes]]


def _pairs(flat: Sequence[Any]) -> list[tuple[bytes, bytes]]:
    return [(_bytes(flat[j]), _bytes(flat[j + 1])) for j in range(0, len(flat) - 1, 2)]


@dataclass(frozen=True)
class ApplyResult:
    """The reply of one apply_batch.lua call (statuses: keys.STATUS_*)."""

    status: str
    offset: int  # the offset stored after the call
    accepted: int = 0
    duplicates: int = 0
    limits: dict[str, SessionLimit] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)

    @classmethod
    def from_reply(cls, reply: Sequence[Any], partition: int = -1) -> ApplyResult:
        status, offset, accepted, dups = (_text(reply[0]), *map(int, reply[1:4]))
        limits: dict[str, SessionLimit] = {}
        outbox: list[OutboxEntry] = []
        if status == keys.STATUS_LIMIT:
            for sid, held, known in json.loads(reply[4]):
                # cjson writes an empty list as {}.
                limits[sid] = SessionLimit(int(held), frozenset(known or ()))
        elif status == keys.STATUS_OK and len(reply) > 4:
            outbox = [OutboxEntry(partition, _bytes(i), _pairs(flat)) for i, flat in reply[4]]
        return cls(status, offset, accepted, dups, limits, outbox)


@dataclass(frozen=True)
class PartitionMeta:
    partition: int
    offset: int
    watermark_ms: int | None
    highwater: int
    applied_ms: int | None


@dataclass
class BucketSums:
    """Sums of bucket hash fields over partitions and buckets: field -> value."""

    fields: dict[str, int] = field(default_factory=dict)
    buckets: int = 0

    def add(self, values: Mapping[bytes, bytes]) -> None:
        self.buckets += 1
        for raw_key, raw_value in values.items():
            key = raw_key.decode()
            self.fields[key] = self.fields.get(key, 0) + int(raw_value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


class FunnelStore:
    """Keys of one topic's funnel state, hash-tagged by partition for Redis Cluster.

    The customer stage's store (streams/store/customers.py) is this one on the customer topic,
    with its own script: offsets, metas, totals and partitions are kept the same way.
    """

    SCRIPT = APPLY_SCRIPT

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.topic = settings.topic
        self.stages_arg = ",".join(settings.stages)
        self._sha: str | None = None

    def prefix(self, partition: int) -> str:
        return keys.partition_prefix(self.topic, partition)

    @property
    def partitions_key(self) -> str:
        return keys.partitions_key(self.topic)

    # Write side --------------------------------------------------------------------------

    async def register_partitions(self, partitions: Iterable[int]) -> None:
        parts = sorted(set(partitions))
        if parts:
            await self.client.sadd(self.partitions_key, *parts)

    async def load_cursor(self, partition: int) -> PartitionCursor:
        offset, fp, wm = await self.client.hmget(
            self.prefix(partition) + keys.META,
            keys.META_OFFSET,
            keys.META_FINGERPRINT,
            keys.META_WATERMARK,
        )
        return PartitionCursor(
            offset=_int(offset, -1),
            fp=_text(fp) if fp else "",
            watermark_ms=None if wm is None else int(wm),
        )

    async def reset_partition(self, partition: int) -> int:
        """Forget the applied offset of a recreated partition; counters stay. Returns resets."""
        meta = self.prefix(partition) + keys.META
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping={keys.META_OFFSET: -1, keys.META_FINGERPRINT: ""})
            pipe.hincrby(meta, keys.META_RESETS, 1)
            pipe.hincrby(self.prefix(partition) + keys.TOTALS, keys.FIELD_TOPIC_RESETS, 1)
            _, resets, _ = await pipe.execute()
        return int(resets)

    def _argv(self, call: BatchCall) -> list[Any]:
        argv: list[Any] = list(
            keys.BatchArgs(
                prefix=self.prefix(call.partition),
                expected_offset=call.expected_offset,
                new_offset=call.new_offset,
                new_fp=call.new_fp,
                watermark_ms=call.watermark_ms,
                highwater=call.highwater,
                now_ms=call.now_ms,
                bucket_ms=self.settings.bucket_seconds * 1_000,
                session_horizon_ms=call.session_horizon_ms,
                bucket_horizon_s=call.bucket_horizon_s,
                stages=self.stages_arg,
                session_cap=self.settings.max_events_per_session,
                customer_facts=1 if self.settings.customer_facts else 0,
                anon_horizon_s=call.anon_horizon_s,
                session_timeout_ms=self.settings.session_timeout_seconds * 1_000,
                recovery_ms=self.settings.recovery_window_seconds * 1_000,
                session_figures=1 if self.settings.session_figures else 0,
                n_totals=len(call.totals),
            )
        )
        for name, increment in call.totals.items():
            argv.append(name)
            argv.append(increment)
        # One JSON argument for all events: packing 11 arguments per event in redis-py costs
        # ~30 us/event of worker CPU; orjson writes the flat list (compact UTF-8, the same text
        # as json.dumps(separators=(",", ":"), ensure_ascii=False)) in 0.14 us/event, 3.9 for
        # json.dumps (docs/benchmarks.md). The strings come from validated JSON: no lone
        # surrogates, which orjson would refuse.
        argv.append(orjson.dumps(call.events))
        return argv

    async def apply(self, calls: Sequence[BatchCall]) -> list[ApplyResult]:
        """One round trip: every partition's call in one pipeline. Returns their results."""
        if self._sha is None:
            self._sha = await self.client.script_load(self.SCRIPT)
        argvs = [self._argv(c) for c in calls]
        try:
            results = await self._run(argvs)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): load the script again, once.
            self._sha = await self.client.script_load(self.SCRIPT)
            results = await self._run(argvs)
        return [
            ApplyResult.from_reply(reply, call.partition)
            for reply, call in zip(results, calls, strict=True)
        ]

    async def _run(self, argvs: list[list[Any]]) -> list[Any]:
        assert self._sha is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for argv in argvs:
                pipe.evalsha(self._sha, 0, *argv)
            return list(await pipe.execute())

    async def read_outbox(self, partition: int, count: int = 100) -> list[OutboxEntry]:
        """The oldest outbox entries of a partition (facts appended, not yet published)."""
        rows: Any = await self.client.xrange(self.prefix(partition) + keys.OUTBOX, count=count)
        # Fields are positions, values the facts; a fact's customer is its second slot.
        out = []
        for entry_id, values in rows or ():
            facts = sorted(values.items(), key=lambda kv: int(kv[0]))
            pairs = [(json.loads(fact)[1].encode(), _bytes(fact)) for _, fact in facts]
            out.append(OutboxEntry(partition, _bytes(entry_id), pairs))
        return out

    async def delete_outbox(self, partition: int, entry_ids: Sequence[bytes]) -> None:
        """Delete published entries by id. Not XTRIM MINID: an older entry may be unpublished
        yet (its worker died after the apply) while a newer one was published."""
        if entry_ids:
            await self.client.xdel(self.prefix(partition) + keys.OUTBOX, *entry_ids)

    async def anonymous_orders(
        self, partitions: Sequence[int], days: Sequence[int]
    ) -> dict[int, int]:
        """Anonymous orders per hour start (epoch s) in the given days, summed over partitions."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                for day in days:
                    pipe.hgetall(keys.anon_key(self.prefix(p), day))
            rows = await pipe.execute()
        out: dict[int, int] = {}
        for row in rows:
            for hour, n in row.items():
                out[int(hour)] = out.get(int(hour), 0) + int(n)
        return out

    # Read side ---------------------------------------------------------------------------

    async def partitions(self) -> list[int]:
        return sorted(int(p) for p in await self.client.smembers(self.partitions_key))

    async def totals(self, partitions: Sequence[int]) -> dict[str, int]:
        """The cumulative counters, summed over partitions (the funnel's and the ended
        sessions', session_keys.ENDED_TOTALS)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.hgetall(self.prefix(p) + keys.TOTALS)
                pipe.hgetall(self.prefix(p) + session_keys.ENDED_TOTALS)
            rows = await pipe.execute()
        sums = BucketSums()
        for row in rows:
            sums.add(row)
        return sums.fields

    async def metas(self, partitions: Sequence[int]) -> list[PartitionMeta]:
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.hmget(
                    self.prefix(p) + keys.META,
                    keys.META_OFFSET,
                    keys.META_WATERMARK,
                    keys.META_HIGHWATER,
                    keys.META_APPLIED_MS,
                )
            rows = await pipe.execute()
        return [
            PartitionMeta(
                partition=p,
                offset=_int(offset, -1),
                watermark_ms=None if wm is None else int(wm),
                highwater=_int(hw, -1),
                applied_ms=None if applied is None else int(applied),
            )
            for p, (offset, wm, hw, applied) in zip(partitions, rows, strict=True)
        ]

    async def _bucket_hashes(
        self, from_s: int, to_s: int, partitions: Sequence[int] | None
    ) -> list[tuple[int, Mapping[bytes, bytes]]]:
        """(bucket start, hash) of every bucket b with from_s <= b < to_s on every partition:
        the funnel's hash and the ended sessions' (session_keys.ENDED_BUCKET_PREFIX), each
        summed by the callers."""
        parts = await self.partitions() if partitions is None else partitions
        async with self.client.pipeline(transaction=False) as pipe:
            for p in parts:
                pipe.zrangebyscore(self.prefix(p) + keys.BUCKETS, from_s, f"({to_s}")
            bucket_lists = await pipe.execute()
        starts: list[int] = []
        async with self.client.pipeline(transaction=False) as pipe:
            for p, buckets in zip(parts, bucket_lists, strict=True):
                for b in buckets:
                    starts += [int(_text(b))] * 2
                    pipe.hgetall(keys.bucket_key(self.prefix(p), _text(b)))
                    pipe.hgetall(self.prefix(p) + session_keys.ENDED_BUCKET_PREFIX + _text(b))
            replies = await pipe.execute()
        return list(zip(starts, replies, strict=True))

    async def bucket_sums(
        self, from_s: int, to_s: int, partitions: Sequence[int] | None = None
    ) -> BucketSums:
        """Sum of every bucket b with from_s <= b < to_s over all partitions (two round trips)."""
        sums = BucketSums()
        for _, row in await self._bucket_hashes(from_s, to_s, partitions):
            sums.add(row)
        return sums

    async def bucket_rows(
        self, from_s: int, to_s: int, partitions: Sequence[int] | None = None
    ) -> dict[int, dict[str, int]]:
        """Each bucket b with from_s <= b < to_s, summed over the partitions: start -> fields
        (two round trips, like bucket_sums; the board's history over the exporter's buckets)."""
        rows: dict[int, dict[str, int]] = {}
        for start, reply in await self._bucket_hashes(from_s, to_s, partitions):
            row = rows.setdefault(start, {})
            for raw_key, raw_value in reply.items():
                key = raw_key.decode()
                row[key] = row.get(key, 0) + int(raw_value)
        return rows
