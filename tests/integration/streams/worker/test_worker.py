"""The real worker process on the real broker and Redis: exact KPIs, crashes, DLQ, accounting."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests import harness
from tests.reference import dumps, event, expected_state

CHANNELS = ["organic", "paid_search", "email", "tiktok"]  # tiktok is not configured: "other"
DEVICES = ["desktop", "mobile", "tablet"]


def make_trace(n_sessions: int, now_ms: int, seed: int = 7) -> list[tuple[bytes | None, bytes]]:
    """Sessions of the last 30 minutes delivered out of order, with re-sends and bad lines."""
    rng = random.Random(seed)
    steps = ["shipping", "payment", "review"]
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n_sessions):
        sid = f"sess-{i}"
        seg = {"channel": rng.choice(CHANNELS), "device": rng.choice(DEVICES), "country": "DE"}
        t = now_ms - rng.randint(120_000, 1_800_000)
        evs: list[dict[str, Any]] = []
        for j in range(rng.randint(1, 3)):
            evs.append(event("visit", f"{sid}-v{j}", sid, t, page=f"/p/{j}", **seg))
            t += rng.randint(1_000, 90_000)
        depth = rng.choices([0, 1, 2, 3, 4, 5], weights=[40, 25, 10, 8, 7, 10])[0]
        if depth >= 1:
            evs.append(event("add_to_cart", f"{sid}-c", sid, t, unit_price="9.99", **seg))
        for k in range(min(depth - 1, 3)):
            t += rng.randint(1_000, 120_000)
            evs.append(event("checkout_step", f"{sid}-s{k}", sid, t, step=steps[k], **seg))
        if depth == 5:
            t += rng.randint(1_000, 60_000)
            revenue = f"{rng.randint(100, 50_000) / 100:.2f}"
            evs.append(event("purchase", f"{sid}-p", sid, t, revenue=revenue, **seg))
        if rng.random() < 0.3:  # out of order: a tracker flushes its queue late
            rng.shuffle(evs)
        if rng.random() < 0.1:  # re-sent duplicates
            evs += rng.sample(evs, k=1)
        out += [(sid.encode(), dumps(e)) for e in evs]
    # Interleave sessions a little, keeping each one's own delivery order.
    rng.shuffle(out)
    out.sort(key=lambda kv: kv[0] or b"")
    bad = [
        (b"bad-1", b"{not json"),
        (b"bad-2", b'"a string"'),
        (None, b"\xc3\x28 invalid utf-8"),
        (b"bad-3", dumps(event("visit", "x1", "bad-3", "2026-01-01T00:00:00"))),
        (b"bad-4", dumps(event("add_to_cart", "x2", "bad-4", now_ms, quantity=0))),
        (b"bad-5", dumps(event("checkout_step", "x3", "bad-5", now_ms, step="gift-wrap"))),
        (b"bad-6", dumps(event("visit", "x4", "bad-6", now_ms + 86_400_000))),  # future
        (
            b"bad-7",
            b'{"event_id": "deep", "type": "visit", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        ),
    ]
    mixed = list(out)
    for item in bad:
        mixed.insert(rng.randint(0, len(mixed)), item)
    return mixed


async def published(settings: Any, n: int) -> dict[tuple[int, int], bytes]:
    """The messages as the worker reads them: (partition, offset) -> value, in that order."""
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, expected=n)
    assert len(got) == n
    return {(p, o): v for p, o, _, v in sorted(got, key=lambda m: (m[0], m[1]))}


def kpis_json(settings: Any, from_s: int, to_s: int, *extra: str) -> dict[str, Any]:
    result = harness.run_cli(
        ["kpis", "--json", "--from", str(from_s * 1000), "--to", str(to_s * 1000), *extra],
        settings,
    )
    return json.loads(result.stdout)


def check_against_reference(
    settings: Any, messages: dict[tuple[int, int], bytes], now_ms: int
) -> None:
    exp = expected_state([(p, v) for (p, _), v in messages.items()], now_ms)
    totals = harness.accounted(settings)
    for name, value in exp.totals.items():
        assert totals.get(name, 0) == value, name
    from_s = (now_ms - 3_600_000) // 60_000 * 60
    to_s = (now_ms + 600_000) // 60_000 * 60
    fields = exp.range_fields(from_s, to_s)
    report = kpis_json(settings, from_s, to_s)
    stages = ["visit", "cart", "shipping", "payment", "review", "purchase"]
    sessions = {s: sum(v for k, v in fields.items() if k.startswith(f"s|{s}|")) for s in stages}
    assert report["sessions"] == sessions
    orders = sum(v for k, v in fields.items() if k.startswith("o|"))
    revenue = sum(v for k, v in fields.items() if k.startswith("r|"))
    assert report["orders"] == orders
    assert report["revenue"] == f"{revenue / 10_000:.2f}"
    assert report["conversion_rate"] == sessions["purchase"] / sessions["visit"]
    assert report["cart_abandonment_rate"] == 1 - sessions["purchase"] / sessions["cart"]
    assert report["step_dropoff"]["payment"] == 1 - sessions["review"] / sessions["payment"]
    by_channel = kpis_json(settings, from_s, to_s, "--by", "channel")
    assert set(by_channel["groups"]) == {"organic", "paid_search", "email", "other"}
    assert sum(g["sessions"]["visit"] for g in by_channel["groups"].values()) == sessions["visit"]
    other = sum(v for k, v in fields.items() if k.startswith("s|purchase|other|"))
    assert by_channel["groups"]["other"]["sessions"]["purchase"] == other


@pytest.mark.slow
async def test_worker_counts_exactly_and_dead_letters_bad_lines(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(batch_size=200)
    now_ms = int(time.time() * 1000)
    trace = make_trace(400, now_ms)
    await harness.produce(settings.kafka_bootstrap, settings.topic, trace)
    messages = await published(settings, len(trace))
    worker = harness.Worker(settings, tmp_path).start()
    try:
        harness.wait_accounted(settings, len(trace), worker=worker)
    finally:
        worker.stop()
    # The default event loop (STOREPULSE_EVENT_LOOP) is the one the worker runs on.
    assert ", uvloop loop" in worker.proc.log_tail(200)
    check_against_reference(settings, messages, now_ms)
    dlq = await harness.consume_all(settings.kafka_bootstrap, settings.dlq_topic, expected=8)
    bodies = [json.loads(v) for _, _, _, v in dlq]
    assert sorted(b["reason"] for b in bodies) == sorted(
        # 5,000 levels of nesting exceed the JSON parser's depth limit: malformed.
        ["malformed", "malformed", "malformed", "schema", "schema", "schema", "future", "malformed"]
    )
    for body in bodies:
        original = messages[(body["partition"], body["offset"])]
        if "payload_base64" in body:
            assert base64.b64decode(body["payload_base64"]) == original
        else:
            assert body["payload"].encode() == original
        assert body["detail"]
        assert body["topic"] == settings.topic
    assert sum("payload_base64" in b for b in bodies) == 1


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_is_exact(make_settings, tmp_path: Path) -> None:
    settings = make_settings(batch_size=50)
    now_ms = int(time.time() * 1000)
    trace = make_trace(1000, now_ms, seed=11)
    # Four parts, published one per round: a round's kill always comes before the end of the
    # trace, since the next part is not even published yet. So there are exactly 3 kills
    # however fast the worker is, and the last round alone can finish.
    size = len(trace) // 4
    parts = [trace[:size], trace[size : 2 * size], trace[2 * size : 3 * size], trace[3 * size :]]
    rng = random.Random(11)
    kills = 0
    published_so_far = 0
    for part in parts[:3]:
        asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, part))
        before = published_so_far
        published_so_far += len(part)
        # A progress point in the first half of this part, measured in Redis: the kill lands
        # after that many messages were applied, mid-stream (at batches of 50, at least 6 batches
        # after the point remain), mid-batch, between the DLQ publish and the Lua call, before
        # or after a Kafka commit.
        point = before + rng.randint(1, len(part) // 2)
        worker = harness.Worker(settings, tmp_path).start()
        done = wait_accounted_at_least(settings, point, worker)
        worker.kill()
        kills += 1
        assert done <= published_so_far < len(trace)
    asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, parts[3]))
    messages = asyncio.run(published(settings, len(trace)))
    worker = harness.Worker(settings, tmp_path).start()
    try:
        harness.wait_accounted(settings, len(trace), worker=worker)
    finally:
        worker.stop()
    assert kills == 3
    check_against_reference(settings, messages, now_ms)


def wait_accounted_at_least(
    settings: Any, point: int, worker: harness.Worker, timeout: float = 60
) -> int:
    """Poll Redis every 10 ms until `point` messages are accounted for; returns the count."""
    deadline = time.monotonic() + timeout
    while (done := harness.accounted(settings)["accounted"]) < point:
        assert worker.alive(), worker.proc.log_tail(40)
        assert time.monotonic() < deadline, f"accounted {done} of {point} within {timeout}s"
        time.sleep(0.01)
    return done
