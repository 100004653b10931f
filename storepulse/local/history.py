"""`storepulse demo`'s normal history: hours of simulated traffic backfilled into its Prometheus.

The backtest's mechanism: the generator's model drawn for the hours before now, the series the
exporter would have served (counters, window gauges) written as OpenMetrics and imported with
`promtool tsdb create-blocks-from openmetrics`, every KPI recording rule evaluated over them by
a private Prometheus, level by level; the blocks then move into the stack's data directory. So
the alerts have a baseline (the recent 6 h) the moment live traffic starts, and the board's
6 h history is not empty.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from producers.scenarios import Timeline
from storepulse.backtest.backfill import backfill_exporter, backfill_recordings
from storepulse.backtest.openmetrics import CounterEnds
from storepulse.backtest.prometheus import Prometheus
from storepulse.backtest.rulefile import parse_rules
from storepulse.backtest.run import KPI_GROUP, BacktestOptions, backtest_config
from storepulse.backtest.simulate import simulate
from storepulse.monitoring.rules import render_rules
from streams.settings import Settings

__all__ = ["DEFAULT_HOURS", "HISTORY_STEP_S", "HistoryResult", "backfill_history", "has_history"]

DEFAULT_HOURS = 3.0
# A sample every 30 s (the stack scrapes every 5 s): every window of the rules holds several,
# and 3 hours import in seconds (every 5 s: 2.5 million samples, 70 s on 2 cores).
HISTORY_STEP_S = 30
_ULID_LENGTH = 26  # a block directory's name


@dataclass(frozen=True)
class HistoryResult:
    start_s: int
    end_s: int
    samples: int


def has_history(prometheus_url: str, hours: float) -> bool:
    """Whether that Prometheus already holds storepulse counters from the last `hours` (then a
    backfill would overlap them): asked through its query API."""
    query = f"count(count_over_time(storepulse_funnel_sessions_total[{round(hours * 3_600)}s]))"
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        answer = json.load(resp)
    return bool(answer["data"]["result"])


def _live_totals(settings: Settings) -> CounterEnds:
    """Redis' totals now: the values the live counters start from."""
    from streams.store.client import connect
    from streams.store.funnel import FunnelStore
    from streams.store.keys import parse_totals

    async def read() -> CounterEnds:
        client = connect(settings)
        try:
            store = FunnelStore(client, settings)
            totals = parse_totals(await store.totals(await store.partitions()))
        finally:
            await client.aclose()
        return CounterEnds(totals.funnel, totals.orders, totals.revenue_units)

    return asyncio.run(read())


def _move_blocks(source: Path, target: Path) -> int:
    """Every block directory of source into target (not the WAL or the head of source)."""
    moved = 0
    target.mkdir(parents=True, exist_ok=True)
    for block in sorted(source.iterdir()):
        if block.is_dir() and len(block.name) == _ULID_LENGTH and (block / "meta.json").exists():
            shutil.move(str(block), str(target / block.name))
            moved += 1
    return moved


def backfill_history(
    settings: Settings,
    data_dir: Path,
    end_s: int,
    hours: float = DEFAULT_HOURS,
    rate: float = 200.0,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> HistoryResult:
    """`hours` of the demo's steady traffic ending at end_s into data_dir (the stack
    Prometheus' data, which loads new blocks at start or within a minute while running)."""
    say = progress or (lambda _: None)
    step = HISTORY_STEP_S
    end = end_s // step * step
    duration = round(hours * 3_600 / step) * step
    start = end - duration
    options = BacktestOptions(rate=rate, daily_shape=0.0, cvr_daily_shape=0.0, weekend_dip=0.0)
    sim = simulate(backtest_config(settings, options), Timeline(), seed, start, duration, step)
    # The stack's scrape target: the live series continue the backfilled ones.
    target = {"job": "storepulse", "instance": f"{settings.exporter_host}:{settings.exporter_port}"}
    rules = parse_rules(render_rules(settings), KPI_GROUP)
    with tempfile.TemporaryDirectory(prefix="storepulse-history-") as tmp:
        work = Path(tmp)
        private = work / "prometheus-data"
        samples = backfill_exporter(
            sim, private, work, target, True, settings.min_sample, _live_totals(settings)
        )
        with Prometheus(work, private, lookback_s=step - 1) as prom:
            samples += backfill_recordings(prom, rules.records, start, end, step, work, say)
        _move_blocks(private, data_dir)
    return HistoryResult(start, end, samples)
