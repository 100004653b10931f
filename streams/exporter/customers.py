"""`/api/customers` and `/api/cohorts`: the CLI's customer JSON, for a given or recent range."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from streams.contract.periods import COHORT_PERIODS, PERIODS, Period, next_start, period_start
from streams.contract.times import parse_instant_ms
from streams.query.customers import MAX_PERIODS, cohort_report, current_start, customer_report
from streams.settings import Settings
from streams.store.customers import CustomerStore
from streams.store.funnel import FunnelStore

__all__ = ["CustomerRoutes"]

Answer = tuple[int, Any]  # status and JSON body; routes.py makes the Response


def _period(query: Mapping[str, str], allowed: tuple[Period, ...]) -> Period:
    value = query.get("period", "day")
    for period in allowed:
        if value == period:
            return period
    raise ValueError(f"period must be one of {', '.join(allowed)}")


class CustomerRoutes:
    """The two customer routes (routes.py caches them and runs them where Redis is read)."""

    def __init__(
        self,
        settings: Settings,
        customers: CustomerStore,
        funnel: FunnelStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.customers = customers
        self.funnel = funnel
        self.clock = clock

    async def _range(
        self, query: Mapping[str, str], period: Period, default_last: int
    ) -> tuple[int, int]:
        """[from, to): explicit (`from` and `to`), or the `last` N periods ending with the
        current one (the one holding the newest complete bucket, docs/semantics.md)."""
        unknown = set(query) - {"period", "from", "to", "last"}
        if unknown:
            raise ValueError(f"unknown parameters: {', '.join(sorted(unknown))}")
        if ("from" in query) != ("to" in query):
            raise ValueError(
                f"give both from and to, or neither (then last, default {default_last})"
            )
        if "from" in query:
            if "last" in query:
                raise ValueError("give either from and to, or last")
            return (
                parse_instant_ms(query["from"]) // 1_000,
                parse_instant_ms(query["to"]) // 1_000,
            )
        text = query.get("last", str(default_last))
        if not text.isdigit() or not 1 <= int(text) <= MAX_PERIODS:
            raise ValueError(f"last must be a whole number from 1 to {MAX_PERIODS}")
        current = await current_start(self.funnel, self.settings, period, self.clock)
        start = current
        for _ in range(int(text) - 1):
            start = period_start(period, start - 1)
        return start, next_start(period, current)

    async def answer(self, path: str, raw_query: str) -> Answer:
        """The answer of /api/customers or /api/cohorts."""
        if path == "/api/customers":
            return await self.report(raw_query)
        return await self.cohorts(raw_query)

    async def report(self, raw_query: str) -> Answer:
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        try:
            period = _period(query, PERIODS)
            from_s, to_s = await self._range(query, period, 1)
            body = await customer_report(
                self.customers, self.funnel, self.settings, period, from_s, to_s
            )
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, body

    async def cohorts(self, raw_query: str) -> Answer:
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        try:
            period = _period(query, COHORT_PERIODS)
            from_s, to_s = await self._range(query, period, 8)
            body = await cohort_report(self.customers, self.settings, period, from_s, to_s)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, body
