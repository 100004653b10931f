"""Exactness: the generator's ground truth, what a variant stored, and the check of the two."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from storepulse.bench.agents import naive_key
from streams.contract.money import money_units
from streams.contract.times import parse_ts
from streams.query.customers import customer_report
from streams.settings import Settings
from streams.store import customer_keys as ck
from streams.store.client import connect
from streams.store.customers import CustomerStore
from streams.store.funnel import FunnelStore
from streams.store.keys import SEP, parse_totals

__all__ = [
    "Check",
    "Expected",
    "both_checks",
    "count_check",
    "customer_check",
    "facts_published",
    "naive_check",
    "observed",
    "worker_check",
]

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
    # The customer figures per UTC day (the manifest's customers.days), for the customer stage.
    customer_days: list[dict[str, Any]] = field(default_factory=list)

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
            customer_days=list(manifest.get("customers", {}).get("days", [])),
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


async def facts_published(settings: Settings) -> int:
    """Customer facts the session worker appended (and, in a clean run, published once)."""
    client = connect(settings)
    try:
        store = FunnelStore(client, settings)
        totals = await store.totals(await store.partitions())
    finally:
        await client.aclose()
    return sum(parse_totals(totals).facts.values())


def customer_check(expected: Expected, facts: int, with_funnel: bool = False) -> Check:
    """The customer stage applied every fact, and its daily report is the manifest's.

    Without the funnel in the same Redis database (the customer stage alone), the anonymous
    orders, which the session worker counts, are left out of the comparison.
    """

    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        client = connect(settings)
        try:
            customers = CustomerStore(client, settings)
            totals = await customers.totals(await customers.partitions())
            days = expected.customer_days
            rows: list[dict[str, Any]] = []
            if days:
                first = parse_ts(days[0]["start"]) // 1_000
                report = await customer_report(
                    customers,
                    FunnelStore(client, settings),
                    settings,
                    "day",
                    first,
                    first + 86_400 * len(days),
                )
                rows = report["rows"]
        finally:
            await client.aclose()
        applied = sum(n for k, n in totals.items() if k.startswith(ck.TOTAL_FACTS + SEP))
        skip = set() if with_funnel else {"anonymous_orders"}
        want = [{k: v for k, v in d.items() if k not in skip} for d in days]
        got = [{k: r[k] for k in w} for r, w in zip(rows, want, strict=False)]
        ok = applied == facts and got == want and len(rows) == len(days) and bool(days)
        return ok, {
            "facts": facts,
            "applied": applied,
            "days": len(days),
            "mismatches": [
                {"expected": w, "stored": g} for w, g in zip(want, got, strict=False) if w != g
            ],
        }

    return check


def both_checks(first: Check, second: Check) -> Check:
    """Exact when both are; the detail of each."""

    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        ok_1, detail_1 = await first(settings, bodies)
        ok_2, detail_2 = await second(settings, bodies)
        return ok_1 and ok_2, {"sessions": detail_1, "customers": detail_2}

    return check
