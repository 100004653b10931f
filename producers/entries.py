"""The generator's entries: their kinds, the per-session ground-truth mark, money as text."""

from __future__ import annotations

__all__ = [
    "DUP",
    "INVALID",
    "INVALID_KINDS",
    "LATE",
    "LOST",
    "VALID",
    "Entry",
    "SessionMark",
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
        "customer",
        "login_ts",
        "min_ts",
        "order_counted",
        "order_id",
        "pending",
        "revenue_cents",
        "session_id",
        "user",
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
