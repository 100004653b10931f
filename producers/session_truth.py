"""Realized ended-session and cart ground truth of a run, per minute of each session's end."""

from __future__ import annotations

import json
from typing import Any

from producers.entries import SessionMark, money
from streams.contract.funnel import NO_STAGE
from streams.contract.times import format_ts

__all__ = ["SessionTruth"]

_MINUTE_MS = 60_000
# The manifest's names of each minute's figures; money ones are kept in cents.
_FIELDS = (
    "ended_sessions",
    "bounces",
    "session_ms",  # sum of last ts - first ts
    "pages",  # visit events
    "abandoned_carts",
    "abandoned_value",
    "recovered_carts",  # in the minute of the recovering order
    "recovered_revenue",  # of the recovering orders, once each
    "recovered_of_abandoned",  # carts recovered, in the minute of the cart's end
)
_MONEY = frozenset({"abandoned_value", "recovered_revenue"})


def _cents(price: str) -> int:
    whole, _, frac = price.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


class SessionTruth:
    """What `storepulse kpis` must report for the sessions of the emitted events, by the
    generator's own knowledge (docs/semantics.md, "Sessions and carts").

    A session ends at its last emitted event + the session timeout and counts in the minute of
    its end, with the figures of its emitted events (lost ones never reach the worker). Its
    cart holds per sku the adds minus the removals in (ts, event_id) order, never below zero,
    at the price of the latest add. A cart whose session ordered nothing is abandoned; one with
    a customer is recovered by the customer's first order (ts, order_id) within the recovery
    window after its end, which counts in the minute of that order (its revenue once).
    """

    def __init__(self, timeout_ms: int, recovery_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.recovery_ms = recovery_ms
        self._rows: dict[int, list[int]] = {}
        self._carts: list[tuple[str, int]] = []  # (customer, end) of abandoned known carts

    def _row(self, ms: int) -> list[int]:
        start = ms - ms % _MINUTE_MS
        row = self._rows.get(start)
        if row is None:
            row = self._rows[start] = [0] * len(_FIELDS)
        return row

    def event(self, mark: SessionMark, stage: int, ts: int, line: str) -> None:
        """A first copy of one of the session's events, as emitted."""
        if mark.count == 0 or ts < mark.first_ts:
            mark.first_ts = ts
        if mark.count == 0 or ts > mark.last_ts:
            mark.last_ts = ts
        mark.count += 1
        mark.visits += stage == 0
        mark.carted = mark.carted or stage >= 1
        mark.identified = mark.identified or mark.customer_at(ts) is not None
        if stage == 1 or stage == NO_STAGE:
            body = json.loads(line)
            change = body["quantity"] if stage == 1 else -body["quantity"]
            price = _cents(body["unit_price"]) if stage == 1 else 0
            mark.cart.append((ts, body["event_id"], body["sku"], change, price))

    def settle(self, mark: SessionMark) -> None:
        """The session has emitted everything it will: its figures, in the minute of its end."""
        if mark.count == 0:
            return
        end = mark.last_ts + self.timeout_ms
        row = self._row(end)
        row[0] += 1
        row[1] += mark.count == 1 and mark.visits == 1
        row[2] += mark.last_ts - mark.first_ts
        row[3] += mark.visits
        if mark.carted and not mark.order_counted:
            held: dict[str, int] = {}
            price: dict[str, int] = {}
            for _, _, sku, change, cents in sorted(mark.cart):
                if change > 0:
                    held[sku] = held.get(sku, 0) + change
                    price[sku] = cents
                else:
                    held[sku] = max(0, held.get(sku, 0) + change)
            row[4] += 1
            row[5] += sum(q * price[sku] for sku, q in held.items() if sku in price)
            if mark.identified and mark.customer is not None:
                self._carts.append((mark.customer, end))
        mark.cart = []

    def minutes(self, orders: dict[str, list[tuple[int, str, int]]]) -> list[dict[str, Any]]:
        """Per-minute rows in time order; orders: customer -> its counted (ts, order_id, cents)."""
        rows = {start: list(row) for start, row in self._rows.items()}
        recovering: dict[tuple[str, str], tuple[int, int]] = {}
        for customer, end in self._carts:
            inside = [o for o in orders.get(customer, ()) if end < o[0] <= end + self.recovery_ms]
            if not inside:
                continue
            ts, order_id, cents = min(inside)
            recovering[(customer, order_id)] = (ts, cents)
            for at, k in ((ts, 6), (end, 8)):
                start = at - at % _MINUTE_MS
                rows.setdefault(start, [0] * len(_FIELDS))[k] += 1
        for ts, cents in recovering.values():  # an order recovering several carts: once
            rows.setdefault(ts - ts % _MINUTE_MS, [0] * len(_FIELDS))[7] += cents
        out = []
        for start in sorted(rows):
            row = rows[start]
            item: dict[str, Any] = {"minute": format_ts(start)}
            for name, value in zip(_FIELDS, row, strict=True):
                item[name] = money(value) if name in _MONEY else value
            out.append(item)
        return out

    @staticmethod
    def totals(minutes: list[dict[str, Any]]) -> dict[str, Any]:
        """The sums of the minutes' figures."""
        return {
            name: money(sum(_cents(m[name]) for m in minutes))
            if name in _MONEY
            else sum(m[name] for m in minutes)
            for name in _FIELDS
        }
