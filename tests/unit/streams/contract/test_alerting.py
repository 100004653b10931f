"""The alert thresholds: margins over the baseline, the cap and the floors, as the rules say."""

from __future__ import annotations

import math

import pytest

from storepulse.monitoring.rules import render_rules
from streams.contract.alerting import ABANDONMENT, CONVERSION, DROPOFF, VISIT_GROWTH
from streams.settings import Settings


def test_thresholds_follow_the_baseline_and_fall_back_to_floors() -> None:
    # Abandonment: 10 points above its baseline, never above 98 %; 95 % without a baseline.
    assert ABANDONMENT.of(0.70) == pytest.approx(0.80)
    assert ABANDONMENT.of(0.93) == 0.98
    assert ABANDONMENT.of(None) == 0.95
    # A step's drop-off: fewer than 62.5 % of the usual share of its sessions going on.
    assert DROPOFF.of(0.2) == pytest.approx(1 - 0.625 * 0.8)
    assert DROPOFF.of(0.99) == 0.98
    assert DROPOFF.of(None) == 0.80
    # Conversion pages below 70 % of its baseline, 0.3 % without one.
    assert CONVERSION.of(0.025) == pytest.approx(0.0175)
    assert CONVERSION.of(None) == 0.003
    assert ABANDONMENT.beyond(0.81, 0.80) and not ABANDONMENT.beyond(0.80, 0.80)
    assert CONVERSION.beyond(0.017, 0.0175) and not CONVERSION.beyond(0.018, 0.0175)


def test_the_rendered_rules_carry_the_same_numbers() -> None:
    text = render_rules(Settings())
    assert "clamp_max(storepulse:cart_abandonment_ratio:baseline + 0.10, 0.98)" in text
    assert "clamp_max(1 - 0.625 * (1 - storepulse:checkout_dropoff_ratio:baseline), 0.98)" in text
    assert "0.7 * storepulse:conversion_ratio:baseline" in text
    assert "(storepulse:cart_abandonment_ratio:rate15m * 0 + 0.95)" in text
    assert "(storepulse:checkout_dropoff_ratio:rate15m * 0 + 0.80)" in text
    assert "(storepulse:conversion_ratio:rate15m * 0 + 0.003)" in text
    # The usual visits' growth: 5 % per 15 minutes, as a rate per second in logs.
    per_second = float(text.split("- time() * ")[1].split(")")[0])
    assert math.exp(per_second * 900) == pytest.approx(VISIT_GROWTH) == pytest.approx(1.05)
