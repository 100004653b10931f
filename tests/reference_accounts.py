"""An independent, deliberately naive reference of the account views (issue 12, semantics.md).

It recomputes every figure from the whole list of accepted events, history rows and directory
rows at once, with its own calendar (datetime), its own median (statistics), exact fractions for
the at-risk test and its own money rounding: nothing shared with the Lua scripts, the contract
module or the query code it checks.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

HOUR = 3_600


@dataclass(frozen=True)
class Order:
    order_id: str
    ts: int  # ms
    account: str
    revenue: Decimal
    currency: str
    session: str
    user: str | None


def _z(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zms(ts_ms: int) -> str:
    t = datetime.fromtimestamp(ts_ms // 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_ms % 1000:03d}Z"


def _cents(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _hour(ts_ms: int) -> int:
    t = datetime.fromtimestamp(ts_ms // 1000, UTC).replace(minute=0, second=0, microsecond=0)
    return int(t.timestamp())


def _money(by_currency: Mapping[str, Decimal], name: str = "revenue") -> dict[str, Any]:
    cur = sorted(by_currency)
    shown = {c: _cents(by_currency[c]) for c in cur}
    single = _cents(by_currency[cur[0]]) if len(cur) == 1 else ("0.00" if not cur else None)
    return {name: single, f"{name}_by_currency": shown}


class AccountReference:
    """The account figures of accepted events (in one partition's reading order), imported
    history (customer -> (orders, first ms, last ms)) and directory rows (id -> row dict)."""

    def __init__(
        self,
        events: Iterable[Mapping[str, Any]],
        history: Mapping[str, tuple[int, int, int]] | None = None,
        directory: Mapping[str, Mapping[str, str | None]] | None = None,
        factor: Decimal = Decimal(2),
    ) -> None:
        seen_ids: set[tuple[str, str]] = set()
        # (account, session, user or None, ts ms) of every accepted event with an account_id
        self.activity: list[tuple[str, str, str | None, int]] = []
        counted: set[str] = set()
        self.orders: list[Order] = []
        for e in events:
            key = (e["session_id"], e["event_id"])
            if key in seen_ids:
                continue
            seen_ids.add(key)
            account = e.get("account_id")
            if e["type"] == "purchase" and e["order_id"] not in counted:
                counted.add(e["order_id"])
                if account:
                    self.orders.append(
                        Order(
                            e["order_id"],
                            e["ts"],
                            account,
                            Decimal(str(e["revenue"])),
                            e["currency"],
                            e["session_id"],
                            e.get("user_id"),
                        )
                    )
            if account:
                self.activity.append((account, e["session_id"], e.get("user_id"), e["ts"]))
        self.history = dict(history or {})
        self.directory = {k: dict(v) for k, v in (directory or {}).items()}
        self.factor = Fraction(factor)
        self.seen = {a for a, _, _, _ in self.activity}

    # The range: the hours whose start is in [from, to) --------------------------------------

    @staticmethod
    def bounds(from_s: int, to_s: int) -> tuple[int, int]:
        hours = [h for h in range(from_s - from_s % HOUR, to_s + HOUR, HOUR) if from_s <= h < to_s]
        return (hours[0], hours[-1] + HOUR) if hours else (from_s, from_s)

    def _meta(self, account: str) -> dict[str, Any]:
        row = self.directory.get(account)
        if row is None:
            return {"name": None, "tier": "unassigned", "sales_rep": None}
        return {"name": row.get("name"), "tier": row["tier"], "sales_rep": row.get("sales_rep")}

    def _instants(self, account: str) -> list[int]:
        """Every order instant known of the account: tracked ones, and history's two."""
        out = [o.ts for o in self.orders if o.account == account]
        if account in self.history:
            _, first, last = self.history[account]
            out += [first, last]
        return out

    def risky(self, account: str, end_ms: int) -> bool:
        ts = sorted(o.ts for o in self.orders if o.account == account and o.ts < end_ms)
        if len(ts) < 3:
            return False
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        median = (
            Fraction(statistics.median(gaps))
            if len(gaps) % 2
            else Fraction(sorted(gaps)[len(gaps) // 2 - 1] + sorted(gaps)[len(gaps) // 2], 2)
        )
        return end_ms - ts[-1] > self.factor * median

    def row(self, account: str, start: int, end: int) -> dict[str, Any]:
        acts = [x for x in self.activity if x[0] == account and start <= _hour(x[3]) < end]
        orders = [o for o in self.orders if o.account == account and start <= _hour(o.ts) < end]
        sessions = {s for _, s, _, _ in acts}
        users = {u for _, _, u, _ in acts if u}
        converted = {o.session for o in orders} & sessions
        ordering_users = {o.user for o in orders if o.user}
        revenue: dict[str, Decimal] = defaultdict(Decimal)
        count: dict[str, int] = defaultdict(int)
        for o in orders:
            revenue[o.currency] += o.revenue
            count[o.currency] += 1
        before = [t for t in self._instants(account) if t < end * 1000]
        cur = sorted(revenue)
        aov = {c: _cents(revenue[c] / count[c]) for c in cur}
        out = {"account_id": account, **self._meta(account)}
        out |= {
            "sessions": len(sessions),
            "converted_sessions": len(converted),
            "conversion_rate": len(converted) / len(sessions) if sessions else None,
            "active_users": len(users),
            "ordering_users": len(ordering_users),
            "usage_rate": len(ordering_users) / len(users) if users else None,
            "orders": len(orders),
            **_money(revenue),
            "average_order_value": aov[cur[0]] if len(cur) == 1 else None,
            "average_order_value_by_currency": aov,
            "first_order_at": _zms(min(before)) if before else None,
            "last_order_at": _zms(max(before)) if before else None,
            "at_risk": self.risky(account, end * 1000),
        }
        return out

    def _main_currency(self, start: int, end: int) -> str | None:
        revenue: dict[str, Decimal] = defaultdict(Decimal)
        for o in self.orders:
            if start <= _hour(o.ts) < end:
                revenue[o.currency] += o.revenue
        return min(revenue, key=lambda c: (-revenue[c], c)) if revenue else None

    def _first_order(self, account: str) -> int | None:
        ts = [o.ts for o in self.orders if o.account == account]
        if account in self.history:
            ts.append(self.history[account][1])
        return min(ts) if ts else None

    def report(
        self,
        from_s: int,
        to_s: int,
        top: int = 20,
        sort: str = "revenue",
        tier: str | None = None,
        rep: str | None = None,
        at_risk: bool = False,
    ) -> dict[str, Any]:
        start, end = self.bounds(from_s, to_s)
        active = {a for a, _, _, t in self.activity if start <= _hour(t) < end}
        in_range = [o for o in self.orders if start <= _hour(o.ts) < end]
        known = self.seen | set(self.directory)
        risky = {a for a in self.seen if self.risky(a, end * 1000)}
        revenue: dict[str, Decimal] = defaultdict(Decimal)
        for o in in_range:
            revenue[o.currency] += o.revenue
        totals = {
            "active_accounts": len(active),
            "ordering_accounts": len({o.account for o in in_range}),
            "new_accounts": sum(
                1
                for a in known
                if (f := self._first_order(a)) is not None and start <= f // 1000 < end
            ),
            "at_risk_accounts": len(risky),
            "accounts_in_directory": len(self.directory),
            # Distinct (account, user) and (account, session) pairs: docs/semantics.md.
            "active_users": len(
                {(a, u) for a, _, u, t in self.activity if u and start <= _hour(t) < end}
            ),
            "ordering_users": len({(o.account, o.user) for o in in_range if o.user}),
            "sessions": len({(a, s) for a, s, _, t in self.activity if start <= _hour(t) < end}),
            "orders": len(in_range),
            **_money(revenue),
        }
        listed = risky if at_risk else active
        rows = [self.row(a, start, end) for a in sorted(listed)]
        rows = [
            r
            for r in rows
            if (tier is None or r["tier"] == tier) and (rep is None or r["sales_rep"] == rep)
        ]
        currency = self._main_currency(start, end)

        def value(r: dict[str, Any]) -> Any:
            if sort == "revenue":
                shown = r["revenue_by_currency"].get(currency)
                return Decimal(shown) if shown else Decimal(0)
            return r[sort]

        valued = sorted((r for r in rows if value(r) is not None), key=lambda r: r["account_id"])
        valued.sort(key=value, reverse=True)
        nulls = [r for r in rows if value(r) is None]
        return {
            "from": _z(start),
            "to": _z(end),
            "totals": totals,
            "accounts": (valued + nulls)[:top],
        }

    def reps(self, from_s: int, to_s: int) -> dict[str, Any]:
        start, end = self.bounds(from_s, to_s)
        before = start - (end - start)
        rep_of = {a: self._meta(a)["sales_rep"] for a in self.seen | set(self.directory)}
        known = list(rep_of)
        out = []
        reps = sorted({r["sales_rep"] for r in self.directory.values() if r.get("sales_rep")})
        for rep in [*reps, None]:
            mine = [a for a in known if rep_of[a] == rep]
            now: dict[str, Decimal] = defaultdict(Decimal)
            then: dict[str, Decimal] = defaultdict(Decimal)
            n_orders = 0
            for o in self.orders:
                if rep_of[o.account] != rep:
                    continue
                if start <= _hour(o.ts) < end:
                    now[o.currency] += o.revenue
                    n_orders += 1
                elif before <= _hour(o.ts) < start:
                    then[o.currency] += o.revenue
            both = sorted(set(now) | set(then))
            growth = {
                c: (float(now.get(c, Decimal(0)) / then[c]) - 1 if then.get(c) else None)
                for c in both
            }
            entry = {
                "sales_rep": rep,
                "accounts": len(mine),
                "active_accounts": len(
                    {
                        a
                        for a, _, _, t in self.activity
                        if rep_of[a] == rep and start <= _hour(t) < end
                    }
                ),
                "ordering_accounts": len(
                    {
                        o.account
                        for o in self.orders
                        if rep_of[o.account] == rep and start <= _hour(o.ts) < end
                    }
                ),
                "new_accounts": sum(
                    1
                    for a in mine
                    if (f := self._first_order(a)) is not None and start <= f // 1000 < end
                ),
                "at_risk_accounts": sum(
                    1 for a in mine if a in self.seen and self.risky(a, end * 1000)
                ),
                "orders": n_orders,
                **_money(now),
                "revenue_growth": growth[both[0]] if len(both) == 1 else None,
                "revenue_growth_by_currency": growth,
            }
            out.append(entry)
        named, null = out[:-1], out[-1]
        currency = self._main_currency(start, end)

        def rev(e: dict[str, Any]) -> Decimal:
            shown = e["revenue_by_currency"].get(currency)
            return Decimal(shown) if shown else Decimal(0)

        named.sort(key=rev, reverse=True)  # stable: ties stay by sales_rep
        return {"from": _z(start), "to": _z(end), "reps": [*named, null]}
