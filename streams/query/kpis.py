"""KPI reports over a range of event-time buckets, as JSON-ready dicts and as a text table."""

from __future__ import annotations

from typing import Any

from streams.contract.kpis import Dimension, FunnelCounts, kpi_record
from streams.contract.times import iso
from streams.settings import Settings
from streams.store.funnel import FunnelStore
from streams.store.keys import bucket_counts

__all__ = ["kpi_report", "render_table"]


async def kpi_report(
    store: FunnelStore, settings: Settings, from_s: int, to_s: int, by: Dimension | None = None
) -> dict[str, Any]:
    """The exact KPIs of buckets b with from_s <= b < to_s (`storepulse kpis --json`)."""
    sums = await store.bucket_sums(from_s, to_s)
    head: dict[str, Any] = {
        "from": iso(from_s),
        "to": iso(to_s),
        "bucket_seconds": settings.bucket_seconds,
    }
    groups = bucket_counts(sums.fields, by)
    if by is None:
        return head | kpi_record(groups.get("all", FunnelCounts()), settings.stages)
    return head | {
        "by": by,
        "groups": {name: kpi_record(groups[name], settings.stages) for name in sorted(groups)},
    }


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


def _money_cell(group: dict[str, Any]) -> str:
    if group["revenue"] is not None:
        return str(group["revenue"])
    return " ".join(f"{v} {c}" for c, v in group["revenue_by_currency"].items())


def _aov_cell(group: dict[str, Any]) -> str:
    if group["average_order_value"] is not None:
        return str(group["average_order_value"])
    by_currency = group["average_order_value_by_currency"]
    return " ".join(f"{v} {c}" for c, v in by_currency.items()) or "-"
