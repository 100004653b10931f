"""The customer store: the batch write of customer facts and the reads of periods and cohorts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from streams.contract.accounts import risk_factor_scaled
from streams.contract.periods import Period
from streams.settings import Settings
from streams.store import account_keys as ak
from streams.store import customer_keys as ck
from streams.store.funnel import BatchCall, FunnelStore

__all__ = ["ACCOUNTS_MARK", "CUSTOMER_SCRIPT", "CohortSums", "CustomerStore", "PeriodSums"]

_SOURCES = resources.files("streams.store")
# The account views are written in the same call: apply_accounts.lua goes where the customer
# script marks it, after the helpers it uses (one header each; the accounts' skips duplicates).
ACCOUNTS_MARK = "--@accounts: apply_accounts.lua is inserted here (streams/store/customers.py).\n"
_ACCOUNTS = (
    _SOURCES.joinpath("account_lib.lua").read_text()
    + _SOURCES.joinpath("apply_accounts.lua").read_text()
)
# Of the account constants only those the inserted scripts name (the query's own, Q_*, MODE_*,
# SORT_*, TMP_*, ..., stay out): each header line is a local of the script's main chunk, where
# Lua allows 200, and the customer, cart and account parts with every constant came to 214.
_QUERY_ONLY = frozenset(n for n in ak.LUA_CONSTANTS if not re.search(rf"\b{n}\b", _ACCOUNTS))
# The headers, the carts' table and library (carts.lua), then the script's own text.
CUSTOMER_SCRIPT = (
    ck.lua_header()
    + ak.lua_header(skip=frozenset(ck.LUA_CONSTANTS) | _QUERY_ONLY)
    + ck.carts_table()
    + _SOURCES.joinpath("bytes.lua").read_text()
    + _SOURCES.joinpath("carts.lua").read_text()
    + _SOURCES.joinpath("apply_customers.lua").read_text().replace(ACCOUNTS_MARK, _ACCOUNTS, 1)
)


@dataclass
class PeriodSums:
    """One period's figures summed over customer partitions (each customer is in one)."""

    active: int = 0
    ordering: int = 0
    new: int = 0
    retained: int = 0  # ordering in this period and the one before
    counts: dict[str, int] = field(default_factory=dict)  # customer_keys COUNT_* fields


@dataclass
class CohortSums:
    """One cohort: its customers and its values (customer_keys VALUE_* fields), summed."""

    customers: int = 0
    values: dict[str, int] = field(default_factory=dict)


def _add(into: dict[str, int], row: Mapping[bytes, bytes]) -> None:
    for name, value in row.items():
        key = name.decode()
        into[key] = into.get(key, 0) + int(value)


class CustomerStore(FunnelStore):
    """The customer stage's keys, under the customer topic's partition prefixes."""

    SCRIPT = CUSTOMER_SCRIPT

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        super().__init__(client, settings)
        self.topic = settings.customer_topic

    def _argv(self, call: BatchCall) -> list[Any]:
        argv: list[Any] = list(
            ck.CustomerArgs(
                prefix=self.prefix(call.partition),
                expected_offset=call.expected_offset,
                new_offset=call.new_offset,
                new_fp=call.new_fp,
                watermark_ms=call.watermark_ms,
                highwater=call.highwater,
                now_ms=call.now_ms,
                horizon_s=call.bucket_horizon_s,
                bucket_ms=self.settings.bucket_seconds * 1_000,
                recovery_ms=self.settings.recovery_window_seconds * 1_000,
                cart_horizon_ms=call.watermark_ms
                - (self.settings.recovery_window_seconds + self.settings.allowed_lateness_seconds)
                * 1_000,
                bucket_horizon_s=call.watermark_ms // 1_000 - self.settings.retention_seconds,
                risk_factor=risk_factor_scaled(self.settings.at_risk_factor),
                n_totals=len(call.totals),
            )
        )
        for name, increment in call.totals.items():
            argv += [name, increment]
        argv.append(json.dumps(call.events, separators=(",", ":"), ensure_ascii=False))
        return argv

    # Read side ---------------------------------------------------------------------------

    async def anonymous_orders(
        self, partitions: Sequence[int], days: Sequence[int]
    ) -> dict[int, int]:
        """The session worker's anonymous orders per hour (its keys, on the events topic)."""
        return await FunnelStore(self.client, self.settings).anonymous_orders(partitions, days)

    async def period_sums(
        self, partitions: Sequence[int], period: Period, starts: Sequence[int]
    ) -> dict[int, PeriodSums]:
        """Figures of periods (one round trip, 4 commands per period and partition, none of
        them proportional to the customers: set sizes and the period's counters)."""
        per = 4
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pfx = self.prefix(p)
                for start in starts:
                    pipe.scard(ck.period_key(pfx, ck.ACTIVE, period, start))
                    pipe.scard(ck.period_key(pfx, ck.ORDERING, period, start))
                    pipe.scard(ck.period_key(pfx, ck.COHORT, period, start))
                    pipe.hgetall(ck.period_key(pfx, ck.COUNTS, period, start))
            rows = await pipe.execute()
        out = {start: PeriodSums() for start in starts}
        i = 0
        for _ in partitions:
            for start in starts:
                active, ordering, new, counts = rows[i : i + per]
                i += per
                sums = out[start]
                sums.active += int(active)
                sums.ordering += int(ordering)
                sums.new += int(new)
                _add(sums.counts, counts)
        for sums in out.values():
            sums.retained = sums.counts.pop(ck.COUNT_RETAINED, 0)
        return out

    async def cohort_sums(
        self, partitions: Sequence[int], period: Period, starts: Sequence[int]
    ) -> dict[int, CohortSums]:
        """The cohorts starting at starts: their sizes and values (one round trip)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pfx = self.prefix(p)
                for start in starts:
                    pipe.scard(ck.period_key(pfx, ck.COHORT, period, start))
                    pipe.hgetall(ck.period_key(pfx, ck.COHORT_VALUES, period, start))
            rows = await pipe.execute()
        out = {start: CohortSums() for start in starts}
        i = 0
        for _ in partitions:
            for start in starts:
                size, values = rows[i], rows[i + 1]
                i += 2
                out[start].customers += int(size)
                _add(out[start].values, values)
        return out

    async def customer(self, customer: str) -> dict[str, Any] | None:
        """One customer's stored state (tests and debugging): orders by ts, history."""
        p = await self.partition_of_customer(customer)
        if p is None:
            return None
        pfx = self.prefix(p)
        raw: Any = await self.client.hgetall(f"{pfx}{ck.CUSTOMER}{customer}")
        ids: Any = await self.client.zrange(f"{pfx}{ck.CUSTOMER_ORDERS}{customer}", 0, -1)
        history = raw.get(ck.FIELD_HISTORY.encode())
        return {
            "partition": p,
            "orders": [i.decode() for i in ids],
            "history": None if history is None else history.decode().split(ck.DETAIL_SEP),
        }

    async def partition_of_customer(self, customer: str) -> int | None:
        """The partition holding a customer's state, found by looking (tests, debugging)."""
        for p in await self.partitions():
            if await self.client.exists(f"{self.prefix(p)}{ck.CUSTOMER}{customer}"):
                return p
        return None

    async def totals_of(self, partitions: Sequence[int] | None = None) -> dict[str, int]:
        """The customer stage's cumulative counters, summed over partitions."""
        return await self.totals(await self.partitions() if partitions is None else partitions)
