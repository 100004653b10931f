"""Per-session ground-truth state the model hands the truth with each line, and money text."""

from __future__ import annotations

__all__ = ["SessionMark", "money"]


class SessionMark:
    """Per-session ground-truth state, filled in as the session's lines are emitted."""

    __slots__ = (
        "cart",
        "carted",
        "count",
        "customer",
        "first_ts",
        "identified",
        "last_ts",
        "login_ts",
        "min_ts",
        "order_counted",
        "order_id",
        "pending",
        "revenue_cents",
        "visits",
    )

    def __init__(self) -> None:
        self.min_ts: list[int] | None = None
        self.pending = 0
        self.revenue_cents = 0
        self.order_counted = False
        self.customer: str | None = None  # account_id, else user_id (the worker's rule)
        self.login_ts = 0  # events before this ts carry no identity (a login at the cart)
        self.order_id = ""
        # What the session's ended figures come from (producers/session_truth.py): its emitted
        # events' first and last ts, how many, how many visits, whether one reached the cart
        # stage or carried the customer, its add and remove events (ts, event_id, sku,
        # quantity change, unit price in cents).
        self.first_ts = 0
        self.last_ts = 0
        self.count = 0
        self.visits = 0
        self.carted = False
        self.identified = False
        self.cart: list[tuple[int, str, str, int, int]] = []

    def customer_at(self, ts: int) -> str | None:
        """The customer of the session's event at ts: none before the login."""
        return self.customer if ts >= self.login_ts else None


def money(cents: int) -> str:
    """Exact decimal string with 2 decimals from integer cents."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
