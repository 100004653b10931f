"""Alert states as Prometheus keeps them, and pages scored against the injected incidents."""

from __future__ import annotations

from producers.scenarios import Scenario
from storepulse.backtest.score import GRACE_S, Episode, attribute, episodes, summarize

STEP = 30.0


def test_for_counts_from_the_first_evaluation_and_a_gap_resets_it() -> None:
    # Present at 0..60 (3 evaluations), absent at 90, present again at 120..150.
    present = [0.0, 30.0, 60.0, 120.0, 150.0]
    (page,) = episodes("A", [({"__name__": "x", "channel": "all"}, present)], STEP, 60.0)
    assert (page.start, page.end) == (60.0, 60.0)  # pending at 0, firing at 60
    assert page.labels == (("channel", "all"),)
    # The second run lasts 30 s only: pending, never firing.
    assert episodes("A", [({}, present[3:])], STEP, 60.0) == []
    # Without `for:` it fires at once, for each run.
    assert [(e.start, e.end) for e in episodes("A", [({}, present)], STEP, 0.0)] == [
        (0.0, 60.0),
        (120.0, 150.0),
    ]


def _incident(
    start: float, duration: float, strength: float = 0.6, name: str = "abandonment-spike"
):
    s = Scenario(name, start, duration, strength, "payment" if name != "conversion-drop" else None)
    return (s, start, start + duration, 500)


def test_pages_in_an_incident_detect_it_and_the_others_are_false() -> None:
    spike = _incident(1_000, 600)
    drop = _incident(10_000, 600, 0.3, "conversion-drop")
    pages = [
        Episode("CheckoutStepFailing", (), 1_150, 1_800),  # 150 s into the spike
        Episode("CartAbandonmentSpike", (), 1_300, 1_900),
        Episode("ConversionDrop", (), 1_400, 1_700),  # caused by the spike, not false
        Episode("CheckoutStepFailing", (), 5_000, 5_100),  # in no incident: false
        Episode("ConversionDrop", (), 10_000 + 600 + GRACE_S + 1, 12_000),  # too late: false
    ]
    results, false = attribute(pages, [spike, drop])
    assert results[0].detected_by == {"CheckoutStepFailing": 150, "CartAbandonmentSpike": 300}
    assert results[0].time_to_detect_s == 150
    assert not results[1].detected  # ConversionDrop is its alert, but it came after the grace
    assert [p.start for p in false] == [5_000, 10_000 + 600 + GRACE_S + 1]
    summary = summarize(
        results,
        pages,
        false,
        2.0,
        ["CartAbandonmentSpike", "ConversionDrop", "CheckoutStepFailing"],
        100,
    )
    assert summary["incidents"] == 2
    assert summary["strong_incidents"] == 1  # the 0.3 drop is weak
    assert summary["strong_detected"] == 1
    assert summary["false_pages"] == 2
    assert summary["false_pages_per_day"] == 1.0
    assert summary["precision"] == 0.6
    assert summary["recall"] == 0.5
    assert summary["median_time_to_detect_s"] == 150
    step = summary["per_alert"]["CheckoutStepFailing"]
    assert (step["incidents"], step["detected"], step["false_pages"], step["pages"]) == (1, 1, 1, 2)
    drop_alert = summary["per_alert"]["ConversionDrop"]
    assert (drop_alert["incidents"], drop_alert["detected"], drop_alert["false_pages"]) == (1, 0, 1)


def test_a_strong_incident_too_small_to_see_is_not_counted_as_strong() -> None:
    tiny = (Scenario("checkout-outage", 0, 60, 1.0, "payment"), 0.0, 60.0, 40)
    results, _ = attribute([], [tiny])
    summary = summarize(results, [], [], 1.0, ["CheckoutStepFailing"], 100)
    assert (summary["strong_incidents"], summary["detected"]) == (0, 0)
