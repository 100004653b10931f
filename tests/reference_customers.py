"""An independent, deliberately naive reference of the customer KPIs (issue 11, semantics.md).

It recomputes every row and cohort from the whole list of accepted events and history rows at
once, with its own calendar (datetime) and its own money rounding: no incremental state, no
period module, nothing shared with the Lua scripts or the query code it checks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

CHANNELS = ("direct", "organic", "paid_search", "social", "email", "referral", "affiliate")
DEVICES = ("desktop", "mobile", "tablet")


@dataclass(frozen=True)
class Order:
    order_id: str
    ts: int  # ms
    customer: str | None
    revenue: Decimal
    currency: str
    channel: str
    device: str


def _start(period: str, ts_s: int) -> datetime:
    t = datetime.fromtimestamp(ts_s, UTC)
    if period == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(period: str, start: datetime) -> datetime:
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    return (start + timedelta(days=32)).replace(day=1)


def _of(period: str, ts_ms: int) -> int:
    return int(_start(period, ts_ms // 1000).timestamp())


def _z(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cents(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _seg(value: str | None, allowed: Sequence[str]) -> str:
    value = (value or "unknown").strip().lower() or "unknown"
    return value if value in allowed or value == "unknown" else "other"


class Reference:
    """The customer figures of a set of accepted events and imported history rows.

    events: dicts as published (valid ones), in the order one partition reads them (only the
    first of a session decides its segment; the first purchase of an order id counts).
    history: customer -> orders (the number of orders imported; the latest row wins).
    """

    def __init__(
        self, events: Iterable[Mapping[str, Any]], history: Mapping[str, int] | None = None
    ) -> None:
        seen: set[tuple[str, str]] = set()
        segment: dict[str, tuple[str, str]] = {}
        self.activity: list[tuple[str, int]] = []  # (customer, ts ms)
        self.orders: dict[str, Order] = {}
        for e in events:
            key = (e["session_id"], e["event_id"])
            if key in seen:
                continue
            seen.add(key)
            sid = e["session_id"]
            segment.setdefault(
                sid, (_seg(e.get("channel"), CHANNELS), _seg(e.get("device"), DEVICES))
            )
            customer = e.get("account_id") or e.get("user_id") or None
            if customer:
                self.activity.append((customer, e["ts"]))
            if e["type"] == "purchase" and e["order_id"] not in self.orders:
                ch, dev = segment[sid]
                self.orders[e["order_id"]] = Order(
                    e["order_id"],
                    e["ts"],
                    customer,
                    Decimal(str(e["revenue"])),
                    e["currency"],
                    ch,
                    dev,
                )
        self.history = dict(history or {})
        by_customer: dict[str, list[Order]] = defaultdict(list)
        for o in self.orders.values():
            if o.customer:
                by_customer[o.customer].append(o)
        self.tracked = {
            c: sorted(os, key=lambda o: (o.ts, o.order_id)) for c, os in by_customer.items()
        }

    def first_order(self, customer: str) -> Order | None:
        """The customer's first overall order, if it is a tracked one."""
        if self.history.get(customer, 0) >= 1:
            return None
        orders = self.tracked.get(customer, [])
        return orders[0] if orders else None

    def second_order(self, customer: str) -> Order | None:
        """The customer's second overall order, if it is a tracked one."""
        orders = self.tracked.get(customer, [])
        k = 2 - self.history.get(customer, 0)  # the k-th tracked order is the second overall
        return orders[k - 1] if k >= 1 and len(orders) >= k else None

    def _ordering(self, period: str, start: int) -> set[str]:
        return {
            c
            for c, orders in self.tracked.items()
            if any(_of(period, o.ts) == start for o in orders)
        }

    def row(self, period: str, start_s: int) -> dict[str, Any]:
        start = datetime.fromtimestamp(start_s, UTC)
        end = int(_next(period, start).timestamp())
        prev = int(_start(period, start_s - 1).timestamp())
        active = {c for c, ts in self.activity if _of(period, ts) == start_s}
        ordering = self._ordering(period, start_s)
        ordering_prev = self._ordering(period, prev)
        in_p = [o for o in self.orders.values() if o.customer and _of(period, o.ts) == start_s]
        in_prev = [o for o in self.orders.values() if o.customer and _of(period, o.ts) == prev]
        anonymous = sum(
            1 for o in self.orders.values() if not o.customer and _of(period, o.ts) == start_s
        )
        new = [
            c for c in self.tracked if (f := self.first_order(c)) and _of(period, f.ts) == start_s
        ]
        by_channel = dict.fromkeys(CHANNELS, 0)
        by_device = dict.fromkeys(DEVICES, 0)
        for c in new:
            f = self.first_order(c)
            assert f is not None
            by_channel[f.channel] = by_channel.get(f.channel, 0) + 1
            by_device[f.device] = by_device.get(f.device, 0) + 1
        repeat = sum(
            1 for c in self.tracked if (s := self.second_order(c)) and _of(period, s.ts) == start_s
        )
        revenue: dict[str, Decimal] = defaultdict(Decimal)
        for o in in_p:
            revenue[o.currency] += o.revenue
        revenue_prev: dict[str, Decimal] = defaultdict(Decimal)
        for o in in_prev:
            revenue_prev[o.currency] += o.revenue
        currencies = sorted(revenue)
        both = sorted(set(revenue) | set(revenue_prev))
        retained = len(ordering & ordering_prev)
        retention = retained / len(ordering_prev) if ordering_prev else None
        n = len(ordering)

        def growth(now: Decimal | int, before: Decimal | int) -> float | None:
            return None if not before else float(Decimal(now) / Decimal(before)) - 1

        single = len(currencies) <= 1
        total = revenue[currencies[0]] if currencies else Decimal(0)
        return {
            "start": _z(start_s),
            "end": _z(end),
            "active_customers": len(active),
            "ordering_customers": n,
            "new_customers": len(new),
            "new_customers_by_channel": {k: v for k, v in by_channel.items() if k in CHANNELS or v},
            "new_customers_by_device": {k: v for k, v in by_device.items() if k in DEVICES or v},
            "returning_customers": n - len(new),
            "repeat_customers": repeat,
            "retained_customers": retained,
            "retention_rate": retention,
            "churn_rate": None if retention is None else 1 - retention,
            "orders": len(in_p),
            "anonymous_orders": anonymous,
            "revenue": _cents(total) if single else None,
            "orders_per_customer": len(in_p) / n if n else None,
            "revenue_per_customer": (_cents(total / n) if n else None) if single else None,
            "order_growth": growth(len(in_p), len(in_prev)),
            "revenue_growth": growth(revenue.get(both[0], 0), revenue_prev.get(both[0], 0))
            if len(both) == 1
            else None,
            "revenue_by_currency": {c: _cents(revenue[c]) for c in currencies},
            "revenue_per_customer_by_currency": {c: _cents(revenue[c] / n) for c in currencies},
            "revenue_growth_by_currency": {
                c: growth(revenue.get(c, 0), revenue_prev.get(c, 0)) for c in both
            },
        }

    def report(self, period: str, from_s: int, to_s: int) -> dict[str, Any]:
        rows = []
        start = _start(period, from_s)
        if start.timestamp() < from_s:
            start = _next(period, start)
        while start.timestamp() < to_s:
            rows.append(self.row(period, int(start.timestamp())))
            start = _next(period, start)
        return {"period": period, "from": _z(from_s), "to": _z(to_s), "rows": rows}

    def cohorts(self, period: str, from_s: int, to_s: int) -> dict[str, Any]:
        members: dict[int, list[str]] = defaultdict(list)
        for c in self.tracked:
            f = self.first_order(c)
            if f is not None:
                members[_of(period, f.ts)].append(c)
        out = []
        for c_start in sorted(members):
            if not from_s <= c_start < to_s:
                continue
            size = len(members[c_start])
            retention: list[float] = []
            cumulative: dict[str, Decimal] = defaultdict(Decimal)
            lists: dict[str, list[str]] = defaultdict(list)
            currencies = sorted(
                {
                    o.currency
                    for c in members[c_start]
                    for o in self.tracked[c]
                    if _of(period, o.ts) < to_s
                }
            )
            q = datetime.fromtimestamp(c_start, UTC)
            while q.timestamp() < to_s:
                qs = int(q.timestamp())
                ordering = [c for c in members[c_start] if c in self._ordering(period, qs)]
                retention.append(len(ordering) / size)
                for cur in currencies:
                    for c in members[c_start]:
                        for o in self.tracked[c]:
                            if o.currency == cur and _of(period, o.ts) == qs:
                                cumulative[cur] += o.revenue
                    lists[cur].append(_cents(cumulative[cur] / size))
                q = _next(period, q)
            out.append(
                {
                    "start": _z(c_start),
                    "customers": size,
                    "retention": retention,
                    "revenue_per_customer": lists[currencies[0]] if len(currencies) == 1 else None,
                    "revenue_per_customer_by_currency": dict(lists),
                }
            )
        return {"period": period, "from": _z(from_s), "to": _z(to_s), "cohorts": out}
