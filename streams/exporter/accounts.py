"""`/api/accounts`, `/api/accounts/ID`, `/api/reps`: the CLI's account JSON over HTTP.

Parameters: `from` and `to` (ISO 8601 or epoch ms; both, or neither: the `days` days, default
30, ending with the current hour), and for /api/accounts `top`, `sort`, `tier`, `rep`,
`at_risk` (true/false) and `q` (search in id and name), as `storepulse accounts report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from streams.contract.accounts import SORT_KEYS, SortKey
from streams.contract.times import parse_instant_ms
from streams.query.accounts import AccountQuery, Accounts, UnknownAccount, recent_range
from streams.settings import Settings
from streams.store.funnel import FunnelStore

__all__ = ["ACCOUNT_PREFIX", "AccountRoutes"]

Answer = tuple[int, Any]  # status and JSON body; routes.py makes the Response
ACCOUNT_PREFIX = "/api/accounts/"
_MAX_TOP = 1_000
_MAX_DAYS = 93
_COMMON = {"from", "to", "days"}
_REPORT = _COMMON | {"top", "sort", "tier", "rep", "at_risk", "q"}


def _flag(text: str) -> bool:
    if text in {"true", "1"}:
        return True
    if text in {"false", "0", ""}:
        return False
    raise ValueError("at_risk must be true or false")


def _sort(text: str) -> SortKey:
    for key in SORT_KEYS:
        if key == text:
            return key
    raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")


class AccountRoutes:
    """The three account routes (routes.py caches them and runs them where Redis is read)."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        funnel: FunnelStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.funnel = funnel
        self.clock = clock

    async def _range(self, query: Mapping[str, str], allowed: set[str]) -> tuple[int, int]:
        unknown = set(query) - allowed
        if unknown:
            raise ValueError(f"unknown parameters: {', '.join(sorted(unknown))}")
        if ("from" in query) != ("to" in query):
            raise ValueError("give both from and to, or neither (then days, default 30)")
        if "from" in query:
            if "days" in query:
                raise ValueError("give either from and to, or days")
            return (
                parse_instant_ms(query["from"]) // 1_000,
                parse_instant_ms(query["to"]) // 1_000,
            )
        text = query.get("days", "30")
        if not text.isdigit() or not 1 <= int(text) <= _MAX_DAYS:
            raise ValueError(f"days must be a whole number from 1 to {_MAX_DAYS}")
        return await recent_range(self.funnel, self.settings, int(text), self.clock)

    async def answer(self, path: str, raw_query: str) -> Answer:
        """The answer of /api/accounts, /api/reps or /api/accounts/ID."""
        if path == "/api/accounts":
            return await self.report(raw_query)
        if path == "/api/reps":
            return await self.reps(raw_query)
        return await self.show(path, raw_query)

    async def report(self, raw_query: str) -> Answer:
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        try:
            from_s, to_s = await self._range(query, _REPORT)
            top = query.get("top", "20")
            if not top.isdigit() or not 1 <= int(top) <= _MAX_TOP:
                raise ValueError(f"top must be a whole number from 1 to {_MAX_TOP}")
            q = AccountQuery(
                from_s,
                to_s,
                top=int(top),
                sort=_sort(query.get("sort", "revenue")),
                tier=query.get("tier") or None,
                rep=query.get("rep") or None,
                at_risk=_flag(query.get("at_risk", "false")),
                search=query.get("q") or None,
            )
            return 200, await self.accounts.report(q)
        except ValueError as exc:
            return 400, {"error": str(exc)}

    async def show(self, path: str, raw_query: str) -> Answer:
        account = unquote(path[len(ACCOUNT_PREFIX) :])
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        try:
            if not account:
                raise ValueError("no account id after /api/accounts/")
            from_s, to_s = await self._range(query, _COMMON)
            return 200, await self.accounts.show(account, from_s, to_s)
        except UnknownAccount:
            return 404, {"error": f"no account {account[:128]!r}"}
        except ValueError as exc:
            return 400, {"error": str(exc)}

    async def reps(self, raw_query: str) -> Answer:
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        try:
            from_s, to_s = await self._range(query, _COMMON)
            return 200, await self.accounts.reps(from_s, to_s)
        except ValueError as exc:
            return 400, {"error": str(exc)}
