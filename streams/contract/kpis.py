"""Pure KPI math: funnel counts of a range, the ratios on them, and the KPI record of reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.contract.money import money_text, units_to_money

__all__ = [
    "Dimension",
    "FunnelCounts",
    "FunnelRatios",
    "SessionCounts",
    "complement",
    "funnel_ratios",
    "kpi_record",
    "ratio",
    "session_record",
]

Dimension = Literal["channel", "device", "country"]


@dataclass
class SessionCounts:
    """Ended-session and cart figures of a range of buckets, both stages summed (money: units)."""

    ended: int = 0
    bounces: int = 0
    session_ms: int = 0
    pages: int = 0
    abandoned: int = 0
    abandoned_units: dict[str, int] = field(default_factory=dict)  # currency -> units
    recovered: int = 0  # in the bucket of the recovering order
    recovered_units: dict[str, int] = field(default_factory=dict)
    recovered_of_abandoned: int = 0  # carts recovered, in the bucket of the cart's end


@dataclass
class FunnelCounts:
    """Sessions per stage, orders and revenue (ten-thousandths) per currency."""

    sessions: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    revenue_units: dict[str, int] = field(default_factory=dict)


def ratio(numerator: int, denominator: int, min_sample: int = 1) -> float | None:
    """numerator / denominator; None when the denominator is below min_sample (or 0)."""
    return None if denominator < max(1, min_sample) else numerator / denominator


def complement(numerator: int, denominator: int, min_sample: int = 1) -> float | None:
    """1 - numerator / denominator, None like ratio()."""
    r = ratio(numerator, denominator, min_sample)
    return None if r is None else 1 - r


@dataclass(frozen=True)
class FunnelRatios:
    """The funnel's ratios: every report and every exported gauge computes them here."""

    conversion: float | None  # purchase / visit
    abandonment: float | None  # 1 - purchase / cart
    dropoff: dict[str, float | None]  # cart and each checkout step: 1 - next stage / this one


def funnel_ratios(
    sessions: Mapping[str, int], stages: Sequence[str], min_sample: int = 1
) -> FunnelRatios:
    """The ratios of sessions per stage; a ratio whose denominator is below min_sample is None."""
    got = [sessions.get(stage, 0) for stage in stages]
    visit, cart, purchase = got[0], got[1], got[-1]
    return FunnelRatios(
        conversion=ratio(purchase, visit, min_sample),
        abandonment=complement(purchase, cart, min_sample),
        dropoff={
            stages[k]: complement(got[k + 1], got[k], min_sample) for k in range(1, len(stages) - 1)
        },
    )


def _money_keys(units: Mapping[str, int]) -> tuple[str | None, dict[str, str]]:
    """One amount (null with several currencies, "0.00" with none) and the amounts by currency.

    Only currencies with an amount count: a figure taken back (a cart that became an order)
    leaves its currency's field at 0, which is no money in that currency.
    """
    by_currency = {c: money_text(units_to_money(units[c])) for c in sorted(units) if units[c]}
    if len(by_currency) > 1:
        return None, by_currency
    return next(iter(by_currency.values()), "0.00"), by_currency


def session_record(counts: SessionCounts) -> dict[str, Any]:
    """The ended-session and cart keys of `storepulse kpis --json` (docs/semantics.md)."""
    n = counts.ended
    abandoned_value, abandoned_by = _money_keys(counts.abandoned_units)
    recovered_revenue, recovered_by = _money_keys(counts.recovered_units)
    return {
        "ended_sessions": n,
        "bounces": counts.bounces,
        "bounce_rate": ratio(counts.bounces, n),
        "average_session_seconds": None if n == 0 else counts.session_ms / 1000 / n,
        "pages_per_session": ratio(counts.pages, n),
        "abandoned_carts": counts.abandoned,
        "abandoned_value": abandoned_value,
        "recovered_carts": counts.recovered,
        "recovered_revenue": recovered_revenue,
        "cart_recovery_rate": ratio(counts.recovered_of_abandoned, counts.abandoned),
        "abandoned_value_by_currency": abandoned_by,
        "recovered_revenue_by_currency": recovered_by,
    }


def kpi_record(counts: FunnelCounts, stages: Sequence[str]) -> dict[str, Any]:
    """The KPI keys of `storepulse kpis --json` from "sessions" on.

    Revenue and average order value add up one currency only: with several currencies they are
    null and revenue_by_currency / average_order_value_by_currency carry the figures.
    """
    sessions = {stage: counts.sessions.get(stage, 0) for stage in stages}
    orders = sum(counts.orders.values())
    currencies = sorted(c for c, n in counts.orders.items() if n)
    by_currency = {
        c: money_text(units_to_money(counts.revenue_units.get(c, 0))) for c in currencies
    }
    # Decimal division keeps 28 significant digits before rounding to cents: exact for money.
    aov_by_currency = {
        c: money_text(units_to_money(counts.revenue_units.get(c, 0)) / counts.orders[c])
        for c in currencies
    }
    single = len(currencies) <= 1
    revenue = (by_currency[currencies[0]] if currencies else "0.00") if single else None
    aov = (aov_by_currency[currencies[0]] if currencies else None) if single else None
    ratios = funnel_ratios(sessions, stages)
    return {
        "sessions": sessions,
        "orders": orders,
        "revenue": revenue,
        "conversion_rate": ratios.conversion,
        "cart_abandonment_rate": ratios.abandonment,
        "step_dropoff": ratios.dropoff,
        "average_order_value": aov,
        "revenue_by_currency": by_currency,
        "average_order_value_by_currency": aov_by_currency,
    }
