"""Helpers for the producer unit tests: small seeded models and an independent recount."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pytest

from producers.config import (
    DEFAULT_CHANNEL_WEIGHTS,
    DEFAULT_COUNTRY_WEIGHTS,
    DEFAULT_CVR_FACTORS,
    DEFAULT_DEVICE_WEIGHTS,
    TrafficConfig,
    weights_for,
)
from producers.entries import LOST
from producers.model import TrafficModel
from producers.scenarios import Scenario, Timeline
from producers.truth import GroundTruth
from streams.contract.events import DEFAULT_CHECKOUT_STEPS, EventParser, Rejected

START_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a whole minute


def config(**overrides: Any) -> TrafficConfig:
    values: dict[str, Any] = {
        "checkout_steps": DEFAULT_CHECKOUT_STEPS,
        "channels": weights_for(list(DEFAULT_CHANNEL_WEIGHTS), DEFAULT_CHANNEL_WEIGHTS, {}),
        "devices": weights_for(list(DEFAULT_DEVICE_WEIGHTS), DEFAULT_DEVICE_WEIGHTS, {}),
        "countries": weights_for(list(DEFAULT_COUNTRY_WEIGHTS), DEFAULT_COUNTRY_WEIGHTS, {}),
        "cvr_factors": DEFAULT_CVR_FACTORS,
    }
    values.update(overrides)
    return TrafficConfig(**values)


def run(
    cfg: TrafficConfig,
    seed: int = 1,
    scenarios: Sequence[Scenario] = (),
    duration_s: float | None = None,
    lines: int | None = None,
    start_ms: int = START_MS,
) -> tuple[list[tuple[str | None, str]], GroundTruth]:
    """Emit like `generate` does to a file: (key, line) pairs in order, and the ground truth."""
    model = TrafficModel(cfg, Timeline(scenarios), seed, start_ms)
    truth = GroundTruth(model.stages)
    end = start_ms + duration_s * 1_000 if duration_s is not None else float("inf")
    out: list[tuple[str | None, str]] = []
    for entry in itertools.takewhile(lambda e: e[0] < end, model):
        truth.record(entry)
        if entry[2] != LOST:
            assert entry[3] is not None
            out.append((entry[4], entry[3]))
            if lines is not None and len(out) >= lines:
                break
    truth.finish()
    return out, truth


def recount(
    lines: Iterable[str | bytes], steps: Sequence[str] = DEFAULT_CHECKOUT_STEPS
) -> dict[str, Any]:
    """The worker's rules, written independently of producers.truth, from emitted lines only."""
    parser = EventParser(steps)
    stages = ["visit", "cart", *steps, "purchase"]
    seen: set[str] = set()
    first: dict[str, dict[int, int]] = {}
    orders: dict[str, tuple[int, Decimal]] = {}
    invalid = duplicates = events = 0
    for raw in lines:
        try:
            ev = parser.parse(raw.encode() if isinstance(raw, str) else raw)
        except Rejected:
            invalid += 1
            continue
        if ev.event_id in seen:
            duplicates += 1
            continue
        seen.add(ev.event_id)
        events += 1
        if ev.type == "visit":
            stage = 0
        elif ev.type == "add_to_cart":
            stage = 1
        elif ev.type == "checkout_step":
            stage = 2 + list(steps).index(ev.step)
        elif ev.type == "remove_from_cart":
            continue  # not a funnel stage
        else:
            stage = len(stages) - 1
            orders.setdefault(ev.order_id, (ev.ts, ev.revenue))
        per = first.setdefault(ev.session_id, {})
        per[stage] = min(per.get(stage, ev.ts), ev.ts)
    minutes: dict[int, dict[str, Any]] = {}

    def row(ms: int) -> dict[str, Any]:
        return minutes.setdefault(
            ms - ms % 60_000,
            {"sessions": dict.fromkeys(stages, 0), "orders": 0, "revenue": Decimal(0)},
        )

    for per in first.values():
        for k, name in enumerate(stages):
            reached = [ts for stage, ts in per.items() if stage >= k]
            if reached:
                row(min(reached))["sessions"][name] += 1
    for ts, revenue in orders.values():
        r = row(ts)
        r["orders"] += 1
        r["revenue"] += revenue
    return {
        "minutes": minutes,
        "invalid": invalid,
        "duplicates": duplicates,
        "events": events,
    }


def as_json(lines: Iterable[tuple[str | None, str]]) -> list[dict[str, Any]]:
    return [json.loads(line) for _, line in lines]


@pytest.fixture(scope="module")
def default_sample() -> list[dict[str, Any]]:
    """~40,000 sessions with the default model: 3 h of arrivals plus 20 min to finish."""
    lines, _ = run(config(rate=14.0), seed=11, duration_s=3 * 3_600 + 1_200)
    return as_json(lines)
