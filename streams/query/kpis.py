"""KPI reports over a range of event-time buckets, as JSON-ready dicts and as a text table."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.contract.kpis import Dimension, FunnelCounts, SessionCounts, kpi_record, session_record
from streams.contract.times import iso
from streams.settings import Settings
from streams.store.customers import CustomerStore
from streams.store.funnel import FunnelStore
from streams.store.keys import bucket_counts
from streams.store.session_keys import session_counts

__all__ = ["kpi_report", "render_table"]


async def kpi_report(
    store: FunnelStore,
    settings: Settings,
    from_s: int,
    to_s: int,
    by: Dimension | None = None,
    recoveries: FunnelStore | None = None,
) -> dict[str, Any]:
    """The exact KPIs of buckets b with from_s <= b < to_s (`storepulse kpis --json`).

    Ended sessions and abandoned carts come from the session worker's buckets, recoveries from
    the customer stage's (`recoveries`: the same bucket grid, on the customer topic's
    partitions).
    """
    if recoveries is None:
        recoveries = CustomerStore(store.client, settings)
    sums, recovered = await asyncio.gather(
        store.bucket_sums(from_s, to_s), recoveries.bucket_sums(from_s, to_s)
    )
    head: dict[str, Any] = {
        "from": iso(from_s),
        "to": iso(to_s),
        "bucket_seconds": settings.bucket_seconds,
    }
    groups = bucket_counts(sums.fields, by)
    sessions = session_counts({**sums.fields, **recovered.fields}, by)

    def record(name: str) -> dict[str, Any]:
        funnel = kpi_record(groups.get(name, FunnelCounts()), settings.stages)
        return funnel | session_record(sessions.get(name, SessionCounts()))

    if by is None:
        return head | record("all")
    names = sorted(set(groups) | set(sessions))
    return head | {"by": by, "groups": {name: record(name) for name in names}}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def render_table(report: dict[str, Any], stages: tuple[str, ...]) -> str:
    """A readable table of a report: one column per group (or one for everything)."""
    groups = report.get("groups") or {"all": report}
    names = list(groups)
    rows: list[tuple[str, list[str]]] = []
    for stage in stages:
        rows.append((f"sessions {stage}", [str(g["sessions"][stage]) for g in groups.values()]))
    rows.append(("orders", [str(g["orders"]) for g in groups.values()]))
    rows.append(("revenue", [_money_cell(g) for g in groups.values()]))
    rows.append(("conversion rate", [_pct(g["conversion_rate"]) for g in groups.values()]))
    rows.append(("cart abandonment", [_pct(g["cart_abandonment_rate"]) for g in groups.values()]))
    for step in stages[1:-1]:
        rows.append((f"drop-off {step}", [_pct(g["step_dropoff"][step]) for g in groups.values()]))
    rows.append(("avg order value", [_aov_cell(g) for g in groups.values()]))
    cells = list(groups.values())
    rows.append(("ended sessions", [str(g["ended_sessions"]) for g in cells]))
    rows.append(("bounce rate", [_pct(g["bounce_rate"]) for g in cells]))
    rows.append(("avg session (s)", [_number(g["average_session_seconds"]) for g in cells]))
    rows.append(("pages per session", [_number(g["pages_per_session"]) for g in cells]))
    rows.append(("abandoned carts", [str(g["abandoned_carts"]) for g in cells]))
    rows.append(("value at risk", [_amount(g, "abandoned_value") for g in cells]))
    rows.append(("recovered carts", [str(g["recovered_carts"]) for g in cells]))
    rows.append(("recovered revenue", [_amount(g, "recovered_revenue") for g in cells]))
    rows.append(("cart recovery rate", [_pct(g["cart_recovery_rate"]) for g in cells]))
    width = max(len(label) for label, _ in rows) + 2
    cols = [max(len(n), *(len(cells[i]) for _, cells in rows)) + 2 for i, n in enumerate(names)]
    lines = [
        f"KPIs {report['from']} .. {report['to']} (buckets of {report['bucket_seconds']}s)",
        "".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols, strict=True)),
    ]
    for label, cells in rows:
        lines.append(
            label.ljust(width) + "".join(v.rjust(c) for v, c in zip(cells, cols, strict=True))
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _amount(group: dict[str, Any], key: str) -> str:
    if group[key] is not None:
        return str(group[key])
    return " ".join(f"{v} {c}" for c, v in group[f"{key}_by_currency"].items())


def _money_cell(group: dict[str, Any]) -> str:
    if group["revenue"] is not None:
        return str(group["revenue"])
    return " ".join(f"{v} {c}" for c, v in group["revenue_by_currency"].items())


def _aov_cell(group: dict[str, Any]) -> str:
    if group["average_order_value"] is not None:
        return str(group["average_order_value"])
    by_currency = group["average_order_value_by_currency"]
    return " ".join(f"{v} {c}" for c, v in by_currency.items()) or "-"
