"""Scenarios: parsing, the timeline, and each one moving its KPI in its window and only there."""

from __future__ import annotations

from typing import Any

import pytest

from producers.scenarios import Scenario, ScenarioError, Timeline, parse_scenario
from producers.truth import GroundTruth
from streams.contract.events import DEFAULT_CHECKOUT_STEPS
from streams.contract.times import parse_duration
from tests.unit.producers.conftest import config, run

STEPS = DEFAULT_CHECKOUT_STEPS
# Strong signals from small samples: 40% of sessions cart, half of the carts buy; ~20 sessions/s
# so ~1,200 sessions and ~300 payment attempts a minute. Window: minutes 4 and 5 of 10.
CFG = config(rate=100.0, cvr=0.2, abandonment=0.5, cvr_factors={})
WINDOW = "start=240,duration=120"
INSIDE = {4, 5}
OUTSIDE = {3, 6, 7, 8}  # minutes 0-2 ramp up (sessions start with the run)


def test_parse_defaults_and_parameters() -> None:
    s = parse_scenario("abandonment-spike", STEPS)
    assert s == Scenario("abandonment-spike", 0.0, None, 0.5, "payment")
    s = parse_scenario("checkout-outage:start=5m,duration=90,step=shipping", STEPS)
    assert (s.start_s, s.duration_s, s.strength, s.step) == (300.0, 90.0, 1.0, "shipping")
    s = parse_scenario("traffic-surge:strength=5", STEPS)
    assert (s.strength, s.step) == (5.0, None)
    assert parse_scenario("tracking-loss", STEPS).strength == 0.3
    assert parse_scenario("steady:duration=1h", STEPS).duration_s == 3_600.0
    assert parse_duration("2h") == 7_200.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown scenario"),
        ("tracking-loss:strength=2", "share"),
        ("abandonment-spike:step=cart", "not a checkout step"),
        ("traffic-surge:step=payment", "takes no step"),
        ("steady:start=soon", "not a duration"),
        ("steady:bogus=1", "bad parameter"),
        ("traffic-surge:strength=-1", ">= 0"),
    ],
)
def test_parse_rejects_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(spec, STEPS)


def test_timeline_combines_overlapping_scenarios() -> None:
    tl = Timeline(
        [
            Scenario("tracking-loss", 10, 10, 0.5),
            Scenario("tracking-loss", 15, None, 0.5),
            Scenario("abandonment-spike", 0, 5, 0.4, "payment"),
            Scenario("traffic-surge", 0, 100, 2.0),
        ]
    )
    assert tl.loss(5) == 0.0
    assert tl.loss(12) == 0.5
    assert tl.loss(17) == 0.75
    assert tl.loss(1e9) == 0.5
    assert tl.step_failure("payment", 4.9) == pytest.approx(0.4)
    assert tl.step_failure("payment", 5.0) == 0.0
    assert tl.step_failure("shipping", 1) == 0.0
    assert tl.surge(99) == 2.0
    assert tl.surge(100) == 0.0


def _minutes(truth: GroundTruth) -> dict[int, dict[str, Any]]:
    return dict(enumerate(truth.minutes()))


def _run(*specs: str) -> dict[int, dict[str, Any]]:
    scenarios = [parse_scenario(s, STEPS) for s in specs]
    _, truth = run(CFG, seed=21, scenarios=scenarios, duration_s=600)
    return _minutes(truth)


def _ratio(rows: dict[int, dict[str, Any]], minutes: set[int], top: str, bottom: str) -> float:
    return sum(rows[m]["sessions"][top] for m in minutes) / sum(
        rows[m]["sessions"][bottom] for m in minutes
    )


@pytest.fixture(scope="module")
def baseline() -> dict[int, dict[str, Any]]:
    return _run()


def test_steady_changes_nothing() -> None:
    lines_a, _ = run(CFG, seed=21, duration_s=300)
    lines_b, _ = run(CFG, seed=21, duration_s=300, scenarios=[parse_scenario("steady", STEPS)])
    assert lines_a == lines_b


def test_checkout_outage_stops_the_step_in_its_window_only(baseline: dict[int, Any]) -> None:
    rows = _run(f"checkout-outage:{WINDOW}")
    for m in INSIDE:
        assert rows[m]["sessions"]["payment"] == 0
        assert rows[m]["sessions"]["shipping"] > 100
    for m in OUTSIDE:
        # payment / shipping is ~0.89 once steady (one sigma ~0.02 for ~300 attempts a minute)
        assert rows[m]["sessions"]["payment"] / rows[m]["sessions"]["shipping"] > 0.7
    assert _ratio(baseline, INSIDE, "payment", "shipping") > 0.75


def test_abandonment_spike_raises_abandonment_in_its_window_only(
    baseline: dict[int, Any],
) -> None:
    rows = _run(f"abandonment-spike:{WINDOW},strength=0.8")
    # 80% of payment attempts fail: payment / shipping falls from ~0.89 to ~0.18
    assert _ratio(rows, INSIDE, "payment", "shipping") < 0.3
    assert _ratio(rows, OUTSIDE, "payment", "shipping") > 0.75
    # Orders trail payment by ~35 s (review, then the order), so cart abandonment by minute shows
    # fully in the window's second minute; it is back to normal two minutes after the window.
    normal = _ratio(rows, OUTSIDE, "purchase", "cart")
    assert _ratio(rows, {5}, "purchase", "cart") < 0.5 * normal
    assert _ratio(rows, {8}, "purchase", "cart") > 0.8 * normal
    assert _ratio(baseline, INSIDE, "payment", "shipping") > 0.75


def test_traffic_surge_adds_low_intent_sessions_in_its_window_only(
    baseline: dict[int, Any],
) -> None:
    rows = _run(f"traffic-surge:{WINDOW},strength=3")
    inside = sum(rows[m]["sessions"]["visit"] for m in INSIDE) / len(INSIDE)
    outside = sum(rows[m]["sessions"]["visit"] for m in OUTSIDE) / len(OUTSIDE)
    base = sum(baseline[m]["sessions"]["visit"] for m in INSIDE) / len(INSIDE)
    # 4x the sessions (sigma of a minute's ~1,200 sessions is ~3%)
    assert inside / outside == pytest.approx(4.0, rel=0.12)
    assert outside / base == pytest.approx(1.0, rel=0.08)
    # low intent: the cart rate of the window falls to ~(0.4 + 3 * 0.04) / 4 = 0.13
    assert _ratio(rows, INSIDE, "cart", "visit") < 0.2
    assert _ratio(rows, OUTSIDE, "cart", "visit") > 0.3


def test_tracking_loss_drops_events_in_its_window_only(baseline: dict[int, Any]) -> None:
    rows = _run(f"tracking-loss:{WINDOW},strength=0.5")
    for m in INSIDE:
        assert rows[m]["lost"] > 0
        assert rows[m]["events"] / baseline[m]["events"] == pytest.approx(0.5, abs=0.08)
    for m in set(rows) - INSIDE:
        assert rows[m]["lost"] == 0
    for m in OUTSIDE:
        assert rows[m]["events"] / baseline[m]["events"] == pytest.approx(1.0, abs=0.1)


def test_scenarios_combine_in_one_run() -> None:
    rows = _run(
        f"checkout-outage:{WINDOW}",
        "tracking-loss:start=420,duration=60,strength=0.5",
    )
    assert all(rows[m]["sessions"]["payment"] == 0 for m in INSIDE)
    assert rows[7]["lost"] > 0
    assert all(rows[m]["lost"] == 0 for m in set(rows) - {7})


def test_conversion_drop_lowers_carts_in_its_window_only(baseline: dict[int, Any]) -> None:
    rows = _run(f"conversion-drop:{WINDOW},strength=0.75")
    # A quarter of the would-be carts happen: the cart rate of ~0.37 falls towards ~0.09 (sigma
    # of ~1,200 sessions a minute ~0.015). A cart comes a minute or more after the visit, so
    # each minute of the window still counts carts of earlier visitors (measured: 0.28, 0.16).
    assert _ratio(rows, {5}, "cart", "visit") < 0.2
    assert _ratio(rows, INSIDE, "cart", "visit") < 0.25
    assert _ratio(rows, {8}, "cart", "visit") > 0.3
    assert _ratio(rows, OUTSIDE, "cart", "visit") > 0.3
    assert _ratio(baseline, INSIDE, "cart", "visit") > 0.3
    visits_in = sum(rows[m]["sessions"]["visit"] for m in INSIDE)
    assert visits_in == pytest.approx(
        sum(baseline[m]["sessions"]["visit"] for m in INSIDE), rel=0.1
    )


def test_conversion_drop_parses_as_a_share() -> None:
    s = parse_scenario("conversion-drop:start=1m,duration=2m", STEPS)
    assert (s.strength, s.step, s.start_s, s.duration_s) == (0.5, None, 60.0, 120.0)
    with pytest.raises(ScenarioError, match="share"):
        parse_scenario("conversion-drop:strength=1.5", STEPS)
    with pytest.raises(ScenarioError, match="takes no step"):
        parse_scenario("conversion-drop:step=payment", STEPS)
    tl = Timeline(
        [Scenario("conversion-drop", 0, 10, 0.5), Scenario("conversion-drop", 5, 10, 0.5)]
    )
    assert (tl.conversion_drop(1), tl.conversion_drop(7), tl.conversion_drop(12)) == (
        0.5,
        0.75,
        0.5,
    )
    assert Timeline().has_drops is False
