"""Account reports: top accounts, one account, sales reps and tiers, as JSON-ready dicts.

Shared by `storepulse accounts report|show|reps`, the exporter's /api/accounts, /api/accounts/ID
and /api/reps and its account gauges: the same range gives the same JSON. Reads go through
streams/store/accounts.py (the account views) and streams/store/directory.py; every figure is
computed by streams/contract/accounts.py (docs/semantics.md, "Accounts").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.contract.accounts import (
    AccountData,
    DirectoryRow,
    RepTally,
    SortKey,
    account_row,
    hour_range,
    main_currency,
    money_fields,
    rep_row,
    risk_factor_scaled,
    sort_reps,
    sort_rows,
)
from streams.contract.times import iso
from streams.query.window import newest_complete_end
from streams.settings import Settings
from streams.store.accounts import AccountStore, Ranking, RepSums
from streams.store.directory import Directory, DirectoryStore
from streams.store.funnel import FunnelStore

__all__ = [
    "MAX_RANGE_HOURS",
    "AccountQuery",
    "Accounts",
    "TierFigures",
    "UnknownAccount",
    "days_ending",
    "recent_range",
]

# One report unions and counts the range's hours per partition in one Lua call each: a quarter
# (93 days) of hours is 2,232 per partition, the most one call may cost (Redis waits meanwhile).
MAX_RANGE_HOURS = 93 * 24
_DAY = 86_400


class UnknownAccount(LookupError):
    """No event, history or directory row names this account."""


@dataclass(frozen=True)
class AccountQuery:
    """What `accounts report` asks: a range and its options."""

    from_s: int
    to_s: int
    top: int = 20
    sort: SortKey = "revenue"
    tier: str | None = None
    rep: str | None = None
    at_risk: bool = False
    search: str | None = None

    @property
    def filtered(self) -> bool:
        return self.tier is not None or self.rep is not None or self.search is not None

    def keeps(self, row: DirectoryRow) -> bool:
        """Whether the directory side of an account passes --tier, --rep and --search."""
        if self.tier is not None and row.tier != self.tier:
            return False
        if self.rep is not None and row.sales_rep != self.rep:
            return False
        if self.search is not None:
            needle = self.search.casefold()
            hay = [row.account_id, row.name or ""]
            return any(needle in h.casefold() for h in hay)
        return True


@dataclass
class TierFigures:
    """One tier's (or rep's) gauges over a window: accounts and their figures."""

    accounts: int = 0
    active: int = 0
    ordering: int = 0
    at_risk: int = 0
    users: int = 0
    ordering_users: int = 0
    revenue: dict[str, int] = field(default_factory=dict)


async def recent_range(
    funnel: FunnelStore,
    settings: Settings,
    days: int = 30,
    clock: Callable[[], float] = time.time,
) -> tuple[int, int]:
    """The `days` ending with the current hour: the one holding the newest complete bucket
    (now, in event time: docs/semantics.md); the default range of `show` and the gauges."""
    return days_ending(await newest_complete_end(funnel, settings, clock), days)


def days_ending(window_end_s: int, days: int) -> tuple[int, int]:
    """The `days` of whole hours ending with the hour that holds the newest complete bucket
    (the one ending at window_end_s)."""
    hour_end = -(-window_end_s // 3_600) * 3_600
    return hour_end - days * _DAY, hour_end


def _range(from_s: int, to_s: int) -> tuple[int, int]:
    first, end = hour_range(from_s, to_s)
    if end <= first:
        raise ValueError("the range holds no whole hour: to must be after from")
    if (end - first) // 3_600 > MAX_RANGE_HOURS:
        raise ValueError(f"range over {MAX_RANGE_HOURS} hours (93 days); ask for a shorter one")
    return first, end


class Accounts:
    """The account reports over one account store and directory."""

    def __init__(self, store: AccountStore, directory: DirectoryStore, settings: Settings):
        self.store = store
        self.directory = directory
        self.settings = settings
        self.factor = risk_factor_scaled(settings.at_risk_factor)

    async def report(self, q: AccountQuery) -> dict[str, Any]:
        """`storepulse accounts report --json` (docs/semantics.md, "Accounts")."""
        first, end = _range(q.from_s, q.to_s)
        directory = await self.directory.read()
        parts = await self.store.partitions()
        n = 0 if q.filtered else q.top
        ranks = await self.store.rank(parts, first, end, self.factor, q.sort, n, q.at_risk)
        counts = [sum(r.counts[i] for r in ranks) for i in range(8)]
        revenue: dict[str, int] = {}
        for r in ranks:
            for cur, units in r.revenue_units.items():
                revenue[cur] = revenue.get(cur, 0) + units
        unseen_new = sum(1 for r in ranks for c in r.unseen_new if c in directory.rows)
        totals: dict[str, Any] = {
            "active_accounts": counts[0],
            "ordering_accounts": counts[1],
            "new_accounts": counts[6] + unseen_new,
            "at_risk_accounts": counts[7],
            "accounts_in_directory": len(directory.rows),
            "active_users": counts[2],
            "ordering_users": counts[3],
            "sessions": counts[4],
            "orders": counts[5],
        }
        totals |= money_fields(revenue)
        # Revenue ranks by the range's main currency (docs/semantics.md); the others by ''.
        currency = main_currency(revenue) if q.sort == "revenue" else None
        await self._zeros(ranks, currency or "", q, first, end, n)
        chosen = []
        for r in ranks:
            for account, score in r.candidates[currency or ""]:
                if q.keeps(directory.row(account)):
                    chosen.append((score is None, -(score or 0.0), account, r.partition))
        chosen.sort()
        wanted: dict[int, list[str]] = {}
        for _, _, account, p in chosen[: q.top]:
            wanted.setdefault(p, []).append(account)
        data = await self.store.rows(wanted, first, end, self.factor)
        rows = [account_row(d, directory.row(a), end * 1_000, self.factor) for a, d in data.items()]
        return {
            "from": iso(first),
            "to": iso(end),
            "totals": totals,
            "accounts": sort_rows(rows, q.sort, currency),
        }

    async def _zeros(
        self, ranks: list[Ranking], key: str, q: AccountQuery, first: int, end: int, n: int
    ) -> None:
        """The candidates of partitions without revenue in the main currency: their accounts
        all rank at 0 in it, so they count only when fewer accounts than asked have some."""
        lacking = [r for r in ranks if key not in r.candidates]
        if not lacking:
            return
        if n == 0:  # every account of the partition, each at 0
            for r in lacking:
                r.candidates[key] = [(a, 0.0) for a, _ in next(iter(r.candidates.values()))]
            return
        positive = sum(1 for r in ranks for _, score in r.candidates.get(key, ()) if score)
        if positive >= q.top:
            for r in lacking:
                r.candidates[key] = []
            return
        again = await self.store.rank(
            [r.partition for r in lacking], first, end, self.factor, q.sort, n, q.at_risk, key
        )
        for r, zeros in zip(lacking, again, strict=True):
            r.candidates[key] = zeros.candidates[key]

    async def show(self, account: str, from_s: int, to_s: int) -> dict[str, Any]:
        """`storepulse accounts show ID --json`: the account's row, its users, orders per day."""
        first, end = _range(from_s, to_s)
        directory = await self.directory.read()
        data = await self.store.find(account, first, end, self.factor)
        if not data.seen and data.history is None and account not in directory.rows:
            raise UnknownAccount(account)
        entry = directory.row(account)
        row = account_row(data, entry, end * 1_000, self.factor)
        return {
            "from": iso(first),
            "to": iso(end),
            "account": row,
            "region": entry.region,
            "users": _users(data),
            "orders_per_day": _per_day(data, first, end),
        }

    async def reps(self, from_s: int, to_s: int) -> dict[str, Any]:
        """`storepulse accounts reps --json`: one row per sales rep, and the null row last."""
        first, end = _range(from_s, to_s)
        directory = await self.directory.read()
        sums = await self._sums(first, end, users=False)
        tallies = _tally(directory, sums, lambda row: row.sales_rep)
        revenue: dict[str, int] = {}
        for t in tallies.values():
            for cur, units in t.revenue.items():
                revenue[cur] = revenue.get(cur, 0) + units
        named = [RepTally(rep) for rep in sorted(directory.reps)]
        ordered = sort_reps((tallies.get(t.sales_rep, t) for t in named), main_currency(revenue))
        ordered.append(tallies.get(None, RepTally(None)))
        return {"from": iso(first), "to": iso(end), "reps": [rep_row(t) for t in ordered]}

    async def tiers(
        self, from_s: int, to_s: int, by: Callable[[DirectoryRow], str | None]
    ) -> dict[str | None, TierFigures]:
        """The gauges' figures per group (`by`: an account's tier, or its rep) over a range."""
        first, end = _range(from_s, to_s)
        directory = await self.directory.read()
        sums = await self._sums(first, end, users=True)
        out: dict[str | None, TierFigures] = {}
        for row in directory.rows.values():
            out.setdefault(by(row), TierFigures()).accounts += 1
        for s in sums:
            for account in s.seen:
                if account not in directory.rows:
                    out.setdefault(by(directory.row(account)), TierFigures()).accounts += 1
            for account in s.active:
                f = out.setdefault(by(directory.row(account)), TierFigures())
                f.active += 1
                f.users += s.users.get(account, 0)
                f.ordering_users += s.ordering_users.get(account, 0)
            for account in s.ordering:
                out.setdefault(by(directory.row(account)), TierFigures()).ordering += 1
            for account in s.at_risk:
                out.setdefault(by(directory.row(account)), TierFigures()).at_risk += 1
            for cur, per in s.revenue.items():
                for account, units in per.items():
                    f = out.setdefault(by(directory.row(account)), TierFigures())
                    f.revenue[cur] = f.revenue.get(cur, 0) + units
        return out

    async def _sums(self, first: int, end: int, users: bool) -> list[RepSums]:
        parts = await self.store.partitions()
        return await self.store.rep_sums(
            parts, first, end, first - (end - first), self.factor, users
        )


def _tally(
    directory: Directory, sums: Iterable[RepSums], by: Callable[[DirectoryRow], str | None]
) -> dict[str | None, RepTally]:
    out: dict[str | None, RepTally] = {}

    def get(account: str) -> RepTally:
        key = by(directory.row(account))
        return out.setdefault(key, RepTally(key))

    for row in directory.rows.values():
        get(row.account_id).accounts += 1
    for s in sums:
        for account in s.seen:
            if account not in directory.rows:
                get(account).accounts += 1
        for account in s.active:
            get(account).active += 1
        for account in s.ordering:
            get(account).ordering += 1
        for account in s.new:
            get(account).new += 1
        for account in s.unseen_new:
            if account in directory.rows:
                get(account).new += 1
        for account in s.at_risk:
            get(account).at_risk += 1
        for account, n in s.orders.items():
            get(account).orders += n
        for target, source in (("revenue", s.revenue), ("revenue_before", s.revenue_before)):
            for cur, per in source.items():
                for account, units in per.items():
                    into: dict[str, int] = getattr(get(account), target)
                    into[cur] = into.get(cur, 0) + units
    return out


def _users(data: AccountData) -> list[dict[str, Any]]:
    sessions: dict[str, set[str]] = {}
    last: dict[str, int] = {}
    for hour, user, session in data.pairs:
        if user:
            sessions.setdefault(user, set()).add(session)
            last[user] = max(last.get(user, hour), hour)
    orders: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for o in data.orders:
        if o.user_id:
            per = orders.setdefault(o.user_id, {})
            per[o.currency] = per.get(o.currency, 0) + o.units
            counts[o.user_id] = counts.get(o.user_id, 0) + 1
    out = []
    for user in sorted(sessions):
        entry: dict[str, Any] = {
            "user_id": user,
            "sessions": len(sessions[user]),
            "orders": counts.get(user, 0),
        }
        entry |= money_fields(orders.get(user, {}))
        entry["last_seen_at"] = iso(last[user])
        out.append(entry)
    return out


def _per_day(data: AccountData, first: int, end: int) -> list[dict[str, Any]]:
    days: dict[int, list[int]] = {}
    revenue: dict[int, dict[str, int]] = {}
    for o in data.orders:
        day = o.ts_ms // 1_000 // _DAY * _DAY
        days.setdefault(day, []).append(o.ts_ms)
        per = revenue.setdefault(day, {})
        per[o.currency] = per.get(o.currency, 0) + o.units
    out = []
    day = first // _DAY * _DAY
    while day < end:
        entry: dict[str, Any] = {"day": iso(day), "orders": len(days.get(day, []))}
        entry |= money_fields(revenue.get(day, {}))
        out.append(entry)
        day += _DAY
    return out
