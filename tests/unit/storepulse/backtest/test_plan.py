"""The backtest's plan: seeded, apart, the asked number of incidents and a day's noise."""

from __future__ import annotations

import itertools

import pytest

from storepulse.backtest.plan import INCIDENT_KINDS, NOISE_KINDS, default_incidents, make_plan
from streams.contract.events import DEFAULT_CHECKOUT_STEPS as STEPS


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert make_plan(7, 1, 10, STEPS) == make_plan(7, 1, 10, STEPS)
    assert make_plan(7, 1, 10, STEPS) != make_plan(7, 2, 10, STEPS)


def test_incidents_and_noise_keep_apart_within_the_run() -> None:
    plan = make_plan(7, 3, 10, STEPS)
    assert len(plan.incidents) == 10
    assert sum(s.name == "traffic-surge" for s in plan.noise) == 14
    assert sum(s.name == "tracking-loss" for s in plan.noise) == 7
    placed = sorted(plan.scenarios, key=lambda s: s.start_s)
    for a, b in itertools.pairwise(placed):
        assert a.duration_s is not None
        assert a.start_s + a.duration_s + 45 * 60 <= b.start_s
    last = placed[-1]
    assert last.duration_s is not None
    assert placed[0].start_s >= 3_600
    assert last.start_s + last.duration_s <= 7 * 86_400
    for s in plan.incidents:
        low, high = INCIDENT_KINDS[s.name][1]
        assert low <= s.strength <= high
        assert (s.step in STEPS) == (s.name != "conversion-drop")
        assert s.start_s == int(s.start_s)
    for s in plan.noise:
        low, high = NOISE_KINDS[s.name][1]
        assert low <= s.strength <= high


def test_default_incidents_scale_with_the_days() -> None:
    assert default_incidents(7) == 10
    assert default_incidents(1) == 3
    assert default_incidents(14) == 20


def test_too_many_incidents_for_the_days_is_a_readable_error() -> None:
    with pytest.raises(ValueError, match="no room"):
        make_plan(0.5, 1, 30, STEPS)
    with pytest.raises(ValueError, match="positive"):
        make_plan(0, 1, 3, STEPS)
