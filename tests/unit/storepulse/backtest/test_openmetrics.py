"""What the backtest imports: valid OpenMetrics, a file per 2-hour block, the exporter's values."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from producers.scenarios import Timeline
from storepulse.backtest.openmetrics import (
    BLOCK_S,
    BlockFiles,
    CounterEnds,
    exporter_families,
    number,
)
from storepulse.backtest.simulate import simulate
from streams.contract.kpis import funnel_ratios
from tests.unit.producers.conftest import config

START = 1_767_571_200  # a multiple of 2 hours
DURATION = 1_200


_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+) (\S+)$")
Key = tuple[str, tuple[tuple[str, str], ...], float]


def read_samples(paths: list[Path]) -> dict[Key, float]:
    """(name, sorted labels, time) -> value of every sample line (our own label values hold no
    quote or comma)."""
    out = {}
    for path in paths:
        for line in path.read_text().splitlines():
            found = _SAMPLE.match(line)
            if found:
                name, text, value, at = found.groups()
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', text)))
                out[(name, labels, float(at))] = float(value)
    return out


def test_numbers_as_openmetrics_writes_them() -> None:
    assert [number(3), number(3.0), number(0.25), number("0.7012")] == ["3", "3", "0.25", "0.7012"]
    assert number(float("nan")) == "nan"  # Go's ParseFloat reads it


def test_each_block_gets_its_own_file_and_each_family_one_header(tmp_path: Path) -> None:
    files = BlockFiles(tmp_path)
    points = [(START + i * 3_600, i) for i in range(5)]  # 0h .. 4h: blocks 0, 0, 1, 1, 2
    assert files.family("x", "counter", [({"a": "1"}, points), ({"a": "2"}, points)]) == 10
    files.family("y", "gauge", [({}, [(START + 1, 0.5)])])
    paths = files.close()
    assert [p.name for p in paths] == [f"block-{START // BLOCK_S + k}.om" for k in range(3)]
    first = paths[0].read_text()
    assert first.count("# TYPE x counter") == 1
    assert first.count("# TYPE y gauge") == 1
    assert first.endswith("# EOF\n")
    assert f'x_total{{a="2"}} 1 {START + 3_600}' in first
    for k, path in enumerate(paths):
        families = list(text_string_to_metric_families(path.read_text()))
        assert families
        times = {float(s.timestamp) for f in families for s in f.samples if s.timestamp}
        assert {int(x) // BLOCK_S for x in times} == {START // BLOCK_S + k}


def test_the_exporters_counters_and_window_gauges(tmp_path: Path) -> None:
    # 20 minutes at 50 lines/s: the 15-minute window at the end holds 20+ of every stage.
    sim = simulate(config(rate=50.0), Timeline(), 2, START, DURATION, 15)
    files = BlockFiles(tmp_path)
    written = exporter_families(files, sim, {"job": "storepulse"}, window_gauges=True)
    paths = files.close()
    samples = read_samples(paths)
    assert len(samples) == written
    # Valid OpenMetrics: the strict parser reads the first block (it takes ~1 ms a sample).
    assert list(text_string_to_metric_families(paths[0].read_text()))
    end = START + DURATION
    base = (("job", "storepulse"),)
    # Counters end at the sessions reached over the whole run, per segment.
    organic = tuple(
        sorted(
            {"job": "storepulse", "stage": "cart", "channel": "organic", "device": "mobile"}.items()
        )
    )
    seg = sim.segments.index(("organic", "mobile"))
    assert samples[("storepulse_funnel_sessions_total", organic, end)] == sum(sim.reached[1][seg])
    assert samples[("storepulse_funnel_sessions_total", organic, START)] == 0
    # The 15-minute window at the end: the buckets [end - 15m, end), by the real KPI code.
    counts = {st: sim.total(st, (DURATION - 900) // 15, DURATION // 15) for st in sim.stages}
    ratios = funnel_ratios(counts, sim.stages, 20)
    labels = tuple(
        sorted({"job": "storepulse", "window": "15m", "channel": "all", "device": "all"}.items())
    )
    assert samples[("storepulse_cart_abandonment_ratio", labels, end)] == ratios.abandonment
    assert samples[("storepulse_window_end_timestamp_seconds", base, end)] == end
    # The window's orders (sessions reaching purchase) and revenue, overall.
    window = tuple(sorted({"job": "storepulse", "window": "15m"}.items()))
    assert samples[("storepulse_window_orders", window, end)] == counts["purchase"]
    money = tuple(sorted({"job": "storepulse", "window": "15m", "currency": "USD"}.items()))
    cents = sum(sim.revenue_cents[(DURATION - 900) // 15 :])
    assert samples[("storepulse_window_revenue", money, end)] == cents / 100


def test_counters_can_end_where_the_live_ones_begin(tmp_path: Path) -> None:
    # The demo's history: each backfilled counter ends at Redis' total when live traffic
    # starts, so a window over the boundary sees neither a reset nor a jump.
    sim = simulate(config(rate=100.0), Timeline(), 3, START, 900, 15)
    seg = sim.segments.index(("organic", "mobile"))
    live = CounterEnds({("visit", "organic", "mobile"): 5}, {("organic", "mobile"): 1_000}, {})
    files = BlockFiles(tmp_path)
    exporter_families(files, sim, {"job": "storepulse"}, ends=live)
    # The Python parser refuses negative counters; Prometheus and promtool take them (only
    # their differences are ever used).
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for (name, labels, at), value in read_samples(files.close()).items():
        got = dict(labels)
        key = (name, got.get("stage", ""), got.get("channel", ""))
        if got.get("device") == "mobile" or name == "storepulse_revenue_total":
            series.setdefault(key, []).append((at, value))
    visits = sorted(series[("storepulse_funnel_sessions_total", "visit", "organic")])
    assert visits[-1] == (START + 900, 5)
    assert visits[0][1] == 5 - sum(sim.reached[0][seg])  # below 0 when Redis holds fewer
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(visits))  # no reset
    orders = sorted(series[("storepulse_orders_total", "", "organic")])
    assert orders[-1][1] == 1_000
    # A counter Redis does not have yet ends at 0; revenue at the stored total (none: 0).
    carts = sorted(series[("storepulse_funnel_sessions_total", "cart", "organic")])
    assert carts[-1][1] == 0
    assert sorted(series[("storepulse_revenue_total", "", "")])[-1][1] == 0
