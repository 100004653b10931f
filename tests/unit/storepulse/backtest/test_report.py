"""The backtest's table, its targets and its picture, from the figures of one run."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from producers.scenarios import Scenario
from storepulse.backtest.picture import svg
from storepulse.backtest.report import failures, misses, table
from storepulse.backtest.score import Episode, attribute, summarize

ALERTS = ["CartAbandonmentSpike", "ConversionDrop", "CheckoutStepFailing"]
START = 1_767_571_200.0


def _result(pages: list[Episode]) -> dict[str, Any]:
    spike = Scenario("abandonment-spike", 7_200, 1_800, 0.7, "payment")
    weak = Scenario("conversion-drop", 30_000, 1_200, 0.25)
    incidents = [
        (spike, START + 7_200, START + 9_000, 5_000),
        (weak, START + 30_000, START + 31_200, 90_000),
    ]
    results, false = attribute(pages, incidents)
    summary = summarize(results, pages, false, 1.0, ALERTS, 100)
    return {
        "days": 1.0,
        "seed": 4,
        "rate": 200.0,
        "step_s": 30,
        **summary,
        "noise": [
            {
                "kind": "traffic-surge",
                "start_offset_s": 50_000.0,
                "duration_s": 3_600.0,
                "strength": 2.5,
            }
        ],
        "incident_list": [r.as_dict() for r in results],
        "false_page_list": [
            {
                "alert": e.alert,
                "labels": dict(e.labels),
                "start_offset_s": e.start - START,
                "end_offset_s": e.end - START,
            }
            for e in false
        ],
    }


def test_a_run_that_meets_the_targets() -> None:
    pages = [
        Episode(
            "CheckoutStepFailing",
            (("channel", "all"), ("device", "all"), ("step", "shipping")),
            START + 7_380,
            START + 9_300,
        )
    ]
    result = _result(pages)
    assert misses(result) == []
    text = table(result)
    assert "CheckoutStepFailing" in text
    assert "day 1 02:00 abandonment-spike at payment, strength 0.7 (strong)" in text
    assert "detected in 3m00s (CheckoutStepFailing 3m00s)" in text
    assert (
        "conversion-drop, strength 0.25 (weak), 20m00s, 90,000 sessions exposed: not detected"
        in text
    )
    assert "false pages: none" in text
    assert text.rstrip().endswith("targets: met")
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:6]}
    assert rows["CheckoutStepFailing"][1:4] == ["1", "1", "1/1"]


def test_a_false_page_and_a_missed_strong_incident_are_named() -> None:
    result = _result(
        [Episode("ConversionDrop", (("channel", "email"),), START + 60_000, START + 60_600)]
    )
    assert misses(result) == ["1 strong incident(s) missed", "1 false page(s)"]
    text = table(result)
    assert "day 1 16:40 ConversionDrop (channel=email)" in text
    assert "targets: missed: 1 strong incident(s) missed; 1 false page(s)" in text


def test_a_slow_median_misses_its_target() -> None:
    late = [Episode("CartAbandonmentSpike", (), START + 7_200 + 400, START + 9_000)]
    assert misses(_result(late)) == ["median time to detect 6m40s (target 5m00s)"]
    # CI's --check fails only on false pages and missed strong incidents.
    assert failures(_result(late)) == []


def test_the_picture_is_svg_with_a_bar_per_page_and_incident() -> None:
    page = Episode("CheckoutStepFailing", (("channel", "all"),), START + 7_380, START + 9_300)
    result = _result([page])
    line = [(START + i * 150.0, 0.7) for i in range(500)]
    threshold = [(START + i * 150.0, 0.8) for i in range(500)]
    picture = svg(
        result,
        {"cart abandonment (15 min)": {"value": line, "threshold": threshold}},
        START,
        [page],
    )
    root = ET.fromstring(picture)
    titles = [el.text for el in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "CheckoutStepFailing (channel=all)" in titles
    assert "abandonment-spike 0.7 at payment: detected" in titles
    assert "conversion-drop 0.25: not detected" in titles
    assert "traffic-surge 2.5" in titles
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 2
