"""Ended sessions, abandoned carts and recoveries: both stages' Lua on a real redis-server.

The session worker's BatchProcessor applies events (in order, or shuffled with duplicates)
and hands its facts to a collecting sink; the customer stage applies them (shuffled, re-sent);
`kpis` and the cart list must equal tests/reference_sessions.py, written from the issue.
"""

from __future__ import annotations

import asyncio
import json
import random
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
