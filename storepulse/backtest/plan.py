"""What a backtest injects: incidents and the noise that must not page, at seeded random times."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from producers.scenarios import Scenario

__all__ = [
    "INCIDENT_KINDS",
    "NOISE_KINDS",
    "STRONG",
    "Plan",
    "PlanError",
    "default_incidents",
    "make_plan",
]

# Incidents an alert must catch, with their share of the draws, strength range and duration
# range (minutes). Abandonment spikes and conversion drops vary from barely visible to severe;
# an outage stops most of a step.
INCIDENT_KINDS: dict[str, tuple[float, tuple[float, float]]] = {
    "abandonment-spike": (0.4, (0.2, 0.9)),
    "checkout-outage": (0.2, (0.7, 1.0)),
    "conversion-drop": (0.4, (0.2, 0.8)),
}
_INCIDENT_MINUTES = (10, 60)
# Noise per day: what a normal shop lives with. Traffic surges of low-intent sessions (1.5 to 4
# times the usual arrivals, 20-90 min) twice a day; tracking losing 10-30 % of the events for
# 15-60 min once a day.
NOISE_KINDS: dict[str, tuple[int, tuple[float, float], tuple[int, int]]] = {
    "traffic-surge": (2, (1.5, 4.0), (20, 90)),
    "tracking-loss": (1, (0.1, 0.3), (15, 60)),
}
STRONG = 0.5  # incidents at least this strong must be detected (issue 14's target)
# Scenarios keep this far apart, so every page is attributed to one cause; the first is placed
# after the first hour (the recent baseline needs some history).
_GAP_S = 45 * 60
_LEAD_S = 3_600
_TRIES = 10_000


class PlanError(ValueError):
    """Days, incidents and noise that do not fit together: a bad argument (exit 2)."""


@dataclass(frozen=True)
class Plan:
    """The incidents and noise of a backtest, as producers' scenarios (offsets from the start)."""

    days: float
    seed: int
    incidents: tuple[Scenario, ...]
    noise: tuple[Scenario, ...]

    @property
    def scenarios(self) -> list[Scenario]:
        return sorted((*self.incidents, *self.noise), key=lambda s: s.start_s)


def default_incidents(days: float) -> int:
    """Ten incidents a week, at least three."""
    return max(3, math.ceil(10 * days / 7))


def _place(
    rng: random.Random, taken: list[tuple[float, float]], duration: float, total: float
) -> float:
    for _ in range(_TRIES):
        start = float(round(rng.uniform(_LEAD_S, total - duration - _GAP_S)))
        end = start + duration
        if all(end + _GAP_S <= a or start >= b + _GAP_S for a, b in taken):
            taken.append((start, end))
            return start
    raise PlanError(
        f"{len(taken)} scenarios leave no room for another in {total / 86_400:g} days: "
        "ask for fewer incidents or more days"
    )


def make_plan(
    days: float, seed: int, incidents: int, steps: Sequence[str], noise: bool = True
) -> Plan:
    """Seeded incidents (kind, start, duration, strength, step) and noise; ValueError when they
    do not fit. Start times are whole seconds."""
    if days <= 0 or incidents < 0:
        raise PlanError("days must be positive and incidents at least 0")
    rng = random.Random(seed)
    total = days * 86_400.0
    taken: list[tuple[float, float]] = []
    kinds = list(INCIDENT_KINDS)
    weights = [INCIDENT_KINDS[k][0] for k in kinds]
    placed: list[Scenario] = []
    for _ in range(incidents):
        kind = rng.choices(kinds, weights)[0]
        low, high = INCIDENT_KINDS[kind][1]
        strength = round(rng.uniform(low, high), 2)
        duration = 60.0 * rng.randint(*_INCIDENT_MINUTES)
        step = rng.choice(list(steps)) if kind != "conversion-drop" else None
        start = _place(rng, taken, duration, total)
        placed.append(Scenario(kind, start, duration, strength, step))
    extra: list[Scenario] = []
    for kind, (per_day, (low, high), minutes) in NOISE_KINDS.items() if noise else ():
        for _ in range(max(1, round(per_day * days))):
            duration = 60.0 * rng.randint(*minutes)
            strength = round(rng.uniform(low, high), 2)
            extra.append(Scenario(kind, _place(rng, taken, duration, total), duration, strength))
    order = sorted(placed, key=lambda s: s.start_s)
    return Plan(days, seed, tuple(order), tuple(sorted(extra, key=lambda s: s.start_s)))
