"""The generator's entries: their kinds, each session's ground-truth mark, and invalid lines."""

from __future__ import annotations

import json
import random

__all__ = [
    "DUP",
    "INVALID",
    "INVALID_KINDS",
    "LATE",
    "LOST",
    "VALID",
    "Entry",
    "SessionMark",
    "invalid_line",
    "money",
]

# Entry kinds. VALID and LATE are first copies of valid events (LATE: delivered after its ts by up
# to max_delay), DUP a re-sent copy (same bytes, same event_id), INVALID an extra bad line and LOST
# an event the tracker never sent (no line; it is kept only to be counted when its time comes).
VALID, LATE, DUP, INVALID, LOST = 0, 1, 2, 3, 4

INVALID_KINDS = (
    "truncated",
    "not_object",
    "missing_field",
    "naive_ts",
    "negative_money",
    "unknown_type",
)


class SessionMark:
    """Per-session ground-truth state, filled in as the session's lines are emitted."""

    __slots__ = (
        "account",
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
        "session_id",
        "user",
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
        self.account: str | None = None  # the account_id of its events (after the login)
        self.user: str | None = None
        self.session_id = ""
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


# (emit_ms, seq, kind, line, key, session, stage, ts_ms); heap order is (emit_ms, seq). For
# INVALID entries the stage slot holds the index in INVALID_KINDS.
Entry = tuple[int, int, int, str | None, str | None, SessionMark | None, int, int]


def money(cents: int) -> str:
    """Exact decimal string with 2 decimals from integer cents."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def invalid_line(rng: random.Random, line: str) -> tuple[str, str | None, int]:
    """A line the worker must reject, derived from a valid one: (line, key, kind index)."""
    obj = json.loads(line)
    obj["event_id"] = f"{obj['event_id']}~bad"  # never collides with a valid event's id
    which = rng.randrange(len(INVALID_KINDS))
    kind = INVALID_KINDS[which]
    if kind == "negative_money" and obj["type"] not in {"add_to_cart", "purchase"}:
        kind, which = "unknown_type", INVALID_KINDS.index("unknown_type")
    if kind == "truncated":
        text = json.dumps(obj, separators=(",", ":"))
        return text[: rng.randint(1, len(text) - 2)], obj["session_id"], which
    if kind == "not_object":
        return json.dumps([obj["type"], obj["ts"], obj["session_id"]]), obj["session_id"], which
    if kind == "missing_field":
        del obj[rng.choice(("event_id", "session_id", "ts", "type"))]
    elif kind == "naive_ts":
        obj["ts"] = obj["ts"].rstrip("Z")
    elif kind == "negative_money":
        amount = "revenue" if obj["type"] == "purchase" else "unit_price"
        # "-0.00" is a valid amount: a negative one must not be zero.
        obj[amount] = f"-{obj[amount]}" if obj[amount].strip("0.") else "-1.00"
    else:
        obj["type"] = "refund"
    key = obj.get("session_id")
    return json.dumps(obj, separators=(",", ":")), key, which
