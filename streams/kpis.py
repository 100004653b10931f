"""Pure KPI math: funnel counts from bucket fields, and the KPI record built from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from streams.funnel import units_to_money

__all__ = ["Dimension", "FunnelCounts", "group_counts", "iso", "kpi_record", "ratio"]

Dimension = Literal["channel", "device", "country"]
_CENT = Decimal("0.01")


@dataclass
class FunnelCounts:
    """Sessions per stage, orders and revenue (ten-thousandths) per currency."""

    sessions: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    revenue_units: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, name: str, value: int) -> None:
        target = {"s": self.sessions, "o": self.orders, "r": self.revenue_units}[kind]
        target[name] = target.get(name, 0) + value


def group_counts(fields: Mapping[str, int], by: Dimension | None = None) -> dict[str, FunnelCounts]:
    """Counts per value of one dimension ("all" when by is None) from summed bucket fields.

    Field names (see streams/apply_batch.lua): ``s|stage|channel|device``, ``sg|stage|country``,
    ``o|currency|channel|device``, ``og|currency|country``, ``r|...``, ``rg|...``.
    """
    groups: dict[str, FunnelCounts] = {}
    for name, value in fields.items():
        kind, _, rest = name.partition("|")
        if by == "country":
            if kind not in ("sg", "og", "rg"):
                continue
            what, _, group = rest.rpartition("|")
            kind = kind[0]
        else:
            if kind not in ("s", "o", "r"):
                continue
            what, channel, device = rest.rsplit("|", 2)
            group = {"channel": channel, "device": device, None: "all"}[by]
        groups.setdefault(group, FunnelCounts()).add(kind, what, value)
    return groups


def ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _complement(numerator: int, denominator: int) -> float | None:
    r = ratio(numerator, denominator)
    return None if r is None else 1 - r


def _money(units: int) -> str:
    return str(units_to_money(units).quantize(_CENT, rounding=ROUND_HALF_EVEN))


def kpi_record(counts: FunnelCounts, stages: Sequence[str]) -> dict[str, Any]:
    """The KPI keys of `storepulse kpis --json` from "sessions" on.

    Revenue and average order value add up one currency only: with several currencies they are
    null and revenue_by_currency / average_order_value_by_currency carry the figures.
    """
    sessions = {stage: counts.sessions.get(stage, 0) for stage in stages}
    orders = sum(counts.orders.values())
    currencies = sorted(c for c, n in counts.orders.items() if n)
    by_currency = {c: _money(counts.revenue_units.get(c, 0)) for c in currencies}
    # Decimal division keeps 28 significant digits before rounding to cents: exact for money.
    aov_by_currency = {
        c: str(
            (units_to_money(counts.revenue_units.get(c, 0)) / counts.orders[c]).quantize(
                _CENT, rounding=ROUND_HALF_EVEN
            )
        )
        for c in currencies
    }
    single = len(currencies) <= 1
    revenue = (by_currency[currencies[0]] if currencies else "0.00") if single else None
    aov = (aov_by_currency[currencies[0]] if currencies else None) if single else None
    visit, cart, purchase = sessions[stages[0]], sessions[stages[1]], sessions[stages[-1]]
    return {
        "sessions": sessions,
        "orders": orders,
        "revenue": revenue,
        "conversion_rate": ratio(purchase, visit),
        "cart_abandonment_rate": _complement(purchase, cart),
        "step_dropoff": {
            stages[k]: _complement(sessions[stages[k + 1]], sessions[stages[k]])
            for k in range(1, len(stages) - 1)
        },
        "average_order_value": aov,
        "revenue_by_currency": by_currency,
        "average_order_value_by_currency": aov_by_currency,
    }


def iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
