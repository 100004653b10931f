"""Customer reports and cohorts over calendar periods, as JSON-ready dicts and text tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from streams.contract.kpis import ratio
from streams.contract.money import money_text, units_to_money
from streams.contract.periods import Period, next_start, period_start, previous_start, starts_in
from streams.contract.times import iso
from streams.query.window import newest_complete_end
from streams.settings import Settings
from streams.store import customer_keys as ck
from streams.store.customers import CohortSums, CustomerStore, PeriodSums
from streams.store.funnel import FunnelStore

__all__ = [
    "MAX_PERIODS",
    "cohort_report",
    "current_start",
    "customer_report",
    "render_cohorts",
    "render_report",
]

# One report reads 5 values per period and partition in one pipeline: 1,000 periods (six weeks
# of hours, three years of days) on 6 partitions is 30,000 commands, the most one may cost.
MAX_PERIODS = 1_000
_DAY = 86_400


def _money(units: int) -> str:
    return money_text(units_to_money(units))


def _per(units: int, n: int) -> str | None:
    # Decimal division keeps 28 significant digits before rounding to cents: exact for money.
    return None if n == 0 else money_text(units_to_money(units) / Decimal(n))


def _growth(now: int, before: int) -> float | None:
    # In Decimal: ten-thousandths or cents, the quotient is the same number.
    return None if before == 0 else float(Decimal(now) / Decimal(before)) - 1


def _revenue(counts: Mapping[str, int]) -> dict[str, int]:
    prefix = ck.COUNT_REVENUE + ck.SEP
    return {k[len(prefix) :]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def _segment(counts: Mapping[str, int], kind: str, known: Sequence[str]) -> dict[str, int]:
    prefix = kind + ck.SEP
    seen = {k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)}
    out = {name: seen.pop(name, 0) for name in known}
    out.update({name: n for name, n in sorted(seen.items()) if n})
    return out


def customer_row(
    period: Period,
    start: int,
    now: PeriodSums,
    before: PeriodSums,
    anonymous: int,
    settings: Settings,
) -> dict[str, Any]:
    """One row of `storepulse customers report --json` (docs/semantics.md, "Customers")."""
    orders = now.counts.get(ck.COUNT_ORDERS, 0)
    orders_before = before.counts.get(ck.COUNT_ORDERS, 0)
    revenue, revenue_before = _revenue(now.counts), _revenue(before.counts)
    single = len(revenue) <= 1
    units = next(iter(revenue.values()), 0)
    both = sorted(set(revenue) | set(revenue_before))
    retention = ratio(now.retained, before.ordering)
    return {
        "start": iso(start),
        "end": iso(next_start(period, start)),
        "active_customers": now.active,
        "ordering_customers": now.ordering,
        "new_customers": now.new,
        "new_customers_by_channel": _segment(now.counts, ck.COUNT_NEW_CHANNEL, settings.channels),
        "new_customers_by_device": _segment(now.counts, ck.COUNT_NEW_DEVICE, settings.devices),
        "returning_customers": now.ordering - now.new,
        "repeat_customers": now.counts.get(ck.COUNT_REPEAT, 0),
        "retained_customers": now.retained,
        "retention_rate": retention,
        "churn_rate": None if retention is None else 1 - retention,
        "orders": orders,
        "anonymous_orders": anonymous,
        "revenue": _money(units) if single else None,
        "orders_per_customer": ratio(orders, now.ordering),
        "revenue_per_customer": _per(units, now.ordering) if single else None,
        "order_growth": _growth(orders, orders_before),
        "revenue_growth": (
            _growth(revenue.get(both[0], 0), revenue_before.get(both[0], 0))
            if len(both) == 1
            else None
        ),
        "revenue_by_currency": {c: _money(u) for c, u in revenue.items()},
        "revenue_per_customer_by_currency": {c: _per(u, now.ordering) for c, u in revenue.items()},
        "revenue_growth_by_currency": {
            c: _growth(revenue.get(c, 0), revenue_before.get(c, 0)) for c in both
        },
    }


def _check_range(period: Period, from_s: int, to_s: int) -> list[int]:
    if to_s <= from_s:
        raise ValueError("to must be after from")
    starts = []
    for start in starts_in(period, from_s, to_s):
        starts.append(start)
        if len(starts) > MAX_PERIODS:
            raise ValueError(f"range over {MAX_PERIODS} {period}s; ask for a shorter one")
    return starts


async def customer_report(
    customers: CustomerStore,
    funnel: FunnelStore,
    settings: Settings,
    period: Period,
    from_s: int,
    to_s: int,
) -> dict[str, Any]:
    """The customer KPIs of the periods whose start is in [from_s, to_s), in 3 round trips."""
    starts = _check_range(period, from_s, to_s)
    head: dict[str, Any] = {"period": period, "from": iso(from_s), "to": iso(to_s), "rows": []}
    if not starts:
        return head
    cparts, fparts = await asyncio.gather(customers.partitions(), funnel.partitions())
    first, end = starts[0], next_start(period, starts[-1])
    days = list(range(period_start("day", first), end, _DAY))
    # P-1 of the first row is read too, even before `from` (retention and growth need it).
    sums, hours = await asyncio.gather(
        customers.period_sums(cparts, period, [previous_start(period, first), *starts]),
        customers.anonymous_orders(fparts, days),
    )
    rows = []
    before = sums[previous_start(period, first)]
    for start in starts:
        stop = next_start(period, start)
        anonymous = sum(n for hour, n in hours.items() if start <= hour < stop)
        rows.append(customer_row(period, start, sums[start], before, anonymous, settings))
        before = sums[start]
    head["rows"] = rows
    return head


def cohort_record(period: Period, start: int, sums: CohortSums, to_s: int) -> dict[str, Any]:
    """One cohort of `storepulse customers cohorts --json`: retention and historic CLV."""
    size = sums.customers
    retention: list[float] = []
    cumulative: dict[str, int] = {}
    by_currency: dict[str, list[str]] = {}
    # The currencies of the cohort's orders in the listed periods (values moved away leave 0).
    currencies = sorted(
        {
            parts[2]
            for name, n in sums.values.items()
            if n > 0 and (parts := name.split(ck.SEP))[0] == ck.VALUE_ORDERS
            if int(parts[1]) < to_s
        }
    )
    q = start
    while q < to_s:
        ordering = sums.values.get(f"{ck.VALUE_CUSTOMERS}{ck.SEP}{q}", 0)
        retention.append(ordering / size)  # 1.0 at k = 0: every member ordered then
        for c in currencies:
            units = sums.values.get(f"{ck.VALUE_REVENUE}{ck.SEP}{q}{ck.SEP}{c}", 0)
            cumulative[c] = cumulative.get(c, 0) + units
            by_currency.setdefault(c, []).append(_per(cumulative[c], size) or "0.00")
        q = next_start(period, q)
    single = len(currencies) <= 1
    return {
        "start": iso(start),
        "customers": size,
        "retention": retention,
        "revenue_per_customer": (
            (by_currency[currencies[0]] if currencies else ["0.00"] * len(retention))
            if single
            else None
        ),
        "revenue_per_customer_by_currency": by_currency,
    }


async def cohort_report(
    customers: CustomerStore, settings: Settings, period: Period, from_s: int, to_s: int
) -> dict[str, Any]:
    """The cohorts starting in [from_s, to_s) with a customer, each to the last period < to."""
    if period == "hour":
        raise ValueError("cohorts are by day, week or month")
    starts = _check_range(period, from_s, to_s)
    parts = await customers.partitions()
    sums = await customers.cohort_sums(parts, period, starts) if starts else {}
    return {
        "period": period,
        "from": iso(from_s),
        "to": iso(to_s),
        "cohorts": [
            cohort_record(period, start, sums[start], to_s)
            for start in starts
            if sums[start].customers > 0
        ],
    }


async def current_start(
    funnel: FunnelStore, settings: Settings, period: Period, clock: Callable[[], float] = time.time
) -> int:
    """Start of the current period: the one holding the newest complete bucket (now, in event
    time, docs/semantics.md); the customer gauges and /api/customers?last= end with it."""
    end = await newest_complete_end(funnel, settings, clock)
    return period_start(period, end - 1)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _money_cell(row: Mapping[str, Any], key: str) -> str:
    if row[key] is not None:
        return str(row[key])
    by_currency = row[f"{key}_by_currency"]
    return " ".join(f"{v} {c}" for c, v in by_currency.items() if v is not None) or "-"


_COLUMNS = (
    ("active", "active_customers"),
    ("ordering", "ordering_customers"),
    ("new", "new_customers"),
    ("returning", "returning_customers"),
    ("repeat", "repeat_customers"),
    ("retained", "retained_customers"),
    ("retention", "retention_rate"),
    ("orders", "orders"),
    ("anon.", "anonymous_orders"),
    ("revenue", "revenue"),
    ("ord/cust", "orders_per_customer"),
    ("rev/cust", "revenue_per_customer"),
)


def render_report(report: Mapping[str, Any]) -> str:
    """A readable table: one line per period."""
    header = ["start", *(name for name, _ in _COLUMNS)]
    lines = [header]
    for row in report["rows"]:
        cells = [row["start"]]
        for _, key in _COLUMNS:
            if key in {"revenue", "revenue_per_customer"}:
                cells.append(_money_cell(row, key))
            elif key == "retention_rate":
                cells.append(_pct(row[key]))
            else:
                cells.append(_cell(row[key]))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    title = f"Customers by {report['period']}, {report['from']} .. {report['to']}"
    body = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join([title, *body])


def render_cohorts(report: Mapping[str, Any]) -> str:
    """The retention triangle: one line per cohort, one column per period since its start."""
    lines = [f"Cohorts by {report['period']}, {report['from']} .. {report['to']}"]
    for cohort in report["cohorts"]:
        cells = " ".join(f"{r * 100:5.1f}%" for r in cohort["retention"])
        lines.append(f"{cohort['start']}  {cohort['customers']:>8}  {cells}")
    if len(lines) == 1:
        lines.append("no cohort starts in this range")
    return "\n".join(lines)
