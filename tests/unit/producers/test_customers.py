"""The generator's customers: they come back and order again, B2B accounts through several
buyers, logins at the cart; the manifest's customer days equal the independent reference."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Any

import pytest

from producers.model import TrafficModel
from producers.scenarios import Timeline
from streams.contract.events import EventParser, Rejected
from streams.contract.times import parse_ts
from tests.reference_customers import Reference
from tests.unit.producers.conftest import START_MS, as_json, config, run

DAY_S = 86_400
HOUR_S = 3_600


def _ms(ev: dict[str, Any]) -> int:
    return parse_ts(ev["ts"])


def test_known_customers_come_back_after_the_interval_and_order_again() -> None:
    # 5M users: two sessions drawing the same user by chance are rare (~0.2% of them here).
    cfg = config(
        rate=2.0,
        cvr=0.2,
        abandonment=0.4,
        users=5_000_000,
        returning_share=0.5,
        b2b_share=0.2,
        accounts=5_000,
        repurchase_probability=0.4,
        repurchase_interval_s=HOUR_S,
    )
    lines, _ = run(cfg, seed=21, duration_s=12 * HOUR_S)
    orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in as_json(lines):
        if ev["type"] == "purchase" and "user_id" in ev:
            orders[ev.get("account_id") or ev["user_id"]].append(ev)
    # Plain users: an order in the first 8 h had 4 h (4 intervals) to bring its customer back.
    cut = START_MS + 8 * HOUR_S * 1_000
    followed = gaps = 0
    waits: list[float] = []
    for customer, placed in orders.items():
        if customer.startswith("acct-"):
            continue
        placed.sort(key=_ms)
        for n, ev in enumerate(placed):
            if _ms(ev) >= cut:
                continue
            gaps += 1
            if n + 1 < len(placed):
                followed += 1
                waits.append((_ms(placed[n + 1]) - _ms(ev)) / 1_000)
    # ~1,800 orders: one sigma of the share is ~0.012 (and 2% of returns fall after the run);
    # the exponential wait's mean has a sigma of ~4% over ~700 returns, plus the few minutes a
    # returning session takes to order.
    assert gaps > 1_000
    assert followed / gaps == pytest.approx(0.4, abs=0.05)
    assert 0.9 * HOUR_S < statistics.mean(waits) < 1.25 * HOUR_S
    # A returning account orders through any of its buyers: several users order for one.
    buyers = {
        customer: {ev["user_id"] for ev in placed}
        for customer, placed in orders.items()
        if customer.startswith("acct-") and len(placed) >= 3
    }
    assert buyers and max(len(b) for b in buyers.values()) >= 2
    for account, users in buyers.items():  # the account's own buyers only
        assert all(u.startswith(f"b2b-{account[5:]}-") for u in users)


def test_the_expected_rate_counts_the_customers_coming_back() -> None:
    cfg = config(
        rate=4.0,
        cvr=0.1,
        abandonment=0.5,
        returning_share=0.6,
        repurchase_probability=0.6,
        repurchase_interval_s=900,
    )
    model = TrafficModel(cfg, Timeline(), 5, START_MS)
    lines, _ = run(cfg, seed=5, duration_s=4 * HOUR_S + 1_200)
    # From 2 h on (8 intervals) the returns are in steady state: the expectation there is
    # well above the new visitors' rate, and the emitted lines follow it.
    window = range(START_MS + 2 * HOUR_S * 1_000, START_MS + 4 * HOUR_S * 1_000, 60_000)
    expected = sum(model.expected_rate(ms) * 60 for ms in window)
    assert expected > 1.1 * cfg.rate * 2 * HOUR_S
    got = sum(window.start <= _ms(json.loads(line)) < window.stop for _, line in lines)
    # ~33,000 lines in ~5,000 sessions: one sigma is ~2%.
    assert got == pytest.approx(expected, rel=0.07)


def test_logins_at_the_cart_leave_the_browsing_before_it_anonymous() -> None:
    cfg = config(rate=5.0, cvr=0.1, abandonment=0.5, returning_share=1.0, login_at_cart_share=1.0)
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in as_json(run(cfg, seed=3, duration_s=HOUR_S)[0]):
        sessions[ev["session_id"]].append(ev)
    carting = [evs for evs in sessions.values() if any(e["type"] == "add_to_cart" for e in evs)]
    assert len(carting) > 50
    for evs in sessions.values():
        evs.sort(key=_ms)
        first_cart = next((i for i, e in enumerate(evs) if e["type"] == "add_to_cart"), None)
        if first_cart is None:  # never carted: never logged in
            assert all("user_id" not in e for e in evs)
            continue
        assert all("user_id" not in e for e in evs[:first_cart])
        assert all("user_id" in e for e in evs[first_cart:])


def test_the_manifest_customer_days_equal_the_reference_over_the_emitted_lines() -> None:
    cfg = config(
        rate=0.1,
        cvr=0.15,
        abandonment=0.5,
        users=300,
        returning_share=0.5,
        b2b_share=0.15,
        accounts=10,
        repurchase_probability=0.5,
        repurchase_interval_s=8 * HOUR_S,
        login_at_cart_share=0.5,
        duplicate_share=0.05,
        invalid_share=0.03,
        late_share=0.1,
        max_delay_s=120,
    )
    lines, truth = run(cfg, seed=17, duration_s=4 * DAY_S)
    parser = EventParser()
    seen: set[str] = set()
    accepted = []
    for _, line in lines:
        try:
            ev = parser.parse(line.encode())
        except Rejected:
            continue
        if ev.event_id not in seen:
            seen.add(ev.event_id)
            accepted.append(json.loads(line) | {"ts": ev.ts})  # the reference takes ms
    days = truth.customers.days()
    assert len(days) == 4
    first = parse_ts(days[0]["start"]) // 1_000
    want = Reference(accepted).report("day", first, first + len(days) * DAY_S)["rows"]
    for got, row in zip(days, want, strict=True):
        assert got == {k: row[k] for k in got}, got["start"]
    # The trace exercises every figure: returning, repeat and retained customers, anonymous
    # orders of the shoppers who never logged in.
    for name in ("returning_customers", "repeat_customers", "retained_customers"):
        assert sum(d[name] for d in days) > 0, name
    assert sum(d["anonymous_orders"] for d in days) > 0
    totals = truth.customers.totals()
    assert totals["orders"] == sum(d["orders"] for d in days)
    assert totals["repeat_customers"] == sum(d["repeat_customers"] for d in days)
