"""The generator's shoppers who bounce, take items out, leave full carts and come back days
later; the manifest's ended-session and cart figures equal the independent reference."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from producers.session_truth import SessionTruth
from tests.reference_sessions import cents, expected_sessions
from tests.unit.producers.conftest import START_MS, config, run

HOUR_S = 3_600
TIMEOUT_MS = 1_800_000
WINDOW_MS = 7 * 86_400_000


def test_the_session_truth_equals_the_reference_minute_by_minute() -> None:
    # Shoppers come back for their carts within minutes here, so that recoveries fall in
    # the run; 3 hours at 2 lines/s, with lost, late and re-sent lines.
    cfg = config(
        rate=2.0,
        cvr=0.1,
        abandonment=0.6,
        returning_share=0.6,
        users=300,
        cart_return_share=0.6,
        cart_return_delay_s=1_200.0,
        login_at_cart_share=0.3,
        late_share=0.05,
        duplicate_share=0.05,
        loss_share=0.05,
    )
    lines, truth = run(cfg, seed=5, duration_s=3 * HOUR_S)
    minutes = truth.sessions.minutes(truth.customers.orders())
    exp = expected_sessions(
        [(0, line.encode()) for _, line in lines],
        now_ms=START_MS + 5 * HOUR_S * 1_000,
        timeout_ms=TIMEOUT_MS,
        lateness_ms=10 * HOUR_S * 1_000,
        recovery_ms=WINDOW_MS,
    )
    wm = exp.watermarks[0]
    want: dict[int, dict[str, Any]] = {}

    def row(ms: int) -> dict[str, Any]:
        return want.setdefault(
            ms - ms % 60_000,
            {
                "ended_sessions": 0,
                "bounces": 0,
                "session_ms": 0,
                "pages": 0,
                "abandoned_carts": 0,
                "abandoned_value": Decimal(0),
                "recovered_carts": 0,
                "recovered_revenue": Decimal(0),
                "recovered_of_abandoned": 0,
            },
        )

    for s in exp.sessions:
        if not s.ended:
            continue
        r = row(s.end)
        r["ended_sessions"] += 1
        r["bounces"] += s.bounce
        r["session_ms"] += s.events[-1].ts - s.events[0].ts
        r["pages"] += sum(1 for e in s.events if e.type == "visit")
        if s.abandoned:
            r["abandoned_carts"] += 1
            r["abandoned_value"] += sum(s.value().values(), Decimal(0))
            r["recovered_of_abandoned"] += s.session_id in exp.recovered_by
    for order in {o.order_id: o for o in exp.recovered_by.values()}.values():
        row(order.ts)["recovered_revenue"] += order.revenue
    for order in exp.recovered_by.values():
        row(order.ts)["recovered_carts"] += 1
    # Minutes the watermark has passed: every session ending in them has ended.
    final = {m: r for m, r in want.items() if m + 60_000 <= wm}
    got = {}
    for item in minutes:
        start = _ms(item["minute"])
        if start + 60_000 <= wm:
            got[start] = {
                k: Decimal(v) if k.endswith(("_value", "_revenue")) else v
                for k, v in item.items()
                if k != "minute"
            }
    # The truth lists minutes with figures only; the reference has a row where anything ended.
    assert {m: r for m, r in got.items() if any(r.values())} == final
    totals = SessionTruth.totals([m for m in minutes if _ms(m["minute"]) + 60_000 <= wm])
    assert totals["ended_sessions"] > 500 and totals["bounces"] > 100
    assert totals["abandoned_carts"] > 50 and totals["recovered_carts"] > 10
    # Shoppers took items out; money is written with 2 decimals.
    types = [json.loads(line)["type"] for _, line in lines]
    assert types.count("remove_from_cart") > 20
    assert cents(Decimal(totals["abandoned_value"])) == totals["abandoned_value"]


def test_bounces_follow_the_share_and_removals_keep_the_cart_consistent() -> None:
    sessions: dict[str, list[dict[str, Any]]] = {}
    lines, _ = run(config(rate=8.0, bounce_share=0.6), seed=8, duration_s=HOUR_S)
    for _, line in lines:
        ev = json.loads(line)
        sessions.setdefault(ev["session_id"], []).append(ev)
    browsing = [evs for evs in sessions.values() if all(e["type"] == "visit" for e in evs)]
    single = sum(1 for evs in browsing if len(evs) == 1)
    # A browsing session is one page with the share, else 1 + Geometric(2.5) pages (one page
    # with probability 1 / 3.5): 0.6 + 0.4 / 3.5 = 0.714; ~2,000 of them, one sigma ~0.01.
    assert len(browsing) > 1_500 and abs(single / len(browsing) - (0.6 + 0.4 / 3.5)) < 0.04
    for evs in sessions.values():
        held: dict[str, int] = {}
        for e in evs:
            if e["type"] == "add_to_cart":
                held[e["sku"]] = held.get(e["sku"], 0) + e["quantity"]
            elif e["type"] == "remove_from_cart":
                assert 1 <= e["quantity"] <= held[e["sku"]]  # never more than was put in
                held[e["sku"]] -= e["quantity"]


def _ms(text: str) -> int:
    from streams.contract.times import parse_ts

    return parse_ts(text)
