"""Realized customer ground truth of a run, per UTC day: who was active, ordered, new, back."""

from __future__ import annotations

from typing import Any

from producers.entries import SessionMark, money
from streams.contract.times import iso

__all__ = ["CustomerTruth"]

_DAY_MS = 86_400_000


class CustomerTruth:
    """What the customer stage must report per UTC day for the emitted events (docs/semantics.md,
    "Customers"), counted from the generator's own knowledge of every session.

    The customer of an event is its account, else its user, else none; a session that logs in
    at its cart is anonymous before. A customer's orders are ordered by (ts, order_id): the
    first is the smallest, the second the next. No history is imported in a generated run.
    """

    def __init__(self) -> None:
        self._active: dict[int, set[str]] = {}  # day start (ms) -> customers with an event
        self._orders: dict[str, list[tuple[int, str, int]]] = {}  # (ts, order_id, cents)
        self._anonymous: dict[int, int] = {}  # day start -> anonymous orders

    def event(self, mark: SessionMark, ts: int) -> None:
        """An accepted event (a first copy: duplicates add nothing)."""
        customer = mark.customer_at(ts)
        if customer is not None:
            self._active.setdefault(ts - ts % _DAY_MS, set()).add(customer)

    def order(self, mark: SessionMark, ts: int) -> None:
        """The session's counted order (its purchase event at ts)."""
        customer = mark.customer_at(ts)
        if customer is None:
            day = ts - ts % _DAY_MS
            self._anonymous[day] = self._anonymous.get(day, 0) + 1
        else:
            self._orders.setdefault(customer, []).append((ts, mark.order_id, mark.revenue_cents))

    def orders(self) -> dict[str, list[tuple[int, str, int]]]:
        """customer -> its counted orders (ts, order_id, cents), in (ts, order_id) order."""
        return {customer: sorted(placed) for customer, placed in self._orders.items()}

    def days(self) -> list[dict[str, Any]]:
        """One row per UTC day from the first to the last day with an event, ascending."""
        ordering: dict[int, set[str]] = {}
        orders: dict[int, int] = {}
        cents: dict[int, int] = {}
        new: dict[int, int] = {}
        repeat: dict[int, int] = {}
        first_day: dict[str, int] = {}
        for customer, placed in self._orders.items():
            placed.sort()
            for n, (ts, _, revenue) in enumerate(placed):
                day = ts - ts % _DAY_MS
                ordering.setdefault(day, set()).add(customer)
                orders[day] = orders.get(day, 0) + 1
                cents[day] = cents.get(day, 0) + revenue
                if n == 0:
                    new[day] = new.get(day, 0) + 1
                    first_day[customer] = day
                elif n == 1:
                    repeat[day] = repeat.get(day, 0) + 1
        known = set(self._active) | set(ordering) | set(self._anonymous)
        if not known:
            return []
        out = []
        for day in range(min(known), max(known) + _DAY_MS, _DAY_MS):
            buyers = ordering.get(day, set())
            out.append(
                {
                    "start": iso(day // 1_000),  # as in the customers report
                    "active_customers": len(self._active.get(day, ())),
                    "ordering_customers": len(buyers),
                    "new_customers": new.get(day, 0),
                    "returning_customers": sum(1 for c in buyers if first_day[c] < day),
                    "repeat_customers": repeat.get(day, 0),
                    "retained_customers": len(buyers & ordering.get(day - _DAY_MS, set())),
                    "orders": orders.get(day, 0),
                    "anonymous_orders": self._anonymous.get(day, 0),
                    "revenue": money(cents.get(day, 0)),
                }
            )
        return out

    def totals(self) -> dict[str, Any]:
        active = set().union(*self._active.values()) if self._active else set()
        return {
            "customers": len(active | set(self._orders)),
            "ordering_customers": len(self._orders),
            "repeat_customers": sum(1 for placed in self._orders.values() if len(placed) > 1),
            "orders": sum(len(placed) for placed in self._orders.values()),
            "anonymous_orders": sum(self._anonymous.values()),
        }
