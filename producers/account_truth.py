"""Realized account ground truth of a run: per account, what `storepulse accounts` must say."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from producers.accounts import AccountBook
from producers.entries import SessionMark, money
from streams.contract.accounts import RISK_SCALE, at_risk
from streams.contract.times import format_ts

__all__ = ["AccountTruth"]


class AccountTruth:
    """Counted from the generator's own knowledge of every emitted event (first copies): an
    account's events are those carrying its account_id (after a login at the cart, if any)."""

    def __init__(self) -> None:
        self._sessions: dict[str, set[str]] = {}
        self._users: dict[str, set[str]] = {}
        self._orders: dict[str, list[tuple[int, str, int]]] = {}  # (ts, order_id, cents)

    def event(self, mark: SessionMark, ts: int) -> None:
        if mark.account is None or ts < mark.login_ts:
            return
        self._sessions.setdefault(mark.account, set()).add(mark.session_id)
        if mark.user is not None:
            self._users.setdefault(mark.account, set()).add(mark.user)

    def order(self, mark: SessionMark, ts: int) -> None:
        if mark.account is not None and ts >= mark.login_ts:
            placed = self._orders.setdefault(mark.account, [])
            placed.append((ts, mark.order_id, mark.revenue_cents))

    def accounts(self, book: AccountBook, end_ms: int, factor: Decimal) -> list[dict[str, Any]]:
        """One entry per account with an event, by account_id: its profile and its figures over
        the whole run; at_risk judged at end_ms with the factor (docs/semantics.md)."""
        scaled = int(factor * RISK_SCALE)
        out = []
        for p in book.profiles:
            a = p.account_id
            if a not in self._sessions:
                continue
            placed = sorted(self._orders.get(a, []))
            out.append(
                {
                    "account_id": a,
                    "tier": p.tier if p.in_directory else "unassigned",
                    "sales_rep": p.sales_rep if p.in_directory else None,
                    "in_directory": p.in_directory,
                    "cadence": p.cadence,
                    "slows_at": None if p.slows_at_ms is None else format_ts(p.slows_at_ms),
                    "sessions": len(self._sessions[a]),
                    "active_users": len(self._users.get(a, ())),
                    "orders": len(placed),
                    "revenue": money(sum(c for _, _, c in placed)),
                    "first_order_at": format_ts(placed[0][0]) if placed else None,
                    "last_order_at": format_ts(placed[-1][0]) if placed else None,
                    "at_risk": at_risk([ts for ts, _, _ in placed], end_ms, scaled),
                }
            )
        return out
