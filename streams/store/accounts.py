"""The account store: query_accounts.lua per customer partition, its replies parsed.

One call per partition and question (pipelined over partitions): the ranking with the range's
totals, the raw rows of chosen accounts, or the per-account sums of the roll-ups. The script
keeps the heavy part in Redis (unions of the hours' zsets, counts by score), so a reply grows
with the accounts asked for, not with the events behind them (docs/semantics.md, "Accounts").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from streams.contract.accounts import AccountData, Order, SortKey
from streams.settings import Settings
from streams.store import account_keys as ak
from streams.store import customer_keys as ck
from streams.store.funnel import FunnelStore

__all__ = ["QUERY_SCRIPT", "AccountStore", "Ranking", "RepSums", "unpack_list", "unpack_pairs"]

_SOURCES = resources.files("streams.store")
QUERY_SCRIPT = (
    ck.lua_header()
    + ak.lua_header(skip=frozenset(ck.LUA_CONSTANTS))
    + _SOURCES.joinpath("account_lib.lua").read_text()
    + _SOURCES.joinpath("query_accounts.lua").read_text()
)
# Bytes no UTF-8 text holds, decoded: what splits a packed reply.
_FIELD = ak.PACK_FIELD.decode("utf-8", "surrogateescape")
_RECORD = ak.PACK_RECORD.decode("utf-8", "surrogateescape")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def unpack_list(blob: bytes | str) -> list[str]:
    """A packed list of names."""
    text = _text(blob)
    return text.split(_RECORD) if text else []


def unpack_pairs(blob: bytes | str) -> dict[str, str]:
    """A packed list of (name, value) records; a null value is ''."""
    return dict(r.split(_FIELD, 1) for r in unpack_list(blob))


@dataclass
class Ranking:
    """One partition's share of a ranking: its totals and its top accounts (score '' = null)."""

    partition: int
    counts: list[int]  # active, ordering, users, ordering users, sessions, orders, new, risky
    revenue_units: dict[str, int]
    unseen_new: list[str]  # customers with history first in range, never seen as accounts
    # The top accounts by the key, per currency when the key is revenue (else under '').
    candidates: dict[str, list[tuple[str, float | None]]]


@dataclass
class RepSums:
    """One partition's per-account figures for the roll-ups (reps, tiers)."""

    active: set[str] = field(default_factory=set)
    ordering: set[str] = field(default_factory=set)
    new: set[str] = field(default_factory=set)
    unseen_new: list[str] = field(default_factory=list)
    at_risk: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    orders: dict[str, int] = field(default_factory=dict)
    orders_before: dict[str, int] = field(default_factory=dict)
    revenue: dict[str, dict[str, int]] = field(default_factory=dict)  # currency -> account
    revenue_before: dict[str, dict[str, int]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    ordering_users: dict[str, int] = field(default_factory=dict)


def _score(text: str) -> float | None:
    return None if text == "" else float(text)


def _ints(blob: bytes | str) -> dict[str, int]:
    # Zset scores of integer sums print as integers ("3"), exact below 2^53.
    return {k: int(float(v)) for k, v in unpack_pairs(blob).items()}


def _currencies(flat: Sequence[Any]) -> dict[str, dict[str, int]]:
    return {_text(flat[i]): _ints(flat[i + 1]) for i in range(0, len(flat), 2)}


def _split_units(flat: Sequence[Any]) -> dict[str, int]:
    # (currency, the sum of the values but their last 8 digits, the sum of those) triples.
    return {
        _text(flat[i]): int(flat[i + 1]) * 10**8 + int(flat[i + 2]) for i in range(0, len(flat), 3)
    }


def _account_data(reply: Sequence[Any]) -> AccountData:
    a, seen, before, last_ts, last_m2, first, history, pairs, orders = reply
    data = AccountData(_text(a), seen=int(seen) == 1, before_to=int(before))
    if _text(last_ts):
        m2 = _text(last_m2)
        data.last_before_to = (int(float(_text(last_ts))), int(m2) if m2 else None)
    if _text(first):
        data.first_tracked_ms = int(float(_text(first)))
    if _text(history):
        n, f, lst = _text(history).split(ck.DETAIL_SEP)
        data.history = (int(n), int(f), int(lst))
    for raw in pairs:
        m = _text(raw)
        hour = int(m[2 : 2 + ak.HOUR_DIGITS])
        rest = m[2 + ak.HOUR_DIGITS :]
        size, _, tail = rest.partition(":")
        data.pairs.append((hour, tail[: int(size)], tail[int(size) :]))
    for i in range(0, len(orders), 2):
        ts, units, cur, session, user, _ = _text(orders[i + 1]).split(ak.DETAIL_SEP)
        data.orders.append(Order(_text(orders[i]), int(ts), int(units), cur, session, user))
    return data


class AccountStore:
    """Reads of the account views (the customer stage writes them: streams/store/customers.py)."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.customers = FunnelStore(client, settings)
        self.customers.topic = settings.customer_topic
        self._sha: str | None = None

    def prefix(self, partition: int) -> str:
        return self.customers.prefix(partition)

    async def partitions(self) -> list[int]:
        return await self.customers.partitions()

    async def _calls(self, argvs: Sequence[Sequence[Any]]) -> list[Any]:
        if self._sha is None:
            self._sha = await self.client.script_load(QUERY_SCRIPT)
        try:
            return await self._run(argvs)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): load the script again, once.
            self._sha = await self.client.script_load(QUERY_SCRIPT)
            return await self._run(argvs)

    async def _run(self, argvs: Sequence[Sequence[Any]]) -> list[Any]:
        assert self._sha is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for argv in argvs:
                pipe.evalsha(self._sha, 0, *argv)
            return list(await pipe.execute())

    def _args(self, p: int, mode: str, from_s: int, to_s: int, factor: int) -> list[Any]:
        return list(ak.QueryArgs(self.prefix(p), mode, from_s, to_s, factor))

    async def rank(
        self,
        partitions: Sequence[int],
        from_s: int,
        to_s: int,
        factor: int,
        key: SortKey,
        n: int,
        at_risk_only: bool,
        currency: str = "",
    ) -> list[Ranking]:
        """Totals and the top n accounts by key (n = 0: every account in scope) per partition;
        by revenue: in each currency the partition has, or in `currency` alone."""
        scope = ak.SCOPE_AT_RISK if at_risk_only else ak.SCOPE_ACTIVE
        argvs = [
            [*self._args(p, ak.MODE_RANK, from_s, to_s, factor), key, n, scope, currency]
            for p in partitions
        ]
        out = []
        for p, (counts, revenue, unseen, chosen) in zip(
            partitions, await self._calls(argvs), strict=True
        ):
            units = _split_units(revenue)
            candidates = {}
            for i in range(0, len(chosen), 2):
                flat = chosen[i + 1]
                if n > 0:
                    got = [
                        (_text(flat[k]), _score(_text(flat[k + 1]))) for k in range(0, len(flat), 2)
                    ]
                else:
                    got = [(a, _score(v)) for a, v in unpack_pairs(flat[0]).items()]
                candidates[_text(chosen[i])] = got
            out.append(
                Ranking(p, [int(c) for c in counts], units, [_text(u) for u in unseen], candidates)
            )
        return out

    async def rows(
        self, wanted: dict[int, list[str]], from_s: int, to_s: int, factor: int
    ) -> dict[str, AccountData]:
        """The raw data of accounts for the range, asked of the partitions that hold them."""
        parts = [p for p, accounts in wanted.items() if accounts]
        argvs = [[*self._args(p, ak.MODE_ROWS, from_s, to_s, factor), *wanted[p]] for p in parts]
        out: dict[str, AccountData] = {}
        for reply in await self._calls(argvs):
            for entry in reply:
                data = _account_data(entry)
                out[data.account_id] = data
        return out

    async def find(self, account: str, from_s: int, to_s: int, factor: int) -> AccountData:
        """One account's data, from the partition that holds it (all are asked at once); an
        account no partition knows has empty data."""
        parts = await self.partitions()
        replies = await self._calls(
            [[*self._args(p, ak.MODE_ROWS, from_s, to_s, factor), account] for p in parts]
        )
        for reply in replies:
            data = _account_data(reply[0])
            if data.seen or data.history is not None:
                return data
        return AccountData(account)

    async def rep_sums(
        self,
        partitions: Sequence[int],
        from_s: int,
        to_s: int,
        prev_from_s: int,
        factor: int,
        users: bool,
    ) -> list[RepSums]:
        """Per-account flags and sums of each partition (packed replies, parsed here)."""
        argvs = [
            [*self._args(p, ak.MODE_REPS, from_s, to_s, factor), prev_from_s, 1 if users else 0]
            for p in partitions
        ]
        out = []
        for reply in await self._calls(argvs):
            sums = RepSums(
                active=set(unpack_pairs(reply[0])),
                ordering=set(unpack_pairs(reply[1])),
                new=set(unpack_list(reply[2])),
                unseen_new=unpack_list(reply[3]),
                at_risk=set(unpack_list(reply[4])),
                seen=unpack_list(reply[5]),
                orders=_ints(reply[6]),
                revenue=_currencies(reply[7]),
                orders_before=_ints(reply[8]),
                revenue_before=_currencies(reply[9]),
            )
            if users:
                sums.users, sums.ordering_users = _ints(reply[10]), _ints(reply[11])
            out.append(sums)
        return out
