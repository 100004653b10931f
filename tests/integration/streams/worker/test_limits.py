"""The contract's keys and caps on a real redis-server: key = session_id, a session's size bound."""

from __future__ import annotations

import asyncio
from collections import Counter

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.settings import Settings
from streams.store import keys
from streams.store.client import connect
from streams.worker.batch import Record
from tests.integration.streams.store.test_funnel import (
    NOW_MS,
    T0,
    CollectingDLQ,
    make_processor,
    records,
    stored,
)
from tests.reference import dumps, event, expected_state

CAP = 10


async def _run(
    s: Settings, messages: list[tuple[bytes | None, bytes]], batch: int
) -> tuple[Counter[str], Counter[str], CollectingDLQ]:
    client: redis.asyncio.Redis = connect(s)
    try:
        await client.flushdb()
        dlq = CollectingDLQ()
        proc = make_processor(client, s, dlq)
        recs = [Record(0, i, key, value) for i, (key, value) in enumerate(messages)]
        for i in range(0, len(recs), batch):
            await proc.process(recs[i : i + batch])
        fields, totals = await stored(client, s)
        return fields, totals, dlq
    finally:
        await client.aclose()


async def test_a_message_whose_key_is_not_its_session_id_is_dead_lettered(make_settings) -> None:
    s = make_settings(partitions=1)
    visit = dumps(event("visit", "e1", "s-1", T0))
    messages: list[tuple[bytes | None, bytes]] = [
        (b"s-1", visit),
        (None, dumps(event("visit", "e2", "s-1", T0))),  # keyless: spread over partitions
        (b"s-2", dumps(event("visit", "e3", "s-1", T0))),  # another session's key
        (None, b"{not json"),  # not an event: malformed whatever the key
        (b"x", dumps(event("visit", "e4", "s-9", "2026-01-01T00:00:00"))),  # schema first
        (b" s-1", visit),  # keys are compared byte for byte
    ]
    _, totals, dlq = await _run(s, messages, 100)
    assert [r.reason for r in dlq.rejections] == ["key", "key", "malformed", "schema", "key"]
    assert "has no key" in dlq.rejections[0].detail
    assert "'s-2'" in dlq.rejections[1].detail and "'s-1'" in dlq.rejections[1].detail
    assert totals["ev|visit"] == 1 and totals["rej|key"] == 3
    expected = expected_state([(0, k, v) for k, v in messages], NOW_MS)
    assert totals == +expected.totals


def test_the_cap_rejects_exactly_the_events_past_it_whatever_the_batches(make_settings) -> None:
    s = make_settings(partitions=1, max_events_per_session=CAP)
    events = [event("visit", f"e{i:02d}", "big", T0 + i) for i in range(CAP + 5)]
    events.append(event("visit", "e00", "big", T0))  # a re-send of a held event: a duplicate
    events.append(event("visit", "o1", "small", T0))  # another session is not affected
    messages: list[tuple[bytes | None, bytes]] = [
        (e["session_id"].encode(), dumps(e)) for e in events
    ]
    outcomes = [asyncio.run(_run(s, messages, batch)) for batch in (1, 4, 100)]
    for fields, totals, dlq in outcomes:
        assert totals["ev|visit"] == CAP + 1  # the big session's first 10 and the small one
        assert totals["rej|session_limit"] == 5 and totals["dup"] == 1
        assert [r.offset for r in dlq.rejections] == list(range(CAP, CAP + 5))
        assert {r.reason for r in dlq.rejections} == {"session_limit"}
        assert "holds 10 events" in dlq.rejections[0].detail
        assert fields == outcomes[0][0]
    client = redis.Redis.from_url(s.redis_url)
    try:
        session = keys.partition_prefix(s.topic, 0) + keys.SESSION_PREFIX + "big"
        assert int(client.hget(session, keys.SESSION_COUNT) or 0) == CAP
        assert client.hlen(session) < CAP + 10  # ids past the cap are not stored
    finally:
        client.close()


@st.composite
def capped_traces(draw: st.DrawFn) -> list[bytes]:
    """Sessions near and past the cap, shuffled, with re-sent duplicates."""
    events: list[dict[str, object]] = []
    for n in range(draw(st.integers(1, 3))):
        size = draw(st.integers(CAP - 2, CAP + 6))
        stages = ["visit", "add_to_cart", "purchase"]
        for i in range(size):
            kind = stages[min(i, 2)] if i < 3 else "visit"
            extra = {"order_id": f"o-{n}"} if kind == "purchase" else {}
            events.append(event(kind, f"s{n}-e{i}", f"s{n}", T0 + 1_000 * i, **extra))
    mixed = list(draw(st.permutations(events)))
    for dup in draw(st.lists(st.sampled_from(events), max_size=6)):
        mixed.insert(draw(st.integers(0, len(mixed))), dup)
    return [dumps(e) for e in mixed]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trace=capped_traces(), batch=st.sampled_from([1, 3, 7, 1_000]))
def test_capped_sessions_match_the_reference(trace: list[bytes], batch: int, make_settings) -> None:
    s = make_settings(partitions=1, max_events_per_session=CAP)
    fields, totals, dlq = asyncio.run(_run(s, [(r.key, r.value) for r in records(trace)], batch))
    expected = expected_state([(0, v) for v in trace], NOW_MS, max_events=CAP)
    assert fields == +expected.fields
    assert totals == +expected.totals
    assert [(r.offset, r.reason) for r in dlq.rejections] == [
        (index, reason) for _, index, reason in expected.rejected
    ]
