"""OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`: the exporter's series."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from storepulse.backtest.simulate import Simulation
from streams.contract.kpis import funnel_ratios

__all__ = [
    "BLOCK_S",
    "EOF",
    "WINDOWS",
    "BlockFiles",
    "CounterEnds",
    "exporter_families",
    "labels_text",
    "number",
]

EOF = "# EOF\n"
WINDOWS = {"5m": 300, "15m": 900, "1h": 3_600}  # the exporter's window gauges
# promtool cuts its import into 2-hour blocks and reads the whole input once per block: one
# file per block reads every sample once (a week in one file would be read 84 times).
BLOCK_S = 7_200

Point = tuple[float, float | int | str]


def number(value: float | int | str) -> str:
    """A value or timestamp as OpenMetrics text (Prometheus' own strings pass through)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(value)  # nan, inf: Go's ParseFloat reads them


def labels_text(labels: Mapping[str, str]) -> str:
    # JSON strings escape quotes, backslashes and newlines as the exposition formats do.
    return ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items())


class BlockFiles:
    """OpenMetrics files under a directory, one per 2-hour block of the samples' times."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[int, TextIO] = {}
        self._headed: dict[int, str] = {}
        self.samples = 0

    def _file(self, block: int, family: str, kind: str) -> TextIO:
        out = self._files.get(block)
        if out is None:
            out = self._files[block] = (self.directory / f"block-{block}.om").open("w")
        if self._headed.get(block) != family:
            out.write(f"# TYPE {family} {kind}\n")
            self._headed[block] = family
        return out

    def family(
        self,
        name: str,
        kind: str,
        series: Iterable[tuple[Mapping[str, str], Sequence[Point]]],
    ) -> int:
        """One metric family; each series' samples in time order (epoch seconds)."""
        sample = f"{name}_total" if kind == "counter" else name
        written = 0
        for labels, points in series:
            prefix = f"{sample}{{{labels_text(labels)}}} "
            i = 0
            while i < len(points):
                block = int(points[i][0]) // BLOCK_S
                j = i
                limit = (block + 1) * BLOCK_S
                while j < len(points) and points[j][0] < limit:
                    j += 1
                out = self._file(block, name, kind)
                out.write("".join(f"{prefix}{number(v)} {number(t)}\n" for t, v in points[i:j]))
                i = j
            written += len(points)
        self.samples += written
        return written

    def close(self) -> list[Path]:
        """End every file; returns them in time order."""
        paths = []
        for block in sorted(self._files):
            out = self._files[block]
            out.write(EOF)
            out.close()
            paths.append(Path(out.name))
        self._files.clear()
        return paths


def _cumulative(
    increments: Sequence[int], times: Sequence[int], end: int | None = None
) -> list[Point]:
    """A counter's samples from its increments per step; with `end`, shifted so that its last
    sample is `end` (the live counter it must run into without a reset)."""
    total = 0 if end is None else end - sum(increments)
    out: list[Point] = [(times[0], total)]
    for t, inc in zip(times[1:], increments, strict=True):
        total += inc
        out.append((t, total))
    return out


@dataclass(frozen=True)
class CounterEnds:
    """The live counters' values the backfilled ones must end at (Redis' totals when the demo
    starts): without them a counter ends at its simulated sum, and a live counter that starts
    elsewhere is a reset, or a jump, in every window over the boundary."""

    funnel: Mapping[tuple[str, str, str], int]  # (stage, channel, device)
    orders: Mapping[tuple[str, str], int]
    revenue_units: Mapping[str, int]  # currency -> ten-thousandths


def exporter_families(
    out: BlockFiles,
    sim: Simulation,
    base: Mapping[str, str],
    window_gauges: bool = False,
    min_sample: int = 20,
    ends: CounterEnds | None = None,
) -> int:
    """The counters the exporter would have served at every step of the simulation (and, for
    the board's history, its window gauges); `base` are the target's labels (job, instance).
    Returns the number of samples written."""
    times = [sim.start_s + j * sim.step_s for j in range(sim.steps + 1)]

    def end(kind: str, key: Any) -> int | None:
        return None if ends is None else getattr(ends, kind).get(key, 0)

    written = out.family(
        "storepulse_funnel_sessions",
        "counter",
        (
            (
                {**base, "stage": stage, "channel": ch, "device": dev},
                _cumulative(row, times, end("funnel", (stage, ch, dev))),
            )
            for stage, rows in zip(sim.stages, sim.reached, strict=True)
            for (ch, dev), row in zip(sim.segments, rows, strict=True)
        ),
    )
    written += out.family(
        "storepulse_orders",
        "counter",
        (
            (
                {**base, "channel": ch, "device": dev},
                _cumulative(row, times, end("orders", (ch, dev))),
            )
            for (ch, dev), row in zip(sim.segments, sim.reached[-1], strict=True)
        ),
    )
    # Cents simulated, ten-thousandths stored: the live counter's units end the series.
    units = None if ends is None else ends.revenue_units.get(sim.currency, 0) // 100
    revenue: list[Point] = [
        (t, int(v) / 100) for t, v in _cumulative(sim.revenue_cents, times, units)
    ]
    written += out.family(
        "storepulse_revenue", "counter", [({**base, "currency": sim.currency}, revenue)]
    )
    if window_gauges:
        written += _gauges(out, sim, base, times, min_sample)
    return written


def _levels(sim: Simulation) -> list[tuple[str, str, list[int]]]:
    """(channel, device, segment indexes) of the gauges' three levels, "all" = not broken down."""
    everything = list(range(len(sim.segments)))
    out = [("all", "all", everything)]
    for ch in dict.fromkeys(c for c, _ in sim.segments):
        out.append((ch, "all", [i for i, (c, _) in enumerate(sim.segments) if c == ch]))
    for dev in dict.fromkeys(d for _, d in sim.segments):
        out.append(("all", dev, [i for i, (_, d) in enumerate(sim.segments) if d == dev]))
    return out


def _gauges(
    out: BlockFiles,
    sim: Simulation,
    base: Mapping[str, str],
    times: Sequence[int],
    min_sample: int,
) -> int:
    """The event-time window gauges: each window ends at the newest complete 60 s bucket."""
    bucket = 60
    if bucket % sim.step_s:
        raise ValueError("window gauges need a step dividing 60 s")
    prefix: list[list[list[int]]] = []  # stage -> level -> cumulative sessions per step
    levels = _levels(sim)
    for rows in sim.reached:
        per_level = []
        for _, _, members in levels:
            acc, cum = 0, [0]
            for i in range(sim.steps):
                acc += sum(rows[m][i] for m in members)
                cum.append(acc)
            per_level.append(cum)
        prefix.append(per_level)
    revenue = [0]
    for cents in sim.revenue_cents:
        revenue.append(revenue[-1] + cents)
    families: dict[str, list[tuple[dict[str, str], list[Point]]]] = {
        "storepulse_window_orders": [],
        "storepulse_window_revenue": [],
        "storepulse_window_sessions": [],
        "storepulse_conversion_ratio": [],
        "storepulse_cart_abandonment_ratio": [],
        "storepulse_checkout_dropoff_ratio": [],
    }
    ends = [(t, (t // bucket * bucket - sim.start_s) // sim.step_s) for t in times]
    purchase = len(sim.stages) - 1
    for window, seconds in WINDOWS.items():
        width = seconds // sim.step_s
        orders: list[Point] = []
        money: list[Point] = []
        for t, e in ends:
            lo, hi = max(0, e - width), max(0, e)
            orders.append((t, prefix[purchase][0][hi] - prefix[purchase][0][lo]))
            money.append((t, (revenue[hi] - revenue[lo]) / 100))
        families["storepulse_window_orders"].append(({**base, "window": window}, orders))
        families["storepulse_window_revenue"].append(
            ({**base, "window": window, "currency": sim.currency}, money)
        )
        for li, (ch, dev, _) in enumerate(levels):
            seg = {"window": window, "channel": ch, "device": dev}
            sessions: dict[str, list[Point]] = {stage: [] for stage in sim.stages}
            conversion: list[Point] = []
            abandonment: list[Point] = []
            dropoff: dict[str, list[Point]] = {s: [] for s in sim.stages[1:-1]}
            for t, e in ends:
                lo = max(0, e - width)
                hi = max(0, e)
                counts = {
                    st: prefix[k][li][hi] - prefix[k][li][lo] for k, st in enumerate(sim.stages)
                }
                for st, n in counts.items():
                    sessions[st].append((t, n))
                ratios = funnel_ratios(counts, sim.stages, min_sample)
                if ratios.conversion is not None:
                    conversion.append((t, ratios.conversion))
                if ratios.abandonment is not None:
                    abandonment.append((t, ratios.abandonment))
                for step, value in ratios.dropoff.items():
                    if value is not None:
                        dropoff[step].append((t, value))
            for st, points in sessions.items():
                families["storepulse_window_sessions"].append(
                    ({**base, **seg, "stage": st}, points)
                )
            families["storepulse_conversion_ratio"].append(({**base, **seg}, conversion))
            families["storepulse_cart_abandonment_ratio"].append(({**base, **seg}, abandonment))
            for step, points in dropoff.items():
                families["storepulse_checkout_dropoff_ratio"].append(
                    ({**base, "window": window, "step": step, "channel": ch, "device": dev}, points)
                )
    written = 0
    for name, series in families.items():
        written += out.family(name, "gauge", [(lb, p) for lb, p in series if p])
    end_points: list[Point] = [(t, t // bucket * bucket) for t in times]
    written += out.family(
        "storepulse_window_end_timestamp_seconds", "gauge", [(dict(base), end_points)]
    )
    return written
