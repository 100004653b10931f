"""Named incident scenarios placed on a run's timeline, and what each changes at a given time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streams.contract.times import parse_duration

__all__ = [
    "SCENARIOS",
    "Scenario",
    "ScenarioError",
    "Timeline",
    "parse_scenario",
]

# name -> (default strength, meaning of strength); strength bounds are checked in parse_scenario.
SCENARIOS: dict[str, tuple[float, str]] = {
    "steady": (0.0, "no change: marks a baseline window in the manifest"),
    "abandonment-spike": (
        0.5,
        "share of sessions whose checkout step (default payment) fails, 0..1",
    ),
    "checkout-outage": (1.0, "share of sessions failing the step (default payment), 0..1"),
    "traffic-surge": (3.0, "extra low-intent sessions as a multiple of the baseline session rate"),
    "tracking-loss": (0.3, "share of events never sent, 0..1"),
    "conversion-drop": (
        0.5,
        "share of the shoppers who would add to cart that leave without (broken search or "
        "product pages), 0..1",
    ),
}
_STEP_SCENARIOS = frozenset({"abandonment-spike", "checkout-outage"})
_SHARE_SCENARIOS = frozenset(
    {"abandonment-spike", "checkout-outage", "tracking-loss", "conversion-drop"}
)


class ScenarioError(ValueError):
    """A scenario specification that cannot be used, with a readable reason."""


@dataclass(frozen=True)
class Scenario:
    """One scenario, active for event times in [start_s, start_s + duration_s) from run start."""

    name: str
    start_s: float = 0.0
    duration_s: float | None = None  # None: until the end of the run
    strength: float = 0.0
    step: str | None = None  # the failing checkout step (step scenarios only)

    def active(self, offset_s: float) -> bool:
        end = math.inf if self.duration_s is None else self.start_s + self.duration_s
        return self.start_s <= offset_s < end

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "start_offset_s": self.start_s,
            "duration_s": self.duration_s,
            "strength": self.strength,
        }
        if self.step is not None:
            out["step"] = self.step
        return out


def _duration(name: str, text: str) -> float:
    try:
        return parse_duration(text, allow_zero=True)
    except ValueError as exc:
        raise ScenarioError(f"scenario {name}: {exc}") from None


def parse_scenario(spec: str, checkout_steps: Sequence[str]) -> Scenario:
    """Parse NAME[:start=SECONDS,duration=SECONDS,strength=FLOAT,step=NAME]."""
    name, _, params = spec.strip().partition(":")
    name = name.strip()
    if name not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {name!r}, expected one of {', '.join(SCENARIOS)}")
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in {"start", "duration", "strength", "step"}:
            raise ScenarioError(
                f"scenario {name}: bad parameter {part!r}, expected start=, duration=, "
                "strength= or step="
            )
        values[key] = value.strip()
    start = _duration(name, values.get("start", "0"))
    duration = _duration(name, values["duration"]) if "duration" in values else None
    try:
        strength = float(values.get("strength", SCENARIOS[name][0]))
    except ValueError:
        raise ScenarioError(f"scenario {name}: strength must be a number") from None
    if not math.isfinite(strength) or strength < 0:
        raise ScenarioError(f"scenario {name}: strength must be >= 0")
    if name in _SHARE_SCENARIOS and strength > 1:
        raise ScenarioError(f"scenario {name}: strength is a share, between 0 and 1")
    step = None
    if name in _STEP_SCENARIOS:
        default_step = "payment" if "payment" in checkout_steps else checkout_steps[-1]
        step = values.get("step", default_step)
        if step not in checkout_steps:
            raise ScenarioError(
                f"scenario {name}: step {step!r} is not a checkout step "
                f"({', '.join(checkout_steps)})"
            )
    elif "step" in values:
        raise ScenarioError(f"scenario {name} takes no step=")
    return Scenario(name, start, duration, strength, step)


class Timeline:
    """The scenarios of a run; answers what is in effect at an offset (seconds) from its start."""

    def __init__(self, scenarios: Iterable[Scenario] = ()) -> None:
        self.scenarios = tuple(scenarios)
        self._failing = [s for s in self.scenarios if s.step is not None and s.strength > 0]
        self._surges = [s for s in self.scenarios if s.name == "traffic-surge" and s.strength > 0]
        self._losses = [s for s in self.scenarios if s.name == "tracking-loss" and s.strength > 0]
        self._drops = [s for s in self.scenarios if s.name == "conversion-drop" and s.strength > 0]
        self.has_failures = bool(self._failing)
        self.has_surges = bool(self._surges)
        self.has_losses = bool(self._losses)
        self.has_drops = bool(self._drops)

    def step_failure(self, step: str, offset_s: float) -> float:
        """Share of sessions failing `step` now; overlapping scenarios fail independently."""
        passing = 1.0
        for s in self._failing:
            if s.step == step and s.active(offset_s):
                passing *= 1.0 - s.strength
        return 1.0 - passing

    def surge(self, offset_s: float) -> float:
        """Extra low-intent sessions now, as a multiple of the baseline session rate."""
        return sum(s.strength for s in self._surges if s.active(offset_s))

    def conversion_drop(self, offset_s: float) -> float:
        """Share of would-be carting sessions that do not cart now; overlaps are independent."""
        kept = 1.0
        for s in self._drops:
            if s.active(offset_s):
                kept *= 1.0 - s.strength
        return 1.0 - kept

    def loss(self, offset_s: float) -> float:
        """Share of events never sent now; overlapping scenarios lose independently."""
        kept = 1.0
        for s in self._losses:
            if s.active(offset_s):
                kept *= 1.0 - s.strength
        return 1.0 - kept
