"""Pure account rules: whole-hour ranges, the at-risk test, an account's row, sorting, reps.

Every figure of `storepulse accounts report|show|reps` (and their API routes) is computed here
from raw per-account data read by streams/query/accounts.py; docs/semantics.md, "Accounts",
defines them. No I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from streams.contract.kpis import ratio
from streams.contract.money import money_text, units_to_money
from streams.contract.times import MAX_TS_MS, format_ts

__all__ = [
    "RISK_SCALE",
    "SORT_KEYS",
    "UNASSIGNED",
    "AccountData",
    "DirectoryRow",
    "Order",
    "RepTally",
    "SortKey",
    "account_row",
    "at_risk",
    "growth",
    "hour_range",
    "main_currency",
    "median_gap2",
    "money_fields",
    "rank_key",
    "rep_row",
    "risk_factor_scaled",
    "risk_start_ms",
    "sort_reps",
    "sort_rows",
]

# STOREPULSE_AT_RISK_FACTOR is kept as an integer number of hundredths (2 decimals at most).
RISK_SCALE = 100
UNASSIGNED = "unassigned"  # the tier of an account seen in events but not in the directory
SortKey = Literal["revenue", "orders", "sessions", "active_users", "last_order_at"]
SORT_KEYS: tuple[SortKey, ...] = ("revenue", "orders", "sessions", "active_users", "last_order_at")
_HOUR = 3_600


def hour_range(from_s: int, to_s: int) -> tuple[int, int]:
    """The whole hours whose start is in [from_s, to_s): (first start, end of the last)."""
    first = -(-from_s // _HOUR) * _HOUR
    end = -(-to_s // _HOUR) * _HOUR
    return first, max(first, end)


def risk_factor_scaled(factor: Decimal) -> int:
    """The factor in hundredths (exact: the setting has at most 2 decimals)."""
    scaled = factor * RISK_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError("the at-risk factor has more than 2 decimals")
    return int(scaled)


def median_gap2(ts_sorted: Sequence[int]) -> int | None:
    """Twice the median of the gaps between consecutive instants (ms), None below 3 of them.

    With an even number of gaps the median is the mean of the two middle ones: twice it is
    their sum, an integer, so the rule below stays in integers.
    """
    if len(ts_sorted) < 3:
        return None
    gaps = sorted(b - a for a, b in itertools.pairwise(ts_sorted))
    n = len(gaps)
    return 2 * gaps[n // 2] if n % 2 else gaps[n // 2 - 1] + gaps[n // 2]


def risk_start_ms(last_ms: int, m2: int, factor_scaled: int) -> int | None:
    """The first instant (ms) at which an account whose last order is at last_ms and whose
    doubled median gap is m2 is at risk: to - last > factor x median, i.e.
    2 x RISK_SCALE x (to - last) > factor_scaled x m2. None: never (after 9999-12-31).

    apply_accounts.lua computes the same integer, split so that doubles stay exact.
    """
    start = last_ms + factor_scaled * m2 // (2 * RISK_SCALE) + 1
    return None if start > MAX_TS_MS else start


def at_risk(tracked_ts_before_to: Sequence[int], to_ms: int, factor_scaled: int) -> bool:
    """At least 3 tracked orders before to, and to - the last strictly exceeds the factor times
    the median gap between consecutive ones (docs/semantics.md, "At risk")."""
    ts = sorted(tracked_ts_before_to)
    m2 = median_gap2(ts)
    if m2 is None:
        return False
    start = risk_start_ms(ts[-1], m2, factor_scaled)
    return start is not None and to_ms >= start


@dataclass(frozen=True)
class Order:
    """One tracked order of an account (revenue in ten-thousandths)."""

    order_id: str
    ts_ms: int
    units: int
    currency: str
    session_id: str
    user_id: str


@dataclass(frozen=True)
class DirectoryRow:
    """An account as the directory has it (name null, tier unassigned: not in it)."""

    account_id: str
    name: str | None = None
    tier: str = UNASSIGNED
    sales_rep: str | None = None
    region: str | None = None


@dataclass
class AccountData:
    """What the store holds of one account for a range [from, to) (whole hours).

    pairs: (hour start, user_id or '', session_id) of its activity in the range; orders: its
    tracked orders in the range; before_to: how many tracked orders it has before to, with the
    last of them (ts, twice the median gap up to it); first_tracked_ms: its first tracked order
    at all; history: (orders, first ms, last ms) imported, or None.
    """

    account_id: str
    seen: bool = False
    pairs: list[tuple[int, str, str]] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    before_to: int = 0
    last_before_to: tuple[int, int | None] | None = None
    first_tracked_ms: int | None = None
    history: tuple[int, int, int] | None = None


def money_fields(
    units_by_currency: Mapping[str, int], orders_by_currency: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """`revenue` and `revenue_by_currency` (2-decimal strings, "0.00" without orders), and with
    orders_by_currency also `average_order_value[_by_currency]` (null without orders). With
    several currencies the single fields are null (docs/semantics.md, "Money")."""
    currencies = sorted(units_by_currency)
    single = len(currencies) <= 1
    by_currency = {c: money_text(units_to_money(units_by_currency[c])) for c in currencies}
    out: dict[str, Any] = {
        "revenue": (by_currency[currencies[0]] if currencies else "0.00") if single else None,
        "revenue_by_currency": by_currency,
    }
    if orders_by_currency is not None:
        # Decimal division keeps 28 significant digits before rounding to cents: exact.
        aov = {
            c: money_text(units_to_money(units_by_currency[c]) / orders_by_currency[c])
            for c in currencies
        }
        only = aov[currencies[0]] if currencies else None
        out["average_order_value"] = only if single else None
        out["average_order_value_by_currency"] = aov
    return out


def _known_orders(data: AccountData) -> list[int]:
    # Imported history tells two instants: its first and its last order.
    return [] if data.history is None else [data.history[1], data.history[2]]


def account_row(
    data: AccountData, directory: DirectoryRow, to_ms: int, factor_scaled: int
) -> dict[str, Any]:
    """One entry of `accounts` in `storepulse accounts report --json`."""
    sessions = {s for _, _, s in data.pairs}
    users = {u for _, u, _ in data.pairs if u}
    converted = {o.session_id for o in data.orders} & sessions
    ordering_users = {o.user_id for o in data.orders if o.user_id}
    revenue: dict[str, int] = {}
    orders: dict[str, int] = {}
    for o in data.orders:
        revenue[o.currency] = revenue.get(o.currency, 0) + o.units
        orders[o.currency] = orders.get(o.currency, 0) + 1
    before = [t for t in _known_orders(data) if t < to_ms]
    if data.first_tracked_ms is not None and data.first_tracked_ms < to_ms:
        before.append(data.first_tracked_ms)
    if data.last_before_to is not None:
        before.append(data.last_before_to[0])
    risky = False
    if data.before_to >= 3 and data.last_before_to is not None:
        last, m2 = data.last_before_to
        start = None if m2 is None else risk_start_ms(last, m2, factor_scaled)
        risky = start is not None and to_ms >= start
    row: dict[str, Any] = {
        "account_id": data.account_id,
        "name": directory.name,
        "tier": directory.tier,
        "sales_rep": directory.sales_rep,
        "sessions": len(sessions),
        "converted_sessions": len(converted),
        "conversion_rate": ratio(len(converted), len(sessions)),
        "active_users": len(users),
        "ordering_users": len(ordering_users),
        "usage_rate": ratio(len(ordering_users), len(users)),
        "orders": len(data.orders),
    }
    row |= money_fields(revenue, orders)
    row["first_order_at"] = None if not before else format_ts(min(before))
    row["last_order_at"] = None if not before else format_ts(max(before))
    row["at_risk"] = risky
    return row


def rank_key(row: Mapping[str, Any], key: SortKey, currency: str | None) -> tuple[int, Any]:
    """The descending sort value of a row: (0, value), or (1, None) for a null (nulls last).

    Revenue ranks by the revenue in `currency` (the range's main one, docs/semantics.md).
    """
    if key == "revenue":
        shown = row["revenue_by_currency"].get(currency) if currency else None
        return 0, Decimal(shown) if shown is not None else Decimal(0)
    value = row[key]
    return (1, None) if value is None else (0, value)


def sort_rows(
    rows: Iterable[dict[str, Any]], key: SortKey, currency: str | None
) -> list[dict[str, Any]]:
    """Rows descending by key, nulls last, ties by account_id ascending."""
    ordered = sorted(rows, key=lambda r: r["account_id"])
    valued = [r for r in ordered if rank_key(r, key, currency)[0] == 0]
    nulls = [r for r in ordered if rank_key(r, key, currency)[0] == 1]
    valued.sort(key=lambda r: rank_key(r, key, currency)[1], reverse=True)
    return valued + nulls


def main_currency(units_by_currency: Mapping[str, int]) -> str | None:
    """The currency revenue ranks by: the one with the most revenue units (ties: its code)."""
    if not units_by_currency:
        return None
    return min(units_by_currency, key=lambda c: (-units_by_currency[c], c))


def growth(now: int, before: int) -> float | None:
    """now / before - 1; None when before is 0 (in Decimal: the quotient of integers)."""
    return None if before == 0 else float(Decimal(now) / Decimal(before)) - 1


@dataclass
class RepTally:
    """One sales rep's (or the null row's) figures, summed over its accounts."""

    sales_rep: str | None
    accounts: int = 0
    active: int = 0
    ordering: int = 0
    new: int = 0
    at_risk: int = 0
    orders: int = 0
    revenue: dict[str, int] = field(default_factory=dict)
    revenue_before: dict[str, int] = field(default_factory=dict)


def rep_row(tally: RepTally) -> dict[str, Any]:
    """One entry of `reps` in `storepulse accounts reps --json`."""
    row: dict[str, Any] = {
        "sales_rep": tally.sales_rep,
        "accounts": tally.accounts,
        "active_accounts": tally.active,
        "ordering_accounts": tally.ordering,
        "new_accounts": tally.new,
        "at_risk_accounts": tally.at_risk,
        "orders": tally.orders,
    }
    row |= money_fields(tally.revenue)
    both = sorted(set(tally.revenue) | set(tally.revenue_before))
    by_currency = {c: growth(tally.revenue.get(c, 0), tally.revenue_before.get(c, 0)) for c in both}
    row["revenue_growth"] = by_currency[both[0]] if len(both) == 1 else None
    row["revenue_growth_by_currency"] = by_currency
    return row


def sort_reps(tallies: Iterable[RepTally], currency: str | None) -> list[RepTally]:
    """By revenue (in the main currency) descending, ties by sales_rep, the null row last."""
    named = sorted((t for t in tallies if t.sales_rep is not None), key=lambda t: t.sales_rep or "")
    named.sort(key=lambda t: t.revenue.get(currency, 0) if currency else 0, reverse=True)
    return named
