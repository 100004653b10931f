"""Ended sessions, abandoned carts and recoveries: both stages' Lua on a real redis-server.

The session worker's BatchProcessor applies events (in order, or shuffled with duplicates)
and hands its facts to a collecting sink; the customer stage applies them (shuffled, re-sent);
`kpis` and the cart list must equal tests/reference_sessions.py, written from the issue.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.query.carts import CartQuery, abandoned_carts
from streams.query.kpis import kpi_report
from streams.settings import Settings
from streams.store.carts import CartStore
from tests.integration.streams.store.test_customers import partition_of, run_stages
from tests.reference import dumps, event
from tests.reference_sessions import cart_list, expected_sessions, kpis

NOW_MS = 1_795_000_000_000  # 2026-11-19T10:26:40Z: both processors' clock
T0 = NOW_MS - 8 * 3_600_000
HOUR = 3_600_000
WINDOW_S = 3 * 3_600  # a short recovery window: orders fall on both sides of it
FROM_S, TO_S = (T0 - HOUR) // 1000, NOW_MS // 1000 + 3_600
KEYS = (
    "ended_sessions",
    "bounces",
    "bounce_rate",
    "average_session_seconds",
    "pages_per_session",
    "abandoned_carts",
    "abandoned_value",
    "recovered_carts",
    "recovered_revenue",
    "cart_recovery_rate",
    "abandoned_value_by_currency",
    "recovered_revenue_by_currency",
)
# u-1 first: hypothesis draws the first element most, and recoveries need named shoppers.
CUSTOMERS = [{"user_id": "u-1"}, {}, {"user_id": "u-2"}, {"account_id": "acme", "user_id": "a-1"}]


def tick_ids() -> list[str]:
    """One session id per partition of two: their late visit moves each watermark."""
    out: dict[int, str] = {}
    n = 0
    while len(out) < 2:
        out.setdefault(partition_of(f"tick-{n}"), f"tick-{n}")
        n += 1
    return [out[0], out[1]]


def session_settings(make_settings: Any, **extra: Any) -> Settings:
    # A lateness of 2 days takes the 9 hours of a trace in any order.
    values: dict[str, Any] = {
        "partitions": 2,
        "customer_partitions": 2,
        "allowed_lateness_seconds": 2 * 86_400,
        "recovery_window_seconds": WINDOW_S,
    }
    return make_settings(**(values | extra))


async def outcome(s: Settings, values: list[bytes], rng: random.Random | None, batch: int) -> Any:
    _, _, client, facts = await run_stages(s, values, (), rng, batch)
    try:
        from streams.store.funnel import FunnelStore

        funnel = FunnelStore(client, s)
        report = {by: await kpi_report(funnel, s, FROM_S, TO_S, by) for by in (None, "channel")}
        carts = await all_pages(CartStore(client, s), s, limit=3)
        return report, carts, facts
    finally:
        await client.aclose()


async def all_pages(store: CartStore, s: Settings, limit: int, **extra: Any) -> list[Any]:
    out: list[Any] = []
    cursor = None
    while True:
        page = await abandoned_carts(
            store, s, CartQuery(FROM_S, TO_S, limit=limit, cursor=cursor, **extra)
        )
        assert len(page["carts"]) <= limit
        out += page["carts"]
        cursor = page["next"]
        if cursor is None:
            return out


def same_kpis(report: dict[str, Any], want: dict[str, dict[str, Any]]) -> None:
    top = report[None]
    assert {k: top[k] for k in KEYS} == want[None]["all"]
    groups = report["channel"]["groups"]
    for name, figures in want["channel"].items():
        assert {k: groups[name][k] for k in KEYS} == figures, name
    for name in set(groups) - set(want["channel"]):
        assert groups[name]["ended_sessions"] == 0 and groups[name]["recovered_carts"] == 0


@st.composite
def traces(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 7))):
        sid = f"s{i}"
        who = draw(st.sampled_from(CUSTOMERS))
        login_at = draw(st.integers(0, 3))
        seg = {"channel": draw(st.sampled_from(["email", "organic"])), "device": "mobile"}
        # Starts all over the 6 hours (hypothesis favours small integers): carts end on both
        # sides of the list's horizon, orders come before, inside and after a cart's window.
        t = T0 + draw(st.sampled_from([0, 2, 4, 5, 5.5, 6])) * HOUR
        t = int(t) + draw(st.integers(0, 30 * 60_000))
        kinds = draw(
            st.lists(
                st.sampled_from(["visit", "add", "add", "remove", "step", "purchase"]),
                min_size=1,
                max_size=6,
            )
        )
        for n, kind in enumerate(kinds):
            t += draw(st.integers(0, 20 * 60_000))  # gaps below the 30 min timeout
            ident = who if n >= login_at else {}
            eid = f"{sid}-{n}"
            if kind == "add":
                extra = {
                    "sku": draw(st.sampled_from(["A", "B"])),
                    "quantity": draw(st.integers(1, 3)),
                    "unit_price": draw(st.sampled_from(["1.25", "10.00", "0.10"])),
                    "currency": "EUR",
                }
                events.append(event("add_to_cart", eid, sid, t, **seg, **ident, **extra))
            elif kind == "remove":
                sku, qty = draw(st.sampled_from(["A", "B", "C"])), draw(st.integers(1, 4))
                events.append(
                    event("remove_from_cart", eid, sid, t, sku=sku, quantity=qty, **seg, **ident)
                )
            elif kind == "step":
                events.append(event("checkout_step", eid, sid, t, **seg, **ident))
            elif kind == "purchase":
                # Each session orders once at most (its order id); a shopper may come back.
                if any(e["type"] == "purchase" for e in events if e["session_id"] == sid):
                    continue
                revenue = draw(st.sampled_from(["5.00", "12.50"]))
                events.append(event("purchase", eid, sid, t, revenue=revenue, **seg, **ident))
            else:
                events.append(event("visit", eid, sid, t, **seg, **ident))
    # The watermark of both partitions passes every session's end.
    for sid in tick_ids():
        events.append(event("visit", f"{sid}-v", sid, NOW_MS))
    return events


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trace=traces(), seed=st.integers(0, 2**16))
def test_any_arrival_order_and_duplicates_give_the_reference(trace, seed, make_settings) -> None:
    s = session_settings(make_settings)
    rng = random.Random(seed)
    shuffled = [dumps(e) for e in trace]
    rng.shuffle(shuffled)
    shuffled += [shuffled[rng.randrange(len(shuffled))] for _ in range(3)]
    rng.shuffle(shuffled)
    ordered = [dumps(e) for e in sorted(trace, key=lambda e: (e["ts"], e["event_id"]))]
    for values, shuffle, batch in ((ordered, None, 1000), (shuffled, rng, 3)):
        report, carts, _ = asyncio.run(outcome(s, values, shuffle, batch))
        exp = expected_sessions(
            [(partition_of(json.loads(v)["session_id"]), v) for v in values],
            NOW_MS,
            lateness_ms=2 * 86_400_000,
            recovery_ms=WINDOW_S * 1000,
        )
        want = {by: kpis(exp, FROM_S, TO_S, by=by) for by in (None, "channel")}
        want[None].setdefault("all", kpis_empty())
        same_kpis(report, want)
        assert carts == cart_list(exp, FROM_S, TO_S, recovery_ms=WINDOW_S * 1000)


def kpis_empty() -> dict[str, Any]:
    return {
        "ended_sessions": 0,
        "bounces": 0,
        "bounce_rate": None,
        "average_session_seconds": None,
        "pages_per_session": None,
        "abandoned_carts": 0,
        "abandoned_value": "0.00",
        "recovered_carts": 0,
        "recovered_revenue": "0.00",
        "cart_recovery_rate": None,
        "abandoned_value_by_currency": {},
        "recovered_revenue_by_currency": {},
    }


class Pipeline:
    """Both stages over one redis database, fed step by step (facts forwarded after each)."""

    def __init__(self, s: Settings, reverse_facts: bool = False) -> None:
        from prometheus_client import CollectorRegistry

        from streams.store.client import connect
        from streams.store.customers import CustomerStore
        from streams.store.funnel import FunnelStore
        from streams.worker import metrics
        from streams.worker.customer_batch import FactBatchBuilder
        from streams.worker.facts import FactSink
        from streams.worker.processor import BatchProcessor
        from tests.integration.streams.store.test_customers import CollectingTransport
        from tests.integration.streams.store.test_funnel import CollectingDLQ

        self.s = s
        self.reverse = reverse_facts
        self.client = connect(s)
        self.funnel = FunnelStore(self.client, s)
        self.transport = CollectingTransport()
        clock = lambda: NOW_MS / 1000  # noqa: E731
        self.stage1 = BatchProcessor(
            s,
            self.funnel,
            CollectingDLQ(),
            metrics.create(CollectorRegistry()),
            clock=clock,
            facts=FactSink(self.funnel, self.transport),
        )
        self.stage2 = BatchProcessor(
            s,
            CustomerStore(self.client, s),
            CollectingDLQ(),
            metrics.create(CollectorRegistry()),
            clock=clock,
            builder=FactBatchBuilder(s),
        )
        self.offsets = [0, 0]
        self.fact_offsets = [0, 0]
        self.forwarded = 0

    async def feed(self, *events: dict[str, Any]) -> None:
        from streams.worker.processor import Record

        recs = []
        for e in events:
            p = partition_of(e["session_id"])
            recs.append(Record(p, self.offsets[p], e["session_id"].encode(), dumps(e)))
            self.offsets[p] += 1
        await self.stage1.process(recs)
        facts = self.transport.sent[self.forwarded :]
        self.forwarded = len(self.transport.sent)
        if self.reverse:
            facts = facts[::-1]
        out = []
        for key, value in facts:
            p = partition_of(key.decode())
            out.append(Record(p, self.fact_offsets[p], key, value))
            self.fact_offsets[p] += 1
        if out:
            await self.stage2.process(out)

    async def tick(self, ts: int) -> None:
        """Move both partitions' watermarks to ts (a visit of a session of its own on each)."""
        await self.feed(*(event("visit", f"{sid}-{ts}", sid, ts) for sid in tick_ids()))

    async def kpis(self, from_ms: int, to_ms: int, by: str | None = None) -> dict[str, Any]:
        report = await kpi_report(self.funnel, self.s, from_ms // 1000, to_ms // 1000, by)
        if by is None:
            return {k: report[k] for k in KEYS}
        return {g: {k: v[k] for k in KEYS} for g, v in report["groups"].items()}

    async def carts(self, **extra: Any) -> list[dict[str, Any]]:
        return await all_pages(CartStore(self.client, self.s), self.s, limit=2, **extra)


def pipeline_test(body: Any, window_s: int = 86_400) -> Any:
    """Run body(pipeline) on a flushed database, and close the client."""

    def run(make_settings: Any) -> None:
        async def go() -> None:
            pipe = Pipeline(session_settings(make_settings, recovery_window_seconds=window_s))
            await pipe.client.flushdb()
            try:
                await body(pipe)
            finally:
                await pipe.client.aclose()

        asyncio.run(go())

    run.__name__ = body.__name__
    run.__doc__ = body.__doc__
    return run


TIMEOUT = 1_800_000
SEG = {"channel": "email", "device": "mobile"}
ALL = (T0 - HOUR, NOW_MS + HOUR)


@pipeline_test
async def test_an_event_exactly_at_end_extends_the_session(pipe: Pipeline) -> None:
    t = T0
    await pipe.feed(event("visit", "a0", "a", t, **SEG))
    await pipe.tick(t + TIMEOUT)  # a watermark equal to end: not ended
    assert (await pipe.kpis(*ALL))["ended_sessions"] == 0
    await pipe.tick(t + TIMEOUT + 1)  # strictly after end: ended, a bounce
    got = await pipe.kpis(*ALL)
    assert (got["ended_sessions"], got["bounces"], got["average_session_seconds"]) == (1, 1, 0.0)
    # An event exactly at the old end: the same session, which has not ended any more.
    await pipe.feed(event("visit", "a1", "a", t + TIMEOUT, **SEG))
    got = await pipe.kpis(*ALL)
    assert (got["ended_sessions"], got["bounces"]) == (0, 0)
    await pipe.tick(t + 2 * TIMEOUT + 1)
    got = await pipe.kpis(*ALL)
    assert (got["ended_sessions"], got["bounces"], got["pages_per_session"]) == (1, 0, 2.0)
    assert got["average_session_seconds"] == TIMEOUT / 1000
    # In the bucket of the new end, not of the old one.
    new_end = t + 2 * TIMEOUT
    assert (await pipe.kpis(new_end // 60_000 * 60_000, new_end + 60_000))["ended_sessions"] == 1
    assert (await pipe.kpis(T0, new_end // 60_000 * 60_000))["ended_sessions"] == 0


@pipeline_test
async def test_a_session_ended_two_versions_before_takes_a_late_event(pipe: Pipeline) -> None:
    """That version stored SK.CONTRIB as JSON, counted visits and marked nothing: the late
    event withdraws it and it ends again with figures, as if this version had ended it."""
    from streams.store import keys, session_keys

    t = T0
    await pipe.feed(
        event("visit", "b0", "b", t, **SEG),
        event("remove_from_cart", "b1r", "b", t + 30_000, sku="A", quantity=1, **SEG),
        event("visit", "b1", "b", t + 60_000, **SEG),
    )
    await pipe.tick(t + 60_000 + TIMEOUT + 1)
    before = await pipe.kpis(*ALL)
    assert (before["ended_sessions"], before["pages_per_session"]) == (1, 2.0)
    sk = pipe.funnel.prefix(partition_of("b")) + keys.SESSION_PREFIX + "b"
    lua = session_keys.SESSION_LUA
    raw = (await pipe.client.hget(sk, lua["CONTRIB"])).decode()
    # Short enough for Redis to keep the hash a listpack (hash-max-listpack-value 64).
    assert len(raw) <= 64 and await pipe.client.object("encoding", sk) == b"listpack"
    end = t + 60_000 + TIMEOUT
    bucket = str(end // 60_000 * 60)
    assert raw.split("\t") == [str(t + 60_000), bucket, "0", "60000", "2", "0", "0"]
    old = {
        "e": end,
        "b": bucket,
        "ch": SEG["channel"],
        "dev": SEG["device"],
        "cty": "US",
        "bounce": 0,
        "ms": 60_000,
        "pages": 2,
        "ab": 0,
        "v": {},
    }
    await pipe.client.hset(sk, lua["CONTRIB"], json.dumps(old))
    # It counted visits where this version counts the other events.
    await pipe.client.hdel(sk, str(lua["MARK"]), str(lua["OTHERS"]))
    await pipe.client.hset(sk, str(lua["VISITS"]), 2)
    # Within the allowed lateness: the session has three visits over 2 minutes now.
    await pipe.feed(event("visit", "b2", "b", t + 120_000, **SEG))
    await pipe.tick(t + 120_000 + TIMEOUT + 2)
    got = await pipe.kpis(*ALL)
    assert (got["ended_sessions"], got["pages_per_session"]) == (1, 3.0)
    assert got["average_session_seconds"] == 120.0


@pipeline_test
async def test_an_abandoned_cart_ended_by_the_version_before_takes_a_late_event(
    pipe: Pipeline,
) -> None:
    """The version before wrote its end, the segment and the cart's value into SK.CONTRIB (80
    bytes), and the figures into the funnel's bucket and totals hashes: a late purchase takes
    the value back (in this version's hash; the sums are the same)."""
    from streams.store import keys, session_keys

    t = T0
    who = {"user_id": "u-7", **SEG}
    await pipe.feed(
        event("visit", "w0", "w", t, **who),
        event("add_to_cart", "w1", "w", t + 1_000, sku="A", quantity=3, unit_price="2.50", **who),
    )
    await pipe.tick(t + 3 * TIMEOUT)  # the late purchase's end is below it too
    got = await pipe.kpis(*ALL)
    assert (got["abandoned_carts"], got["abandoned_value"]) == (1, "7.50")
    sk = pipe.funnel.prefix(partition_of("w")) + keys.SESSION_PREFIX + "w"
    lua = session_keys.SESSION_LUA
    last, bucket, bounce, ms, pages, ab, big = (
        (await pipe.client.hget(sk, lua["CONTRIB"])).decode().split("\t")
    )
    value = (await pipe.client.hget(sk, lua["CONTRIB_VALUE"])).decode()
    assert (ab, big, json.loads(value)) == ("1", "0", {"EUR": "75000"})
    end = str(int(last) + TIMEOUT)
    wide = [end, last, bucket, bounce, ms, pages, ab, big, "email", "mobile", "US", value]
    await pipe.client.hset(sk, lua["CONTRIB"], "\t".join(wide))
    await pipe.client.hdel(sk, str(lua["CONTRIB_VALUE"]))
    pfx = pipe.funnel.prefix(partition_of("w"))
    moved = 0
    for theirs, ours in (
        (session_keys.ENDED_BUCKET_PREFIX + bucket, keys.BUCKET_PREFIX + bucket),
        (session_keys.ENDED_TOTALS, keys.TOTALS),
    ):
        for field, n in (await pipe.client.hgetall(pfx + theirs)).items():
            await pipe.client.hincrby(pfx + ours, field, int(n))
            moved += 1
        await pipe.client.delete(pfx + theirs)
    assert moved >= 8  # ended, abandoned, value (both ways), first-seen counters
    assert (await pipe.kpis(*ALL))["abandoned_value"] == "7.50"
    totals = await pipe.funnel.totals([partition_of("w")])
    assert totals[session_keys.TOTAL_ABANDONED + "|email|mobile"] == 1
    await pipe.feed(event("purchase", "w2", "w", t + 2_000, revenue="7.50", **who))
    got = await pipe.kpis(*ALL)
    assert (got["ended_sessions"], got["abandoned_carts"], got["abandoned_value"]) == (1, 0, "0.00")
    assert got["abandoned_value_by_currency"] == {}
    # Counted once, when first seen: the totals do not move.
    assert (await pipe.funnel.totals([partition_of("w")]))[
        session_keys.TOTAL_ABANDONED + "|email|mobile"
    ] == 1


@pipeline_test
async def test_a_counter_past_what_lua_numbers_hold_stays_exact(pipe: Pipeline) -> None:
    """A call sums the increments of each counter field in Lua (doubles, exact below 2^53) and
    writes the field with one HSET; a field at or past 2^53 is left to Redis's HINCRBY."""
    from streams.store import keys
    from streams.store import session_keys as sk

    big = 2**53 + 1  # a double rounds it to 2^53
    totals = keys.partition_prefix(pipe.s.topic, partition_of("a")) + sk.ENDED_TOTALS
    await pipe.client.hset(totals, sk.TOTAL_DURATION_SUM, str(big))
    await pipe.feed(event("visit", "a0", "a", T0, **SEG), event("visit", "a1", "a", T0 + 5_000))
    await pipe.tick(T0 + 5_000 + TIMEOUT + 1)
    assert (await pipe.kpis(*ALL))["ended_sessions"] == 1
    assert int(await pipe.client.hget(totals, sk.TOTAL_DURATION_SUM)) == big + 5_000


@pipeline_test
async def test_a_purchase_after_the_cart_was_counted_abandoned(pipe: Pipeline) -> None:
    who = {"user_id": "u-9", **SEG}
    await pipe.feed(
        event("visit", "b0", "b", T0, **who),
        event("add_to_cart", "b1", "b", T0 + 1_000, sku="A", quantity=2, unit_price="5.10", **who),
    )
    await pipe.tick(T0 + 3 * TIMEOUT)
    got = await pipe.kpis(*ALL)
    assert (got["abandoned_carts"], got["abandoned_value"]) == (1, "10.20")
    assert [c["session_id"] for c in await pipe.carts()] == ["b"]
    cart_facts = [json.loads(v) for _, v in pipe.transport.sent if v.startswith(b'["k"')]
    assert [f[3] for f in cart_facts] == ["1"] and cart_facts[0][4] != ""
    # The purchase arrives late (within the lateness): an ended session with an order.
    await pipe.feed(event("purchase", "b2", "b", T0 + 2_000, revenue="10.20", **who))
    got = await pipe.kpis(*ALL)
    assert (got["ended_sessions"], got["abandoned_carts"], got["abandoned_value"]) == (1, 0, "0.00")
    assert got["abandoned_value_by_currency"] == {}
    assert await pipe.carts() == []
    cart_facts = [json.loads(v) for _, v in pipe.transport.sent if v.startswith(b'["k"')]
    assert [(f[3], f[4]) for f in cart_facts[1:]] == [("2", "")]  # withdrawn, next version


@pipeline_test
async def test_cart_quantities_removals_and_prices(pipe: Pipeline) -> None:
    def add(eid: str, t: int, sku: str, qty: int, price: str) -> dict[str, Any]:
        return event("add_to_cart", eid, "c", t, sku=sku, quantity=qty, unit_price=price, **SEG)

    def remove(eid: str, t: int, sku: str, qty: int) -> dict[str, Any]:
        return event("remove_from_cart", eid, "c", t, sku=sku, quantity=qty, **SEG)

    # Arriving newest first: the cart is computed in (ts, event_id) order all the same.
    await pipe.feed(
        add("c6", T0 + 6_000, "B", 2, "12.00"),  # two adds at different prices: the latest's
        add("c5", T0 + 5_000, "B", 1, "10.00"),
        remove("c4", T0 + 4_000, "Z", 3),  # a sku never added: nothing
        add("c3", T0 + 3_000, "A", 1, "1.50"),
        remove("c2", T0 + 2_000, "A", 5),  # below zero: 0, not -3
        add("c1", T0 + 1_000, "A", 2, "1.50"),
    )
    await pipe.tick(T0 + 3 * TIMEOUT)
    got = await pipe.kpis(*ALL)
    assert got["abandoned_value"] == "37.50"  # A: 1 x 1.50, B: 3 x 12.00
    (cart,) = await pipe.carts()
    assert cart["items"] == [
        {"sku": "A", "quantity": 1, "unit_price": "1.50"},
        {"sku": "B", "quantity": 3, "unit_price": "12.00"},
    ]
    assert (cart["value"], cart["currency"], cart["customer"]) == ("37.50", "EUR", None)
    # Every item removed: a cart worth 0.00, in no currency.
    await pipe.feed(remove("c7", T0 + 7_000, "A", 1), remove("c8", T0 + 8_000, "B", 9))
    (cart,) = await pipe.carts()
    assert (cart["value"], cart["currency"], cart["items"]) == ("0.00", None, [])
    assert (await pipe.kpis(*ALL))["abandoned_carts"] == 1


@pipeline_test
async def test_a_session_spanning_a_bucket_edge_counts_in_the_bucket_of_its_end(
    pipe: Pipeline,
) -> None:
    edge = (T0 // 60_000 + 1) * 60_000
    await pipe.feed(
        event("visit", "d0", "d", edge - 10_000, **SEG),
        event("visit", "d1", "d", edge + 10_000, **SEG),
    )
    await pipe.tick(T0 + 3 * TIMEOUT)
    end_bucket = (edge + 10_000 + TIMEOUT) // 60_000 * 60_000
    got = await pipe.kpis(end_bucket, end_bucket + 60_000)
    assert (got["ended_sessions"], got["average_session_seconds"], got["pages_per_session"]) == (
        1,
        20.0,
        2.0,
    )
    assert (await pipe.kpis(T0 - HOUR, end_bucket))["ended_sessions"] == 0


async def two_carts_one_order(pipe: Pipeline) -> None:
    who = {"user_id": "u-7", "device": "mobile"}

    def cart(sid: str, t: int, channel: str) -> list[dict[str, Any]]:
        return [
            event("visit", f"{sid}0", sid, t, channel=channel, **who),
            event("add_to_cart", f"{sid}1", sid, t + 1, channel=channel, **who),
        ]

    # Two carts of u-7 (e and f end 10 min apart), one anonymous cart (never recovered), then
    # one order of u-7 within the window of both carts.
    await pipe.feed(*cart("e", T0, "email"), *cart("f", T0 + 600_000, "organic"))
    await pipe.feed(
        event("visit", "g0", "g", T0, **SEG), event("add_to_cart", "g1", "g", T0 + 1, **SEG)
    )
    await pipe.tick(T0 + 2 * HOUR)
    order_ts = T0 + 3 * HOUR
    await pipe.feed(
        event("purchase", "h0", "h", order_ts, revenue="30.00", channel="direct", **who)
    )
    await pipe.tick(T0 + 4 * HOUR)


@pipeline_test
async def test_one_order_recovers_two_carts_its_revenue_once(pipe: Pipeline) -> None:
    await two_carts_one_order(pipe)
    got = await pipe.kpis(*ALL)
    assert (got["abandoned_carts"], got["recovered_carts"], got["recovered_revenue"]) == (
        3,
        2,
        "30.00",
    )
    assert got["cart_recovery_rate"] == 2 / 3  # the anonymous cart never recovers
    # In the bucket of the order, in the carts' segments; the revenue with the earliest cart.
    order_bucket = (T0 + 3 * HOUR) // 60_000 * 60_000
    at_order = await pipe.kpis(order_bucket, order_bucket + 60_000, "channel")
    assert at_order["email"]["recovered_carts"] == 1 and at_order["organic"]["recovered_carts"] == 1
    assert at_order["email"]["recovered_revenue"] == "30.00"
    assert at_order["organic"]["recovered_revenue"] == "0.00"
    listed = {c["session_id"]: c["recovered_at"] for c in await pipe.carts()}
    at = datetime.fromtimestamp((T0 + 3 * HOUR) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert listed == {"e": at, "f": at, "g": None}
    assert [c["session_id"] for c in await pipe.carts(customer_only=True)] == ["f", "e"]


def test_the_order_may_reach_the_customer_stage_before_the_carts(make_settings) -> None:
    async def go(reverse: bool) -> Any:
        pipe = Pipeline(session_settings(make_settings, recovery_window_seconds=86_400), reverse)
        await pipe.client.flushdb()
        try:
            await two_carts_one_order(pipe)
            return await pipe.kpis(*ALL, "channel"), await pipe.carts()
        finally:
            await pipe.client.aclose()

    assert asyncio.run(go(True)) == asyncio.run(go(False))


async def test_the_cart_list_pages_and_expires(pipe: Pipeline) -> None:
    from streams.query.carts import decode_cursor

    events = []
    for i in range(9):
        sid = f"k{i}"
        t = T0 + (i // 3) * 60_000  # three carts end at each of three instants: ties
        who = {"user_id": f"u{i}"} if i % 2 else {}
        price = f"{i + 1}.00"
        events += [
            event("visit", f"{sid}v", sid, t - 1_000, **SEG, **who),
            event("add_to_cart", f"{sid}a", sid, t, unit_price=price, **SEG, **who),
        ]
    await pipe.feed(*events)
    await pipe.tick(T0 + 2 * HOUR)
    listed = await pipe.carts()  # pages of 2
    order = [c["session_id"] for c in listed]
    assert order == ["k6", "k7", "k8", "k3", "k4", "k5", "k0", "k1", "k2"]
    page = await abandoned_carts(
        CartStore(pipe.client, pipe.s), pipe.s, CartQuery(FROM_S, TO_S, limit=4)
    )
    assert [c["session_id"] for c in page["carts"]] == order[:4]
    assert decode_cursor(page["next"])[1] == "k3"  # goes on after the 4th cart
    known = [c["session_id"] for c in await pipe.carts(customer_only=True)]
    assert known == ["k7", "k3", "k5", "k1"]
    worth = await pipe.carts(min_value=Decimal("5.00"))
    assert [c["session_id"] for c in worth] == ["k6", "k7", "k8", "k4", "k5"]
    assert all(Decimal(c["value"]) >= 5 for c in worth)
    # [from, to) by end: the middle instant alone.
    middle = (T0 + 60_000 + TIMEOUT) // 1000
    got = await abandoned_carts(
        CartStore(pipe.client, pipe.s), pipe.s, CartQuery(middle, middle + 1)
    )
    assert [c["session_id"] for c in got["carts"]] == ["k3", "k4", "k5"] and got["next"] is None
    # Kept until the watermark passes end + the recovery window (2 hours here).
    first_end = T0 + TIMEOUT
    await pipe.tick(first_end + 2 * HOUR)
    assert len(await pipe.carts()) == 9
    await pipe.tick(first_end + 2 * HOUR + 1)
    assert [c["session_id"] for c in await pipe.carts()] == order[:6]
    await pipe.tick(first_end + 2 * HOUR + 120_001)
    assert await pipe.carts() == []
    assert (await pipe.kpis(*ALL))["abandoned_carts"] == 9  # the figures stay in their buckets


test_the_cart_list_pages_and_expires = pipeline_test(
    test_the_cart_list_pages_and_expires, window_s=2 * 3_600
)


def test_without_session_figures_the_funnel_is_the_same_and_nothing_else_is_kept(
    make_settings,
) -> None:
    """STOREPULSE_SESSION_FIGURES=false (the bench's baseline): the funnel alone, as before."""
    trace = [
        event("visit", "n0", "n", T0, **SEG),
        event("add_to_cart", "n1", "n", T0 + 1_000, **SEG),
        event("remove_from_cart", "n2", "n", T0 + 2_000, sku="SKU-1", quantity=1, **SEG),
    ]

    async def go(on: bool) -> tuple[Any, list[bytes]]:
        s = session_settings(make_settings, session_figures=on)
        pipe = Pipeline(s)
        await pipe.client.flushdb()
        try:
            await pipe.feed(*trace)
            await pipe.tick(T0 + 3 * TIMEOUT)
            sums = await pipe.funnel.bucket_sums(0, 10**11)
            names = sorted(await pipe.client.keys("*"))
            return sums.fields, names
        finally:
            await pipe.client.aclose()

    with_figures, keys_on = asyncio.run(go(True))
    funnel_only, keys_off = asyncio.run(go(False))
    from streams.store.session_keys import BUCKET_KINDS_STAGE1

    def kind(name: str) -> str:
        return name.partition("|")[0]

    assert {k: v for k, v in with_figures.items() if kind(k) not in BUCKET_KINDS_STAGE1} == (
        funnel_only
    )
    assert not any(kind(k) in BUCKET_KINDS_STAGE1 for k in funnel_only)
    assert any(kind(k) == "ka" for k in with_figures)
    assert not any(b":k:" in k or k.endswith((b":ez", b":kl", b":kd")) for k in keys_off)
    assert any(k.endswith(b":ez") for k in keys_on)
