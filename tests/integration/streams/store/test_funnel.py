"""The batch processor and its Lua script on a real redis-server, checked against the reference."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore
from streams.worker import metrics
from streams.worker.deadletters import LostDeadLetter, Rejection
from streams.worker.processor import BatchProcessor, Record
from tests.reference import dumps, event, expected_state, session_key

NOW_MS = 1_795_000_000_000  # 2026-11-19T10:26:40Z; the processor's clock is pinned to it
T0 = NOW_MS - 1_800_000


class CollectingDLQ:
    def __init__(self) -> None:
        self.rejections: list[Rejection] = []

    async def publish(self, rejections: Sequence[Rejection]) -> list[LostDeadLetter]:
        self.rejections.extend(rejections)
        return []


def make_processor(
    client: redis.asyncio.Redis, s: Settings, dlq: CollectingDLQ | None = None
) -> BatchProcessor:
    return BatchProcessor(
        s,
        FunnelStore(client, s),
        dlq or CollectingDLQ(),
        metrics.create(CollectorRegistry()),
        clock=lambda: NOW_MS / 1000,
    )


def records(values: Sequence[bytes], partition: int = 0, start: int = 0) -> list[Record]:
    return [Record(partition, start + i, session_key(v), v) for i, v in enumerate(values)]


async def stored(client: redis.asyncio.Redis, s: Settings) -> tuple[Counter[str], Counter[str]]:
    store = FunnelStore(client, s)
    parts = await store.partitions()
    sums = await store.bucket_sums(0, 10**11, parts)
    totals = await store.totals(parts)
    return +Counter(sums.fields), +Counter(totals)


def session_events(sid: str, stage: int, base: int, gaps: list[int]) -> list[dict[str, object]]:
    kinds = ["visit", "add_to_cart", "checkout_step", "checkout_step", "checkout_step", "purchase"]
    steps = [None, None, "shipping", "payment", "review", None]
    out = []
    for k in range(stage + 1):
        extra = {"step": steps[k]} if steps[k] else {}
        ts = base + sum(gaps[: k + 1])
        out.append(
            event(kinds[k], f"{sid}-e{k}", sid, ts, channel="organic", device="mobile", **extra)
        )
    return out


@st.composite
def traces(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """Two deliveries of the same sessions: one in order, one shuffled with duplicates."""
    n = draw(st.integers(1, 6))
    events: list[dict[str, object]] = []
    for i in range(n):
        stage = draw(st.integers(0, 5))
        base = T0 + draw(st.integers(0, 600_000))
        # Gaps up to 3 minutes: stages land in different 60 s buckets, often.
        gaps = draw(st.lists(st.integers(0, 180_000), min_size=6, max_size=6))
        events += session_events(f"s{i}", stage, base, gaps)
    ordered = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
    shuffled = draw(st.permutations(events))
    dups = draw(st.lists(st.sampled_from(events), max_size=5))
    mixed = list(shuffled)
    for d in dups:
        mixed.insert(draw(st.integers(0, len(mixed))), d)
    return [dumps(e) for e in ordered], [dumps(e) for e in mixed]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(trace=traces())
def test_any_arrival_order_and_duplicates_give_the_same_buckets(
    trace: tuple[list[bytes], list[bytes]], make_settings
) -> None:
    ordered, mixed = trace
    s = make_settings(partitions=1)

    async def run(values: list[bytes], batch: int) -> tuple[Counter[str], Counter[str]]:
        client = connect(s)
        try:
            await client.flushdb()
            proc = make_processor(client, s)
            recs = records(values)
            for i in range(0, len(recs), batch):
                await proc.process(recs[i : i + batch])
            return await stored(client, s)
        finally:
            await client.aclose()

    fields_a, _ = asyncio.run(run(ordered, 1000))
    fields_b, totals_b = asyncio.run(run(mixed, 3))
    assert fields_a == fields_b
    expected = expected_state([(0, v) for v in mixed], NOW_MS)
    assert fields_b == +expected.fields
    assert totals_b == +expected.totals
    assert totals_b["dup"] == len(mixed) - len(ordered)


async def test_bad_lines_are_rejected_with_reasons_and_counted(make_settings) -> None:
    s = make_settings(partitions=1)
    good = [
        event("visit", "a1", "a", T0),
        event("add_to_cart", "a2", "a", T0 + 1_000),
        event("purchase", "a3", "a", T0 + 2_000, revenue=12.5),
    ]
    values = [dumps(e) for e in good]
    values += [
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        b'{"type": "visit"}',
        dumps(event("visit", "n1", "n", "2026-11-19T10:00:00")),  # no zone
        dumps(event("purchase", "n2", "n", T0, revenue="-1")),
        dumps(event("visit", "f1", "f", NOW_MS + 301_000)),  # beyond the 5 min skew
        dumps(event("visit", "w1", "w", NOW_MS)),  # moves the watermark to now
        dumps(event("visit", "l1", "l", NOW_MS - 3_600_001)),  # older than watermark - 1 h
        dumps(good[0]),  # duplicate
    ]
    dlq = CollectingDLQ()
    client = connect(s)
    try:
        proc = make_processor(client, s, dlq)
        await proc.process(records(values))
        fields, totals = await stored(client, s)
    finally:
        await client.aclose()
    expected = expected_state([(0, v) for v in values], NOW_MS)
    assert fields == +expected.fields
    assert totals == +expected.totals
    assert [r.reason for r in dlq.rejections] == [
        "malformed",
        "malformed",
        "schema",
        "schema",
        "schema",
        "future",
        "late",
    ]
    assert [r.offset for r in dlq.rejections] == [3, 4, 5, 6, 7, 8, 10]
    assert dlq.rejections[0].payload == b"\xff\xfe not utf-8"
    assert "revenue" in dlq.rejections[4].detail
    accepted = sum(v for k, v in totals.items() if k.startswith("ev|"))
    rejected = sum(v for k, v in totals.items() if k.startswith("rej|"))
    assert accepted + rejected + totals["dup"] == len(values)
    assert totals["r|EUR"] == 125_000


async def test_redelivered_offsets_change_nothing(make_settings) -> None:
    s = make_settings(partitions=1)
    values = [dumps(e) for e in session_events("s", 5, T0, [0, 1000, 1000, 1000, 1000, 1000])]
    client = connect(s)
    try:
        proc = make_processor(client, s)
        await proc.process(records(values))
        first = await stored(client, s)
        # A crash before the Kafka commit: the same records come again, to a fresh worker too.
        await proc.process(records(values))
        await make_processor(client, s).process(records(values))
        assert await stored(client, s) == first
        assert first[1]["ev|visit"] == 1
        assert first[1]["dup"] == 0
    finally:
        await client.aclose()


async def test_stale_worker_conflict_is_detected_and_not_double_counted(make_settings) -> None:
    s = make_settings(partitions=1)
    values = [dumps(event("visit", f"e{i}", f"s{i}", T0 + i)) for i in range(10)]
    client = connect(s)
    try:
        stale, owner = make_processor(client, s), make_processor(client, s)
        await stale.process(records(values[:3]))
        await owner.process(records(values[:3]))  # loads the stored offset: skips
        await owner.process(records(values[3:], start=3))  # applies 3..9
        # The stale worker still believes offset 2 is the last applied one.
        await stale.process(records(values[3:6], start=3))
        _, totals = await stored(client, s)
        assert totals["ev|visit"] == 10
        assert stale.cursors[0].offset == 9
    finally:
        await client.aclose()


@asynccontextmanager
async def out_of_memory(client: redis.asyncio.Redis) -> AsyncIterator[None]:
    """Redis refusing every write (no memory left, default noeviction policy): a non-transient
    error, unlike a lost connection, which the worker retries."""
    await client.config_set("maxmemory", "1")
    try:
        yield
    finally:
        await client.config_set("maxmemory", "0")


async def test_a_redis_error_under_a_pipelined_batch_surfaces_and_a_redelivery_is_exact(
    make_settings, caplog
) -> None:
    s = make_settings(partitions=3)
    vals = [
        [dumps(event("visit", f"p{p}e{i}", f"p{p}s{i}", T0 + i)) for i in range(6)]
        for p in range(3)
    ]
    batch_a = records(vals[0][:2], 0) + records(vals[1][:2], 1)
    batch_b = records(vals[0][2:4], 0, 2) + records(vals[1][2:4], 1, 2)
    client = connect(s)
    try:
        proc = make_processor(client, s)
        await proc.process(batch_a)
        async with out_of_memory(client):
            await proc.process(batch_b, wait=False)
            await asyncio.sleep(0.2)  # B's apply fails in the background meanwhile
            # C is prepared on top of B (partition 0's cursor is B's); B's error surfaces.
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                await proc.process(records(vals[0][4:], 0, 4), wait=False)
            # B's and C's partitions have an unknown outcome: reloaded when next seen.
            assert not set(proc.cursors) & {0, 1}
            await proc.flush()  # nothing left in flight
        await proc.process(batch_a)  # redelivered: the cursors come back from Redis
        assert set(proc.cursors) == {0, 1}
        async with out_of_memory(client):
            await proc.process(batch_b, wait=False)
            await asyncio.sleep(0.2)
            # Now C fails in its own preparation (registering the new partition 2 is a write):
            # C's error surfaces, B's is collected and logged, not left behind.
            batch_c = records(vals[0][4:], 0, 4) + records(vals[2][:3], 2)
            with (
                caplog.at_level(logging.ERROR, logger="storepulse.worker"),
                pytest.raises(redis.exceptions.OutOfMemoryError),
            ):
                await proc.process(batch_c, wait=False)
            assert "the batch in flight failed as well" in caplog.text
            assert not set(proc.cursors) & {0, 1, 2}
        # Faust redelivers from the last commit; a partition may come back from further back.
        redelivered = records(vals[0], 0) + records(vals[1][:4], 1) + records(vals[2][:3], 2)
        await proc.process(redelivered)
        fields, totals = await stored(client, s)
    finally:
        await client.aclose()
    expected = expected_state([(r.partition, r.value) for r in redelivered], NOW_MS)
    assert fields == +expected.fields
    assert totals == +expected.totals
    assert totals["ev|visit"] == 13


async def test_an_earlier_event_moves_the_count_to_its_bucket(make_settings) -> None:
    s = make_settings(partitions=1)
    later = dumps(event("add_to_cart", "c", "s", T0 + 180_000))
    earlier = dumps(event("visit", "v", "s", T0))
    client = connect(s)
    try:
        proc = make_processor(client, s)
        await proc.process(records([later]))
        b_late = (T0 + 180_000) // 60_000 * 60
        b_early = T0 // 60_000 * 60
        store = FunnelStore(client, s)
        sums = await store.bucket_sums(b_late, b_late + 60, [0])
        assert sums.fields["s|visit|unknown|unknown"] == 1
        await proc.process(records([earlier], start=1))
        moved = await store.bucket_sums(b_late, b_late + 60, [0])
        assert moved.fields["s|visit|unknown|unknown"] == 0
        assert moved.fields["s|cart|unknown|unknown"] == 1
        now_early = await store.bucket_sums(b_early, b_early + 60, [0])
        assert now_early.fields["s|visit|unknown|unknown"] == 1
        _, totals = await stored(client, s)
        assert totals["f|visit|unknown|unknown"] == 1  # the session counted once in the total
    finally:
        await client.aclose()


async def test_session_state_is_evicted_by_event_time(make_settings) -> None:
    s = make_settings(partitions=1, allowed_lateness_seconds=60, session_timeout_seconds=60)
    client = connect(s)
    try:
        proc = make_processor(client, s)
        old = [dumps(event("visit", f"o{i}", f"old{i}", T0)) for i in range(50)]
        await proc.process(records(old))
        prefix = FunnelStore(client, s).prefix(0)
        assert len(await client.keys(prefix + "s:*")) == 50
        # The watermark moves 3 minutes on: older sessions are past lateness + timeout (2 min).
        await proc.process(records([dumps(event("visit", "n", "new", T0 + 180_000))], start=50))
        keys = await client.keys(prefix + "s:*")
        assert [k.decode() for k in keys] == [prefix + "s:new"]
        # The counted buckets stay; only per-session state went.
        fields, _ = await stored(client, s)
        assert fields["s|visit|unknown|unknown"] == 51
    finally:
        await client.aclose()


async def test_recreated_topic_is_detected_by_fingerprint(make_settings, caplog) -> None:
    s = make_settings(partitions=1)
    client = connect(s)
    try:
        proc = make_processor(client, s)
        await proc.process(records([dumps(event("visit", f"a{i}", f"a{i}", T0)) for i in range(5)]))
        # A new log: offset 4 holds another record; everything of the new log must count.
        fresh = make_processor(client, s)
        new_values = [dumps(event("visit", f"b{i}", f"b{i}", T0)) for i in range(6)]
        with caplog.at_level("ERROR", logger="storepulse.worker"):
            await fresh.process(records(new_values))
        assert "was recreated" in caplog.text
        _, totals = await stored(client, s)
        assert totals["ev|visit"] == 11
        assert totals["topic_resets"] == 1
    finally:
        await client.aclose()


def test_dlq_payload_keeps_bytes(make_settings) -> None:
    from streams.worker.deadletters import dlq_payload

    rej = Rejection("malformed", "not a JSON object", 2, 41, b"\x80abc", b"s1")
    body = json.loads(dlq_payload(rej, "t", "w", 5, 16_384))
    assert body["payload_base64"] == "gGFiYw=="
    assert body["key"] == "s1"
    assert (body["partition"], body["offset"], body["reason"]) == (2, 41, "malformed")


@pytest.fixture(autouse=True)
def _flush(redis_url: str) -> None:
    """Each test starts from an empty database (redis_url flushes)."""
