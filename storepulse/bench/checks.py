"""Exactness: the generator's ground truth, what a variant stored, and the check of the two."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from storepulse.bench.agents import naive_key
from streams.contract.money import money_units
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore
from streams.store.keys import parse_totals

__all__ = ["Check", "Expected", "count_check", "naive_check", "observed", "worker_check"]

# An exactness check: (settings of the variant, its sensors' results) -> (exact, detail).
Check = Callable[[Settings, list[dict[str, Any]]], Awaitable[tuple[bool, dict[str, Any]]]]


@dataclass
class Expected:
    """Ground truth of a generated run, from the generator's manifest."""

    lines: int
    accepted: int
    duplicates: int
    rejected: int
    sessions: dict[str, int]
    orders: int
    revenue_units: int  # ten-thousandths, as the worker stores money

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Expected:
        t = manifest["totals"]
        return cls(
            lines=int(t["lines"]),
            accepted=int(t["events"]),
            duplicates=int(t["injected"]["duplicates"]),
            rejected=int(t["injected"]["invalid"]),
            sessions={k: int(v) for k, v in t["sessions"].items()},
            orders=int(t["orders"]),
            revenue_units=money_units(Decimal(t["revenue"])),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "sessions": self.sessions,
            "orders": self.orders,
            "revenue_units": self.revenue_units,
        }


def observed(fields: dict[str, int], stages: Sequence[str]) -> dict[str, Any]:
    """The worker's stored counters in the shape of Expected.as_dict()."""
    totals = parse_totals(fields)
    return {
        "accepted": sum(totals.events.values()),
        "duplicates": totals.duplicates,
        "rejected": sum(totals.rejected.values()),
        "sessions": {
            s: sum(n for (stage, _, _), n in totals.funnel.items() if stage == s) for s in stages
        },
        "orders": sum(totals.orders.values()),
        "revenue_units": sum(totals.revenue_units.values()),
    }


def count_check(n: int) -> Check:
    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        seen = sum(int(b["count"]) for b in bodies)
        agent = sum(int(b.get("agent_count", 0)) for b in bodies)
        return seen == n and agent == n, {"expected": n, "acked": seen, "decoded": agent}

    return check


def naive_check(n: int) -> Check:
    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        client = connect(settings)
        try:
            stored = 0
            for p in range(settings.partitions):
                values = await client.hgetall(naive_key(settings.topic, p))
                stored += sum(int(v) for v in values.values())
        finally:
            await client.aclose()
        return stored == n, {"expected": n, "stored": stored}

    return check


def worker_check(expected: Expected) -> Check:
    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        client = connect(settings)
        try:
            store = FunnelStore(client, settings)
            totals = await store.totals(await store.partitions())
        finally:
            await client.aclose()
        got = observed(totals, settings.stages)
        want = expected.as_dict()
        diff = {k: {"expected": want[k], "stored": got[k]} for k in want if want[k] != got[k]}
        return not diff, {"expected": want, "mismatches": diff}

    return check
