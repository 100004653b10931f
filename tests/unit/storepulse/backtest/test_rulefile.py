"""The rules file read for a backtest: the real rendering, its levels and its `for:`."""

from __future__ import annotations

import pytest

from storepulse.backtest.rulefile import RecordRule, levels, parse_rules, prom_duration_s
from storepulse.monitoring.rules import render_rules
from streams.settings import Settings


def test_the_rendered_kpi_group_in_dependency_levels() -> None:
    rules = parse_rules(render_rules(Settings()), "storepulse-kpis")
    assert {a.alert: a.for_s for a in rules.alerts} == {
        "CartAbandonmentSpike": 60,
        "ConversionDrop": 60,
        "CheckoutStepFailing": 60,
    }
    found = levels(rules.records)
    level = {r.record: i for i, rs in enumerate(found) for r in rs}
    assert level["storepulse:funnel_sessions:increase15m"] == 0
    assert level["storepulse:funnel_sessions:history_baseline15m"] == 1
    assert level["storepulse:funnel_sessions:baseline15m"] == 2
    assert level["storepulse:cart_abandonment_ratio:baseline"] == 3
    assert level["storepulse:cart_abandonment_ratio:alert_threshold"] == 4
    # usual visits <- their cap <- yesterday's visits and the last 6 h's windows; conversion's
    # baseline reads the past of orders per usual visit in normal windows, its threshold that
    # baseline.
    assert level["storepulse:funnel_sessions:visit_cap15m"] == 2
    assert level["storepulse:conversion_ratio:usual_rate15m"] == 4
    assert level["storepulse:conversion_ratio:normal_rate15m"] == 5
    assert level["storepulse:conversion_ratio:baseline"] == 6
    assert level["storepulse:conversion_ratio:alert_threshold"] == 7
    assert sum(len(rs) for rs in found) == len(rules.records)
    for depth, rs in enumerate(found):
        for rule in rs:
            assert all(level[n] < depth for n in level if n in rule.expr and n != rule.record)


def test_a_cycle_and_an_unknown_group_are_refused() -> None:
    cycle = [RecordRule("a:b:c", "x:y:z + 1"), RecordRule("x:y:z", "a:b:c")]
    with pytest.raises(ValueError, match="depend on each other"):
        levels(cycle)
    with pytest.raises(ValueError, match="no group"):
        parse_rules("groups: []\n", "storepulse-kpis")


def test_prometheus_durations() -> None:
    assert prom_duration_s("1m") == 60
    assert prom_duration_s("6d23h30m") == 6 * 86_400 + 23 * 3_600 + 1_800
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        prom_duration_s("1 minute")
