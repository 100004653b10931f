"""An independent, deliberately naive reference of ended sessions, carts and recoveries (issue 13).

Written from the issue text (docs/semantics.md, "Sessions and carts"): it takes the whole list
of messages at once, decides what each partition accepted, and recomputes every session from
all its accepted events sorted by (ts, event_id), with Decimal money and its own rounding. No
incremental state, nothing shared with the Lua scripts or the query code it checks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from streams.contract.events import EventParser, Rejected

CHANNELS = ("direct", "organic", "paid_search", "social", "email", "referral", "affiliate")
DEVICES = ("desktop", "mobile", "tablet")
CART_STAGE = {"add_to_cart", "checkout_step", "purchase"}  # closed funnel: cart and after


def _seg(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed or value == "unknown" else "other"


def _cty(value: str) -> str:
    return value if value == "UNKNOWN" or (len(value) == 2 and value.isalpha()) else "OTHER"


def cents(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


@dataclass
class Session:
    partition: int
    session_id: str
    events: list[Any]  # accepted, sorted by (ts, event_id)
    channel: str
    device: str
    country: str
    end: int  # ms
    ended: bool
    ordered: bool  # counted an order
    customer: tuple[str, str, str] | None  # (customer, account_id, user_id)
    items: list[tuple[str, int, Decimal, str]]  # sku, quantity > 0, unit price, currency

    @property
    def bounce(self) -> bool:
        return len(self.events) == 1 and self.events[0].type == "visit"

    @property
    def abandoned(self) -> bool:
        reached_cart = any(e.type in CART_STAGE for e in self.events)
        return self.ended and reached_cart and not self.ordered

    def value(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for _, qty, price, cur in self.items:
            out[cur] += qty * price
        return dict(out)


@dataclass
class Order:
    order_id: str
    ts: int
    customer: str | None
    revenue: Decimal
    currency: str


@dataclass
class Expected:
    sessions: list[Session] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    watermarks: dict[int, int] = field(default_factory=dict)
    # (session_id) -> (order) recovering it, for abandoned carts with a customer
    recovered_by: dict[str, Order] = field(default_factory=dict)


def expected_sessions(
    messages: Iterable[tuple[int, bytes]],
    now_ms: int,
    timeout_ms: int = 1_800_000,
    lateness_ms: int = 3_600_000,
    recovery_ms: int = 7 * 86_400_000,
    skew_ms: int = 300_000,
) -> Expected:
    """messages: (partition, raw value keyed by its session id) in each partition's order."""
    parser = EventParser()
    wm: dict[int, int] = {}
    seen: set[tuple[int, str, str]] = set()
    accepted: list[tuple[int, Any]] = []
    for p, raw in messages:
        try:
            ev = parser.parse(raw)
        except Rejected:
            continue
        if ev.ts > now_ms + skew_ms or (p in wm and ev.ts < wm[p] - lateness_ms):
            continue
        wm[p] = max(wm.get(p, ev.ts), ev.ts)
        if (p, ev.session_id, ev.event_id) in seen:
            continue
        seen.add((p, ev.session_id, ev.event_id))
        accepted.append((p, ev))
    exp = Expected(watermarks=wm)
    counted: dict[tuple[int, str], str] = {}  # (partition, order id) -> session id
    for p, ev in accepted:
        if ev.type == "purchase" and (p, ev.order_id) not in counted:
            counted[(p, ev.order_id)] = ev.session_id
            exp.orders.append(
                Order(ev.order_id, ev.ts, ev.account_id or ev.user_id, ev.revenue, ev.currency)
            )
    by_session: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for p, ev in accepted:
        by_session[(p, ev.session_id)].append(ev)
    for (p, sid), evs in by_session.items():
        first = evs[0]  # the segment of the first accepted event, in arrival order
        ordered_evs = sorted(evs, key=lambda e: (e.ts, e.event_id))
        end = ordered_evs[-1].ts + timeout_ms
        customer = None
        for e in ordered_evs:
            if e.account_id or e.user_id:
                customer = (e.account_id or e.user_id, e.account_id or "", e.user_id or "")
        qty: dict[str, int] = defaultdict(int)
        price: dict[str, tuple[Decimal, str]] = {}
        for e in ordered_evs:
            if e.type == "add_to_cart":
                qty[e.sku] += e.quantity
                price[e.sku] = (e.unit_price, e.currency)
            elif e.type == "remove_from_cart":
                qty[e.sku] = max(0, qty[e.sku] - e.quantity)
        items = [
            (sku, qty[sku], *price[sku]) for sku in sorted(qty) if qty[sku] > 0 and sku in price
        ]
        exp.sessions.append(
            Session(
                p,
                sid,
                ordered_evs,
                _seg(first.channel, CHANNELS),
                _seg(first.device, DEVICES),
                _cty(first.country),
                end,
                wm[p] > end,
                any(s == sid and q == p for (q, _), s in counted.items()),
                customer,
                items,
            )
        )
    for s in exp.sessions:
        if not s.abandoned or s.customer is None:
            continue
        candidates = [
            o
            for o in exp.orders
            if o.customer == s.customer[0] and s.end < o.ts <= s.end + recovery_ms
        ]
        if candidates:
            exp.recovered_by[s.session_id] = min(candidates, key=lambda o: (o.ts, o.order_id))
    return exp


def _bucket(ms: int, bucket_seconds: int) -> int:
    return ms // (bucket_seconds * 1000) * bucket_seconds


def kpis(
    exp: Expected, from_s: int, to_s: int, bucket_seconds: int = 60, by: str | None = None
) -> dict[str, dict[str, Any]]:
    """The new keys of `storepulse kpis --json` per group ("all" without by)."""

    def group(s: Session) -> str:
        if by == "channel":
            return s.channel
        if by == "device":
            return s.device
        if by == "country":
            return s.country
        return "all"

    def inside(ms: int) -> bool:
        return from_s <= _bucket(ms, bucket_seconds) < to_s

    out: dict[str, Counter[str]] = defaultdict(Counter)
    value: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    revenue: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    by_sid = {s.session_id: s for s in exp.sessions}
    for s in exp.sessions:
        if not s.ended or not inside(s.end):
            continue
        g = out[group(s)]
        g["ended"] += 1
        g["bounces"] += s.bounce
        g["ms"] += s.events[-1].ts - s.events[0].ts
        g["pages"] += sum(1 for e in s.events if e.type == "visit")
        if s.abandoned:
            g["abandoned"] += 1
            for cur, v in s.value().items():
                value[group(s)][cur] += v
            if s.session_id in exp.recovered_by:
                g["recovered_of_abandoned"] += 1
    owners: dict[str, Session] = {}
    for sid, order in exp.recovered_by.items():
        s = by_sid[sid]
        if inside(order.ts):
            out[group(s)]["recovered"] += 1
        best = owners.get(order.order_id)
        if best is None or (s.end, s.session_id) < (best.end, best.session_id):
            owners[order.order_id] = s
    for oid, s in owners.items():
        order = next(o for o in exp.orders if o.order_id == oid)
        if inside(order.ts):
            revenue[group(s)][order.currency] += order.revenue
    result = {}
    for name in set(out) | set(value) | set(revenue):
        g = out[name]
        n = g["ended"]

        def money(amounts: dict[str, Decimal]) -> tuple[str | None, dict[str, str]]:
            by_cur = {c: cents(v) for c, v in sorted(amounts.items()) if v}
            if len(by_cur) > 1:
                return None, by_cur
            return (next(iter(by_cur.values())) if by_cur else "0.00"), by_cur

        abandoned_value, abandoned_by = money(value[name])
        recovered_revenue, recovered_by = money(revenue[name])
        result[name] = {
            "ended_sessions": n,
            "bounces": g["bounces"],
            "bounce_rate": g["bounces"] / n if n else None,
            "average_session_seconds": g["ms"] / 1000 / n if n else None,
            "pages_per_session": g["pages"] / n if n else None,
            "abandoned_carts": g["abandoned"],
            "abandoned_value": abandoned_value,
            "recovered_carts": g["recovered"],
            "recovered_revenue": recovered_revenue,
            "cart_recovery_rate": (
                g["recovered_of_abandoned"] / g["abandoned"] if g["abandoned"] else None
            ),
            "abandoned_value_by_currency": abandoned_by,
            "recovered_revenue_by_currency": recovered_by,
        }
    return result


def _z(ms: int) -> str:
    from datetime import UTC, datetime

    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def cart_list(
    exp: Expected, from_s: int, to_s: int, recovery_ms: int = 7 * 86_400_000
) -> list[dict[str, Any]]:
    """Every cart `storepulse carts --abandoned` lists for [from, to), in its order."""
    rows = []
    for s in exp.sessions:
        if not s.abandoned or not from_s * 1000 <= s.end < to_s * 1000:
            continue
        if exp.watermarks[s.partition] > s.end + recovery_ms:
            continue  # expired
        values = s.value()
        customer, account, user = s.customer or (None, "", "")
        order = exp.recovered_by.get(s.session_id)
        rows.append(
            {
                "session_id": s.session_id,
                "customer": customer,
                "account_id": account or None,
                "user_id": user or None,
                "channel": s.channel,
                "device": s.device,
                "abandoned_at": _z(s.end),
                "value": (cents(next(iter(values.values()))) if len(values) == 1 else None)
                if values
                else "0.00",
                "currency": next(iter(values)) if len(values) == 1 else None,
                "items": [
                    {"sku": sku, "quantity": q, "unit_price": cents(p)} for sku, q, p, _ in s.items
                ],
                "recovered_at": None if order is None else _z(order.ts),
            }
        )
    rows.sort(key=lambda r: r["session_id"])
    rows.sort(key=lambda r: r["abandoned_at"], reverse=True)
    return rows
