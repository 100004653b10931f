"""Alert states from an expression's answers, and the score of firings against the incidents."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from producers.scenarios import Scenario
from storepulse.backtest.plan import STRONG

__all__ = [
    "GRACE_S",
    "MIN_EXPOSED",
    "TARGETS",
    "Episode",
    "IncidentResult",
    "attribute",
    "episodes",
    "summarize",
]

# Which alerts answer which incident: a failing step raises its drop-off and the abandonment;
# a conversion drop lowers conversion.
TARGETS: dict[str, tuple[str, ...]] = {
    "abandonment-spike": ("CheckoutStepFailing", "CartAbandonmentSpike"),
    "checkout-outage": ("CheckoutStepFailing", "CartAbandonmentSpike"),
    "conversion-drop": ("ConversionDrop",),
}
# A page that starts within this long after an incident ends is still its page: the 15-minute
# window holds incident data for 15 minutes, orders trail carts by a few minutes, plus `for:`.
GRACE_S = 20 * 60
# Sessions reaching the affected stage during an incident, below which it counts as too small
# to be sure of (issue 14: "with at least 100 sessions reaching the affected step during it").
MIN_EXPOSED = 100


@dataclass(frozen=True)
class Episode:
    """One page: an alert's label set firing from `start` to `end` (epoch seconds)."""

    alert: str
    labels: tuple[tuple[str, str], ...]
    start: float
    end: float


def episodes(
    alert: str,
    series: Iterable[tuple[Mapping[str, str], Sequence[float]]],
    step: float,
    for_s: float,
) -> list[Episode]:
    """Firing periods from the evaluation times at which an alert's expression had a result.

    Prometheus' rule: an element present at an evaluation becomes pending there (active
    since then); it fires at the first evaluation at least `for` after that, for as long as
    it stays present at every evaluation; one evaluation without it ends the alert.
    """
    out = []
    for labels, times in series:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
        run: list[float] = []
        for t in [*sorted(times), None]:
            if t is not None and run and t - run[-1] <= step * 1.001:
                run.append(t)
                continue
            if run:
                active, last = run[0], run[-1]
                firing = [x for x in run if x - active >= for_s - 1e-6]
                if firing:
                    out.append(Episode(alert, key, firing[0], last))
            run = [] if t is None else [t]
    return sorted(out, key=lambda e: (e.start, e.alert, e.labels))


@dataclass
class IncidentResult:
    """An injected incident and when (if) its alerts fired."""

    scenario: Scenario
    start: float  # epoch seconds
    end: float
    exposed: int  # sessions reaching the affected stage during it
    detected_by: dict[str, float]  # alert -> seconds from the start to its first firing

    @property
    def strong(self) -> bool:
        return self.scenario.strength >= STRONG

    @property
    def detected(self) -> bool:
        return bool(self.detected_by)

    @property
    def time_to_detect_s(self) -> float | None:
        return min(self.detected_by.values()) if self.detected_by else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.scenario.name,
            "start_offset_s": self.scenario.start_s,
            "duration_s": self.scenario.duration_s,
            "strength": self.scenario.strength,
            "step": self.scenario.step,
            "exposed_sessions": self.exposed,
            "strong": self.strong,
            "detected": self.detected,
            "time_to_detect_s": self.time_to_detect_s,
            "detected_by": self.detected_by,
        }


def _within(e: Episode, start: float, end: float) -> bool:
    """The page began while the incident could cause it: in it, or within the grace after."""
    return start <= e.start <= end + GRACE_S


def attribute(
    pages: Sequence[Episode],
    incidents: Sequence[tuple[Scenario, float, float, int]],
) -> tuple[list[IncidentResult], list[Episode]]:
    """Each incident's detections (its target alerts' first firing) and the false pages: those
    beginning outside every incident (in a traffic surge, a tracking loss or a calm hour)."""
    results = []
    for scenario, start, end, exposed in incidents:
        found: dict[str, float] = {}
        for e in pages:
            if e.alert in TARGETS[scenario.name] and _within(e, start, end):
                found[e.alert] = min(found.get(e.alert, float("inf")), max(0.0, e.start - start))
        results.append(IncidentResult(scenario, start, end, exposed, found))
    false = [e for e in pages if not any(_within(e, s, x) for _, s, x, _ in incidents)]
    return results, false


def _figures(
    incidents: Sequence[IncidentResult],
    pages: Sequence[Episode],
    false: Sequence[Episode],
    days: float,
    alert: str | None,
    min_exposed: int,
) -> dict[str, Any]:
    def detected(r: IncidentResult) -> bool:
        return r.detected if alert is None else alert in r.detected_by

    def ttd(r: IncidentResult) -> float | None:
        return r.time_to_detect_s if alert is None else r.detected_by.get(alert)

    strong = [r for r in incidents if r.strong and r.exposed >= min_exposed]
    found = [r for r in incidents if detected(r)]
    times = sorted(t for r in found if (t := ttd(r)) is not None)
    true_pages = len(pages) - len(false)
    return {
        "incidents": len(incidents),
        "strong_incidents": len(strong),
        "strong_detected": sum(1 for r in strong if detected(r)),
        "detected": len(found),
        "false_pages": len(false),
        "false_pages_per_day": round(len(false) / days, 3),
        "pages": len(pages),
        "recall": round(len(found) / len(incidents), 3) if incidents else None,
        "precision": round(true_pages / len(pages), 3) if pages else None,
        "median_time_to_detect_s": statistics.median(times) if times else None,
        "max_time_to_detect_s": max(times) if times else None,
    }


def summarize(
    results: Sequence[IncidentResult],
    pages: Sequence[Episode],
    false: Sequence[Episode],
    days: float,
    alerts: Sequence[str],
    min_exposed: int,
) -> dict[str, Any]:
    """The backtest's figures overall and per alert (each over the incidents it answers)."""
    out = _figures(results, pages, false, days, None, min_exposed)
    per_alert = {}
    for alert in alerts:
        mine = [r for r in results if alert in TARGETS[r.scenario.name]]
        own = [e for e in pages if e.alert == alert]
        own_false = [e for e in false if e.alert == alert]
        per_alert[alert] = _figures(mine, own, own_false, days, alert, min_exposed)
    out["per_alert"] = per_alert
    return out
