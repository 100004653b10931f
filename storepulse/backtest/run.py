"""One backtest: simulated days into a real Prometheus, the real alert rules judged against them."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from producers.config import (
    DEFAULT_CHANNEL_WEIGHTS,
    DEFAULT_COUNTRY_WEIGHTS,
    DEFAULT_DEVICE_WEIGHTS,
    TrafficConfig,
    weights_for,
)
from producers.scenarios import Timeline
from storepulse.backtest.backfill import backfill_exporter, backfill_recordings
from storepulse.backtest.plan import Plan, default_incidents, make_plan
from storepulse.backtest.prometheus import Prometheus, fresh_dir
from storepulse.backtest.rulefile import parse_rules
from storepulse.backtest.score import MIN_EXPOSED, Episode, attribute, episodes, summarize
from storepulse.backtest.simulate import Simulation, simulate
from storepulse.monitoring.rules import render_rules
from streams.settings import Settings

__all__ = ["KPI_GROUP", "BacktestOptions", "BacktestResult", "backtest_config", "run_backtest"]

KPI_GROUP = "storepulse-kpis"
# 2026-01-05 is a Monday: a week from it has its weekend on days 6 and 7.
DEFAULT_START_S = 1_767_571_200
# The overall series drawn in the picture, with the threshold each is judged against.
PICTURED = {
    "cart abandonment (15 min)": (
        'storepulse:cart_abandonment_ratio:rate15m{channel="all", device="all"}',
        'storepulse:cart_abandonment_ratio:alert_threshold{channel="all", device="all"}',
    ),
    "conversion (15 min)": (
        'storepulse:conversion_ratio:rate15m{channel="all", device="all"}',
        'storepulse:conversion_ratio:alert_threshold{channel="all", device="all"}',
    ),
}


@dataclass(frozen=True)
class BacktestOptions:
    days: float = 7.0
    seed: int = 1
    incidents: int | None = None  # None: default_incidents(days)
    rate: float = 200.0  # the demo's rate (storepulse demo --rate)
    daily_shape: float = 0.5
    cvr_daily_shape: float = 0.2
    weekend_dip: float = 0.3
    step_s: int = 30  # scrape and evaluation interval
    start_s: int = DEFAULT_START_S
    work_dir: Path | None = None  # None: a temporary directory, removed afterwards


@dataclass
class BacktestResult:
    options: BacktestOptions
    plan: Plan
    summary: dict[str, Any]
    incidents: list[dict[str, Any]]
    pages: list[Episode]
    false_pages: list[Episode]
    timeline: dict[str, dict[str, list[tuple[float, float]]]]
    timings: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "days": o.days,
            "seed": o.seed,
            "rate": o.rate,
            "step_s": o.step_s,
            **self.summary,
            "noise": [
                {
                    "kind": s.name,
                    "start_offset_s": s.start_s,
                    "duration_s": s.duration_s,
                    "strength": s.strength,
                }
                for s in self.plan.noise
            ],
            "incident_list": self.incidents,
            "false_page_list": [_page(e, o.start_s) for e in self.false_pages],
            "samples": self.samples,
            "timings_s": {k: round(v, 1) for k, v in self.timings.items()},
        }


def _page(e: Episode, start_s: int) -> dict[str, Any]:
    return {
        "alert": e.alert,
        "labels": dict(e.labels),
        "start_offset_s": e.start - start_s,
        "end_offset_s": e.end - start_s,
    }


def backtest_config(settings: Settings, options: BacktestOptions) -> TrafficConfig:
    """The generator's defaults with the backtest's daily and weekly shapes."""
    return TrafficConfig(
        checkout_steps=settings.checkout_steps,
        channels=weights_for(settings.channels, DEFAULT_CHANNEL_WEIGHTS, {}),
        devices=weights_for(settings.devices, DEFAULT_DEVICE_WEIGHTS, {}),
        countries=weights_for(list(DEFAULT_COUNTRY_WEIGHTS), DEFAULT_COUNTRY_WEIGHTS, {}),
        rate=options.rate,
        daily_amplitude=options.daily_shape,
        cvr_daily_amplitude=options.cvr_daily_shape,
        weekend_dip=options.weekend_dip,
    )


def _exposed(sim: Simulation, plan: Plan) -> list[tuple[Any, float, float, int]]:
    """(scenario, start, end, sessions exposed to it) per incident."""
    out = []
    for s in plan.incidents:
        start = sim.start_s + s.start_s
        end = start + (s.duration_s or 0)
        first = int(s.start_s // sim.step_s)
        last = int((s.start_s + (s.duration_s or 0)) // sim.step_s)
        # Sessions arriving at a failing step fail before reaching it: they are those
        # reaching the stage before it. A conversion drop meets every visitor.
        stage = "visit" if s.step is None else sim.stages[sim.stages.index(s.step) - 1]
        out.append((s, start, end, sim.total(stage, first, last)))
    return out


def run_backtest(
    settings: Settings,
    options: BacktestOptions,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Simulate, backfill, evaluate every alert of the KPI group, and score; see docs/backtest."""
    say = progress or (lambda _: None)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = now - clock
        clock = now

    incidents = default_incidents(options.days) if options.incidents is None else options.incidents
    plan = make_plan(options.days, options.seed, incidents, settings.checkout_steps)
    config = backtest_config(settings, options)
    duration = round(options.days * 86_400 / options.step_s) * options.step_s
    start = options.start_s // 900 * 900  # 15-minute aligned, like the baseline's subqueries
    options = replace(options, start_s=start)
    say(f"simulating {options.days:g} days at {options.rate:g} events/s ...")
    sim = simulate(config, Timeline(plan.scenarios), options.seed, start, duration, options.step_s)
    lap("simulate")
    rules = parse_rules(render_rules(settings), KPI_GROUP)
    with tempfile.TemporaryDirectory(prefix="storepulse-backtest-") as tmp:
        work = Path(options.work_dir or tmp)
        data = fresh_dir(work / "prometheus-data")
        target = {"job": "storepulse", "instance": "backtest"}
        samples = backfill_exporter(sim, data, work, target)
        lap("backfill exporter series")
        say(f"{samples:,} exporter samples imported; recording rules ...")
        end = start + duration
        prom = Prometheus(work, data, lookback_s=options.step_s - 1)
        with prom:
            samples += backfill_recordings(
                prom, rules.records, start, end, options.step_s, work, say
            )
            lap("recording rules")
            pages: list[Episode] = []
            for alert in rules.alerts:
                answer = prom.query_range(alert.expr, start, end, options.step_s)
                pages += episodes(
                    alert.alert,
                    ((labels, [t for t, _ in points]) for labels, points in answer),
                    options.step_s,
                    alert.for_s,
                )
            lap("alert rules")
            pictured = {
                name: {
                    "value": _overall(prom, value, start, end, options.step_s),
                    "threshold": _overall(prom, threshold, start, end, options.step_s),
                }
                for name, (value, threshold) in PICTURED.items()
            }
    results, false = attribute(pages, _exposed(sim, plan))
    summary = summarize(
        results, pages, false, options.days, [a.alert for a in rules.alerts], MIN_EXPOSED
    )
    summary = {"days": options.days, **summary}
    return BacktestResult(
        options=options,
        plan=plan,
        summary=summary,
        incidents=[r.as_dict() for r in results],
        pages=pages,
        false_pages=false,
        timeline=pictured,
        timings=timings,
        samples=samples,
    )


def _overall(
    prom: Prometheus, expr: str, start: int, end: int, step: int
) -> list[tuple[float, float]]:
    # Every 5th step is plenty for a picture a few thousand pixels wide.
    series = list(prom.query_range(expr, start, end, step * 5))
    return [(t, float(v)) for t, v in series[0][1]] if series else []
