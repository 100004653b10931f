"""The board's history from the exporter's own event-time buckets: KPI lines, thresholds, segments.

The same JSON as the exporter builds from Prometheus (streams.exporter.history), for an exporter
that has no Prometheus URL, and the segment table of both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streams.contract.alerting import ABANDONMENT, CONVERSION, DROPOFF, Threshold
from streams.contract.kpis import funnel_ratios
from streams.contract.money import MONEY_SCALE
from streams.contract.times import iso
from streams.settings import Settings
from streams.store.funnel import FunnelStore
from streams.store.keys import BUCKET_ORDERS, BUCKET_REVENUE, BUCKET_SESSIONS, SEP

__all__ = [
    "KPI_WINDOW_S",
    "ORDERS_WINDOW_S",
    "RANGES",
    "Grid",
    "bucket_history",
    "history_step",
    "kpi_charts",
    "segment_history",
    "segment_rows",
]

RANGES = {"1h": 3_600, "6h": 21_600, "24h": 86_400}
# Each point of a KPI line is the ratio over the 15 minutes ending there (the alerts' window);
# orders and revenue per minute are averaged over 5 minutes (the exporter's 5m window gauges).
KPI_WINDOW_S = 900
ORDERS_WINDOW_S = 300
# The baseline over buckets, as the rules choose it: the hour around the same time yesterday,
# else the 6 hours before the window, else none (the floors). Redis keeps 7 days, so the
# week-old hour the rules also average in is at the edge of its retention: not used here.
_DAY_S = 86_400
_HOUR_S = 3_600
_RECENT_S = 6 * 3_600
# About 360 points a line at most: a phone is 360 pixels wide.
_MAX_POINTS = 360


def history_step(range_s: int, bucket_seconds: int) -> int:
    """Seconds between points: whole buckets, at most _MAX_POINTS points in the range."""
    buckets = max(1, -(-range_s // (bucket_seconds * _MAX_POINTS)))
    return buckets * bucket_seconds


class Grid:
    """Per-bucket counts under keys (a stage, a segment's stage, orders), as prefix sums, so
    any bucket-aligned range sums in O(1)."""

    def __init__(self, first_s: int, last_s: int, bucket_seconds: int) -> None:
        self.first = first_s // bucket_seconds * bucket_seconds
        self.bucket = bucket_seconds
        self.n = max(0, (last_s - self.first) // bucket_seconds)
        self._cum: dict[Any, list[int]] = {}
        self._rows: dict[Any, list[int]] = {}

    def add(self, key: Any, start_s: int, value: int) -> None:
        i = (start_s - self.first) // self.bucket
        if 0 <= i < self.n:
            self._rows.setdefault(key, [0] * self.n)[i] += value
            self._cum.pop(key, None)

    def currencies(self) -> list[str]:
        return sorted(k[1] for k in self._rows if k[0] == "r")

    def segments(self) -> list[tuple[str, str]]:
        return sorted({(k[2], k[3]) for k in self._rows if k[0] == "s" and len(k) == 4})

    def sum(self, key: Any, from_s: int, to_s: int) -> int:
        """Counts of key in the buckets b with from_s <= b < to_s (inside the grid)."""
        row = self._rows.get(key)
        if row is None or to_s <= from_s:
            return 0
        cum = self._cum.get(key)
        if cum is None:
            cum = [0]
            for v in row:
                cum.append(cum[-1] + v)
            self._cum[key] = cum

        def index(t: int) -> int:
            return min(self.n, max(0, -(-(t - self.first) // self.bucket)))

        return cum[index(to_s)] - cum[index(from_s)]


def _fill(grid: Grid, rows: Mapping[int, Mapping[str, int]]) -> None:
    """Keys: ("s", stage), ("s", stage, channel, device), ("o",), ("r", currency)."""
    for start, fields in rows.items():
        for name, value in fields.items():
            kind, _, rest = name.partition(SEP)
            if kind == BUCKET_SESSIONS:
                stage, channel, device = rest.rsplit(SEP, 2)
                grid.add(("s", stage), start, value)
                grid.add(("s", stage, channel, device), start, value)
            elif kind == BUCKET_ORDERS:
                grid.add(("o",), start, value)
            elif kind == BUCKET_REVENUE:
                currency = rest.split(SEP, 1)[0]
                grid.add(("r", currency), start, value)


def _sessions(
    grid: Grid, stages: Sequence[str], seg: tuple[str, ...], lo: int, hi: int
) -> dict[str, int]:
    return {stage: grid.sum(("s", stage, *seg), lo, hi) for stage in stages}


def _baseline(
    grid: Grid, stages: Sequence[str], seg: tuple[str, ...], end_s: int
) -> dict[str, int] | None:
    """Sessions per stage of the baseline of the window ending at end_s: the hour around the
    same time yesterday, else the 6 h before the window; None without either."""
    middle = end_s - KPI_WINDOW_S // 2 - _DAY_S
    day = _sessions(grid, stages, seg, middle - _HOUR_S // 2, middle + _HOUR_S // 2)
    if day[stages[0]]:
        return day
    start = end_s - KPI_WINDOW_S
    recent = _sessions(grid, stages, seg, start - _RECENT_S, start)
    return recent if recent[stages[0]] else None


def _ratios(sessions: Mapping[str, int] | None, stages: Sequence[str], n: int) -> dict[str, Any]:
    if sessions is None:
        return {"conversion": None, "abandonment": None, "dropoff": {}}
    r = funnel_ratios(sessions, stages, n)
    return {"conversion": r.conversion, "abandonment": r.abandonment, "dropoff": r.dropoff}


def _line(
    label: str, alert: str, points: list[list[Any]], threshold: list[list[Any]]
) -> dict[str, Any]:
    return {"label": label, "alert": alert, "points": points, "threshold": threshold, "firing": []}


def kpi_charts(grid: Grid, settings: Settings, ends: Sequence[int]) -> dict[str, Any]:
    """The board's lines at each window end: conversion, abandonment and each step's drop-off
    over 15 minutes with their thresholds; orders and revenue per minute over 5 minutes."""
    stages, n = settings.stages, settings.min_sample
    lines: dict[str, tuple[list[list[Any]], list[list[Any]]]] = {}

    def put(name: str, t: int, value: float | None, base: float | None, rule: Threshold) -> None:
        points, threshold = lines.setdefault(name, ([], []))
        points.append([t, value])
        # As the rules record it: from the baseline, else the floor where the KPI has a value.
        threshold.append([t, rule.of(base) if base is not None or value is not None else None])

    steps = stages[1:-1]
    for e in ends:
        now = _ratios(_sessions(grid, stages, (), e - KPI_WINDOW_S, e), stages, n)
        base = _ratios(_baseline(grid, stages, (), e), stages, n)
        put("conversion", e, now["conversion"], base["conversion"], CONVERSION)
        put("cart_abandonment", e, now["abandonment"], base["abandonment"], ABANDONMENT)
        for step in steps:
            put(f"dropoff:{step}", e, now["dropoff"][step], base["dropoff"].get(step), DROPOFF)
    minutes = ORDERS_WINDOW_S / 60
    orders = [[e, grid.sum(("o",), e - ORDERS_WINDOW_S, e) / minutes] for e in ends]
    revenue = {
        c: [
            [e, round(grid.sum(("r", c), e - ORDERS_WINDOW_S, e) / MONEY_SCALE / minutes, 2)]
            for e in ends
        ]
        for c in grid.currencies()
    }
    return {
        "conversion": _line("Conversion", "ConversionDrop", *lines["conversion"]),
        "cart_abandonment": _line(
            "Cart abandonment", "CartAbandonmentSpike", *lines["cart_abandonment"]
        ),
        "dropoff": {
            step: _line(f"Drop-off at {step}", "CheckoutStepFailing", *lines[f"dropoff:{step}"])
            for step in steps
        },
        "orders_per_minute": {"label": "Orders per minute", "points": orders},
        "revenue_per_minute": {"label": "Revenue per minute", "by_currency": revenue},
    }


def _score(now: Mapping[str, Any], base: Mapping[str, Any]) -> float | None:
    """How far a segment is off, as the share of the way from its baseline to the alert
    threshold (1: at the threshold): the worse of abandonment and conversion."""
    scores = []
    if now["abandonment"] is not None and base["abandonment"] is not None:
        gap = ABANDONMENT.of(base["abandonment"]) - base["abandonment"]
        if gap > 0:
            scores.append((now["abandonment"] - base["abandonment"]) / gap)
    if now["conversion"] is not None and base["conversion"]:
        gap = base["conversion"] - CONVERSION.of(base["conversion"])
        if gap > 0:
            scores.append((base["conversion"] - now["conversion"]) / gap)
    return round(max(scores), 3) if scores else None


def segment_rows(
    grid: Grid, settings: Settings, end_s: int, segments: Iterable[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Channel x device: conversion and abandonment over the 15 minutes ending at end_s against
    their baselines, the segment furthest towards its alert thresholds first."""
    stages, n = settings.stages, settings.min_sample
    rows = []
    for channel, device in segments:
        seg = (channel, device)
        sessions = _sessions(grid, stages, seg, end_s - KPI_WINDOW_S, end_s)
        now = _ratios(sessions, stages, n)
        base = _ratios(_baseline(grid, stages, seg, end_s), stages, n)
        rows.append(
            {
                "channel": channel,
                "device": device,
                "visits": sessions[stages[0]],
                "carts": sessions[stages[1]],
                "conversion": now["conversion"],
                "conversion_baseline": base["conversion"],
                "abandonment": now["abandonment"],
                "abandonment_baseline": base["abandonment"],
                "score": _score(now, base),
            }
        )
    # Worst first; segments too small to tell (no score) last, the busiest of them first.
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), -r["visits"]))
    return rows


def _segments(settings: Settings, grid: Grid) -> list[tuple[str, str]]:
    known = [(c, d) for c in settings.channels for d in settings.devices]
    return known + sorted(set(grid.segments()) - set(known))


async def bucket_history(
    store: FunnelStore, settings: Settings, end_s: int, range_s: int
) -> dict[str, Any]:
    """/api/history from the buckets: lines ending at end_s (the newest complete bucket's end)
    over range_s, and the segment table at end_s. Reads range + a day and 45 minutes."""
    b = settings.bucket_seconds
    step = history_step(range_s, b)
    ends = list(range(end_s - (range_s // step - 1) * step, end_s + 1, step))
    first = ends[0] - KPI_WINDOW_S - _DAY_S - _HOUR_S
    grid = Grid(first, end_s, b)
    _fill(grid, await store.bucket_rows(grid.first, end_s))
    return {
        "source": "buckets",
        "from": iso(ends[0]),
        "to": iso(end_s),
        "step_seconds": step,
        "window": f"{KPI_WINDOW_S // 60}m",
        "charts": kpi_charts(grid, settings, ends),
        "segments": segment_rows(grid, settings, end_s, _segments(settings, grid)),
    }


async def segment_history(
    store: FunnelStore, settings: Settings, end_s: int
) -> list[dict[str, Any]]:
    """The segment table at end_s alone: reads the 6 h 15 min before it and yesterday's hour."""
    start = end_s - KPI_WINDOW_S
    middle = end_s - KPI_WINDOW_S // 2 - _DAY_S
    grid = Grid(middle - _HOUR_S, end_s, settings.bucket_seconds)
    _fill(grid, await store.bucket_rows(start - _RECENT_S, end_s))
    _fill(grid, await store.bucket_rows(middle - _HOUR_S // 2, middle + _HOUR_S // 2))
    return segment_rows(grid, settings, end_s, _segments(settings, grid))
