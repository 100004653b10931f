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
    sim = simulate(config(rate=100.0), Timeline(), 2, START, 1_800, 15)
    files = BlockFiles(tmp_path)
    written = exporter_families(files, sim, {"job": "storepulse"}, window_gauges=True)
    samples = {
        (s.name, tuple(sorted(s.labels.items())), float(s.timestamp or 0)): s.value
        for path in files.close()
        for f in text_string_to_metric_families(path.read_text())
        for s in f.samples
    }
    assert len(samples) == written
    end = START + 1_800
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
    counts = {st: sim.total(st, (1_800 - 900) // 15, 1_800 // 15) for st in sim.stages}
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
    cents = sum(sim.revenue_cents[(1_800 - 900) // 15 :])
    assert samples[("storepulse_window_revenue", money, end)] == cents / 100


def test_counters_can_end_where_the_live_ones_begin(tmp_path: Path) -> None:
    # The demo's history: each backfilled counter ends at Redis' total when live traffic
    # starts, so a window over the boundary sees neither a reset nor a jump.
    sim = simulate(config(rate=100.0), Timeline(), 3, START, 900, 15)
    seg = sim.segments.index(("organic", "mobile"))
    live = CounterEnds({("visit", "organic", "mobile"): 5}, {("organic", "mobile"): 1_000}, {})
    files = BlockFiles(tmp_path)
    exporter_families(files, sim, {"job": "storepulse"}, ends=live)
    # Read line by line: the Python parser refuses negative counters, Prometheus and promtool
    # take them (only their differences are ever used).
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    sample = re.compile(r"^(\w+)\{(.*)\} (\S+) (\S+)$")
    for path in files.close():
        for line in path.read_text().splitlines():
            found = sample.match(line)
            if not found:
                continue
            name, text, value, at = found.groups()
            labels = dict(re.findall(r'(\w+)="([^"]*)"', text))
            key = (name, labels.get("stage", ""), labels.get("channel", ""))
            if labels.get("device") == "mobile" or name == "storepulse_revenue_total":
                series.setdefault(key, []).append((float(at), float(value)))
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
