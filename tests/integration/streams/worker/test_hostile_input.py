"""Hostile input never stops the worker, and every message is accounted for."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.kafka import ensure_topics
from streams.store.client import connect
from streams.store.funnel import FunnelStore
from streams.worker.deadletters import dlq_record_limit
from tests import harness
from tests.integration.streams.store.test_funnel import (
    T0,
    CollectingDLQ,
    make_processor,
    records,
    stored,
)
from tests.reference import dumps, event, session_key

VALID = [
    event("visit", "v", "s", T0, channel="organic", device="mobile", country="DE"),
    event("add_to_cart", "c", "s", T0 + 1),
    event("checkout_step", "k", "s", T0 + 2, step="payment"),
    event("purchase", "p", "s", T0 + 3, revenue="10.50"),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event with one field replaced, removed or added, then maybe re-encoded badly."""
    body: dict[str, Any] = dict(draw(st.sampled_from(VALID)))
    body["event_id"] = draw(st.text(min_size=0, max_size=20))
    action = draw(st.sampled_from(["replace", "remove", "add", "none"]))
    key = draw(st.sampled_from(sorted(body)))
    if action == "replace":
        body[key] = draw(json_values)
    elif action == "remove":
        del body[key]
    elif action == "add":
        body[draw(st.text(max_size=10))] = draw(json_values)
    raw = json.dumps(body, allow_nan=True).encode()
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1-cut", "truncate"]))
    if encoding == "utf-16":
        return raw.decode().encode("utf-16")
    if encoding == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if encoding == "latin-1-cut":
        return raw.replace(b"s", b"\xe9", 1)
    return raw


hostile = st.one_of(st.binary(max_size=200), mutated())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=st.lists(hostile, min_size=1, max_size=30))
def test_any_bytes_are_accounted_for(messages: list[bytes], make_settings) -> None:
    s = make_settings(partitions=1)

    async def run() -> tuple[dict[str, int], CollectingDLQ]:
        client = connect(s)
        try:
            await client.flushdb()
            dlq = CollectingDLQ()
            proc = make_processor(client, s, dlq)
            await proc.process(records(messages))
            _, totals = await stored(client, s)
            return dict(totals), dlq
        finally:
            await client.aclose()

    totals, dlq = asyncio.run(run())
    accepted = sum(v for k, v in totals.items() if k.startswith("ev|"))
    rejected = sum(v for k, v in totals.items() if k.startswith("rej|"))
    assert accepted + totals.get("dup", 0) + rejected == len(messages)
    assert rejected == len(dlq.rejections)
    assert {r.reason for r in dlq.rejections} <= {"malformed", "schema", "key", "late", "future"}
    assert all(r.detail for r in dlq.rejections)


def hostile_corpus(now_ms: int) -> list[tuple[bytes | None, bytes]]:
    rng = random.Random(3)
    good = event("visit", "g1", "g", now_ms)
    corpus: list[bytes] = [
        dumps(good),
        b'{"event_id": "' + b"x" * 200_000 + b'", "type": "visit", "ts": 0, "session_id": "s"}',
        dumps(event("visit", "long", "s" * 300, now_ms)),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 300 + b"1" + b"}" * 300,
        dumps(event("purchase", "h1", "h", now_ms, revenue="9" * 400)),
        dumps(event("add_to_cart", "h2", "h", now_ms, quantity=10**40)),
        dumps(event("visit", "h3", "h", 10**30)),
        dumps(good).decode().encode("utf-16"),
        dumps(good).replace(b"visit", b"v\xffsit"),
        b"\x00" * 64,
        b"",
        b"{" + b" " * 1_000_000 + b"}",  # a 1 MB message
        bytes(rng.randrange(256) for _ in range(5000)),
        dumps(good),  # a duplicate
    ]
    # Keyed as a producer keys them: by session_id where there is one (else b"h").
    return [(session_key(raw) or b"h", raw) for raw in corpus]


@pytest.mark.slow
async def test_worker_survives_a_hostile_corpus(make_settings, tmp_path: Path) -> None:
    s = make_settings()
    now_ms = int(time.time() * 1000)
    corpus = hostile_corpus(now_ms)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        for key, value in corpus:
            await producer.send_and_wait(s.topic, value, key=key)
    finally:
        await producer.stop()
    worker = harness.Worker(s, tmp_path).start()
    try:
        totals = await asyncio.to_thread(harness.wait_accounted, s, len(corpus), 90, worker)
        assert worker.alive()
    finally:
        worker.stop()
    assert totals["ev|visit"] == 1
    assert totals["dup"] == 1
    rejected = sum(v for k, v in totals.items() if k.startswith("rej|"))
    assert rejected == len(corpus) - 2
    dlq = await harness.consume_all(s.kafka_bootstrap, s.dlq_topic, expected=rejected, wait=30)
    assert len(dlq) == rejected
    reasons = [json.loads(v)["reason"] for _, _, _, v in dlq]
    assert "malformed" in reasons and "schema" in reasons


@pytest.mark.slow
async def test_oversized_messages_of_escaped_characters_never_stop_a_partition(
    make_settings, tmp_path: Path
) -> None:
    """1x, 2x and 5x STOREPULSE_MAX_EVENT_BYTES of control characters, on every partition.

    JSON writes each as 6 characters: the 5x message (328 KB) made a 2 MB dead letter that Kafka
    refused, and the worker retried it forever while no partition moved.
    """
    s = make_settings(partitions=3)
    now_ms = int(time.time() * 1000)
    limit = s.max_event_bytes
    messages: list[tuple[int, bytes | None, bytes]] = []
    for p in range(3):
        for n, factor in enumerate((1, 2, 5)):
            sid = f"big-{p}-{n}"
            messages.append((p, sid.encode(), dumps(event("visit", f"{sid}-a", sid, now_ms))))
            pad = b'{"pad":"' + b"\x01" * (factor * limit) + b'"}'
            messages.append((p, sid.encode(), pad))
            messages.append((p, sid.encode(), dumps(event("visit", f"{sid}-b", sid, now_ms))))
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        await ensure_topics(s)
        for p, key, value in messages:
            await producer.send_and_wait(s.topic, value, key=key, partition=p)
    finally:
        await producer.stop()
    worker = harness.Worker(s, tmp_path).start()
    try:
        totals = await asyncio.to_thread(harness.wait_accounted, s, len(messages), 90, worker)
        assert worker.alive()
    finally:
        worker.stop()
    assert totals["ev|visit"] == 18 and totals["rej|schema"] == 9
    assert totals.get("dlq_lost", 0) == 0
    dlq = await harness.consume_all(s.kafka_bootstrap, s.dlq_topic, expected=9, wait=30)
    assert len(dlq) == 9
    for _, _, _, value in dlq:
        body = json.loads(value)
        assert len(value) <= dlq_record_limit(s.dlq_max_payload_bytes) < 1_048_576
        assert body["payload_truncated"] is True
        assert body["payload_bytes"] in {factor * limit + 10 for factor in (1, 2, 5)}
        assert len(body["payload_sha256"]) == 64
    client = connect(s)
    try:
        store = FunnelStore(client, s)
        # Every partition applied up to its last record: none was held up by its big message.
        assert [m.offset for m in await store.metas([0, 1, 2])] == [8, 8, 8]
    finally:
        await client.aclose()
