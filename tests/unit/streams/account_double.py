"""The account reports over fixed data, for unit tests of the exporter (no Redis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.contract.accounts import DirectoryRow
from streams.query.accounts import AccountQuery, TierFigures, UnknownAccount
from streams.store.directory import Directory, FeedTotals


class MemoryDirectory:
    def __init__(self, rows: dict[str, DirectoryRow]) -> None:
        self.rows = rows

    async def read(self) -> Directory:
        return Directory("1", "1", self.rows)

    async def feed_totals(self) -> FeedTotals:
        return FeedTotals(7, {"schema": 2})


class MemoryAccounts:
    """Accounts' read side: records the questions, answers with fixed figures."""

    def __init__(self, tiers: int = 3, reps: int = 2) -> None:
        rows = {
            f"a{i}": DirectoryRow(f"a{i}", f"A {i}", f"t{i % tiers}", f"r{i % reps}")
            for i in range(max(tiers, reps) * 2)
        }
        self.directory = MemoryDirectory(rows)
        self.asked: list[Any] = []

    async def report(self, q: AccountQuery) -> dict[str, Any]:
        self.asked.append(q)
        return {"from": q.from_s, "to": q.to_s, "totals": {}, "accounts": []}

    async def show(self, account: str, from_s: int, to_s: int) -> dict[str, Any]:
        self.asked.append((account, from_s, to_s))
        if account != "a1":
            raise UnknownAccount(account)
        return {"account": {"account_id": account}}

    async def reps(self, from_s: int, to_s: int) -> dict[str, Any]:
        self.asked.append(("reps", from_s, to_s))
        return {"from": from_s, "to": to_s, "reps": []}

    async def tiers(
        self, from_s: int, to_s: int, by: Callable[[DirectoryRow], str | None]
    ) -> dict[str | None, TierFigures]:
        self.asked.append(("tiers", from_s, to_s))
        out: dict[str | None, TierFigures] = {}
        for row in self.directory.rows.values():
            f = out.setdefault(by(row), TierFigures())
            f.accounts += 1
            f.active += 1
            f.users += 5
            f.ordering_users += 2
            f.revenue["EUR"] = f.revenue.get("EUR", 0) + 12_500
        return out
