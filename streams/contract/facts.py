"""Customer facts: who the customer of an event is, and the messages of the customers topic.

The session worker emits them from its Lua call (streams/store/apply_batch.lua, atomically with
the batch that accepted their events); `storepulse customers import` emits history facts. Each
is one Kafka message keyed by its customer, its value a JSON array of strings whose first slot
names the kind (docs/semantics.md, "Customers"):

- activity `["a", customer, session_id, user_id, hour]`: the customer had an accepted event of
  that session and user in the hour starting at `hour` (epoch seconds); at most one per
  (customer, session, user, hour);
- order `["o", customer, order_id, ts_ms, revenue_units, currency, channel, device,
  session_id, user_id]`: a counted order of the customer (the funnel's first accepted
  purchase of the order id), revenue in ten-thousandths, the session's segment;
- history `["h", customer, orders, first_order_ms, last_order_ms]`: what the shop knew of the
  customer before tracking began (a later one replaces it);
- cart `["k", customer, session_id, version, end_ms, channel, device, country]`: the session
  ended as an abandoned cart of the customer at `end_ms`, with the session's segment; with
  `end_ms` (and the segment) empty, it is not (any more) an abandoned cart of this customer.
  `version` counts the session's cart facts (streams/store/apply_batch.lua): the customer stage
  keeps the highest version of each (customer, session), so a late or re-sent older one
  changes nothing (docs/semantics.md, "Sessions and carts").
- account activity `["A", ...]` and account order `["O", ...]`: the same slots as "a" and "o",
  for an event that carried an `account_id` (the customer is that account): the customer
  stage counts them as customer facts and, besides, keeps the account views (docs/semantics.md,
  "Accounts"). An "a" or "o" fact is never an account's, whatever its customer.

A fact's id is what it says: its kind, customer and (activity) session, user and hour, (order)
order id, (history) nothing else, (cart) session and version; applying one twice changes
nothing.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from streams.contract.events import MAX_ID_LENGTH, Rejected
from streams.contract.times import MAX_TS_MS

__all__ = [
    "ACCOUNT_KINDS",
    "FACT_ACCOUNT_ACTIVITY",
    "FACT_ACCOUNT_ORDER",
    "FACT_ACTIVITY",
    "FACT_CART",
    "FACT_HISTORY",
    "FACT_KINDS",
    "FACT_ORDER",
    "ActivityFact",
    "AnyFact",
    "CartFact",
    "HistoryFact",
    "OrderFact",
    "customer_of",
    "encode_fact",
    "parse_fact",
]

FACT_ACTIVITY = "a"
FACT_ORDER = "o"
FACT_HISTORY = "h"
FACT_CART = "k"
FACT_ACCOUNT_ACTIVITY = "A"
FACT_ACCOUNT_ORDER = "O"
FACT_KINDS = {
    FACT_ACTIVITY: "activity",
    FACT_ORDER: "order",
    FACT_HISTORY: "history",
    FACT_CART: "cart",
    FACT_ACCOUNT_ACTIVITY: "account_activity",
    FACT_ACCOUNT_ORDER: "account_order",
}
# The kinds of an event with an account_id, by the kind they would have without one.
ACCOUNT_KINDS = {FACT_ACTIVITY: FACT_ACCOUNT_ACTIVITY, FACT_ORDER: FACT_ACCOUNT_ORDER}

_HOUR_S = 3_600
# 12 integer digits and 4 decimals (the contract's money) in ten-thousandths.
_MAX_UNITS_DIGITS = 16
_MAX_ORDERS = 10**9
# A session's end is its last event plus the session timeout (a day at most, in practice).
_MAX_TIMEOUT_MS = 400 * 86_400_000


class ActivityFact(NamedTuple):
    kind: str
    customer: str
    session_id: str
    user_id: str  # '' when the event had no user_id (an account's anonymous visitor)
    hour: str  # epoch seconds, a multiple of 3600


class OrderFact(NamedTuple):
    kind: str
    customer: str
    order_id: str
    ts_ms: str
    revenue_units: str
    currency: str
    channel: str
    device: str
    session_id: str
    user_id: str


class HistoryFact(NamedTuple):
    kind: str
    customer: str
    orders: str
    first_order_ms: str
    last_order_ms: str


class CartFact(NamedTuple):
    kind: str
    customer: str
    session_id: str
    version: str  # 1, 2, ...: the session's cart facts in the order they were decided
    end_ms: str  # '' : withdrawn (not an abandoned cart of this customer)
    channel: str  # '' when withdrawn, like device and country
    device: str
    country: str


AnyFact = ActivityFact | OrderFact | HistoryFact | CartFact
_SHAPES: dict[str, type[ActivityFact] | type[OrderFact] | type[HistoryFact] | type[CartFact]] = {
    FACT_ACTIVITY: ActivityFact,
    FACT_ORDER: OrderFact,
    FACT_HISTORY: HistoryFact,
    FACT_CART: CartFact,
    FACT_ACCOUNT_ACTIVITY: ActivityFact,
    FACT_ACCOUNT_ORDER: OrderFact,
}


def customer_of(account_id: str | None, user_id: str | None) -> str:
    """The customer of an event: its account (B2B: the company), else its user, else '' (none)."""
    return account_id or user_id or ""


def encode_fact(fact: AnyFact) -> bytes:
    """The Kafka value of a fact (the form apply_batch.lua writes: compact JSON, strings)."""
    return json.dumps(list(fact), separators=(",", ":"), ensure_ascii=False).encode()


def _digits(value: str, name: str, limit: int) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > limit:
        raise Rejected("schema", f"{name} must be a non-negative integer, got {value[:32]!r}")
    return int(value)


def _id(value: str, name: str, required: bool = True) -> None:
    if (required and not value) or len(value) > MAX_ID_LENGTH:
        raise Rejected("schema", f"{name} must have 1 to {MAX_ID_LENGTH} characters")


def parse_fact(raw: bytes | None, key: bytes | None) -> AnyFact:
    """A fact from a customers-topic message, or Rejected("malformed" | "schema" | "key")."""
    try:
        slots = json.loads(raw or b"")
    except (ValueError, RecursionError):
        raise Rejected("malformed", "not a JSON array of strings") from None
    if not isinstance(slots, list) or not slots or not all(isinstance(s, str) for s in slots):
        raise Rejected("malformed", "not a JSON array of strings")
    shape = _SHAPES.get(slots[0])
    if shape is None:
        raise Rejected("schema", f"unknown fact kind {slots[0][:16]!r}")
    if len(slots) != len(shape._fields):
        raise Rejected("schema", f"a {FACT_KINDS[slots[0]]} fact has {len(shape._fields)} slots")
    fact = shape(*slots)
    _id(fact.customer, "customer")
    if key is None or key != fact.customer.encode("utf-8", "surrogatepass"):
        raise Rejected("key", "the message key must be the fact's customer")
    if isinstance(fact, ActivityFact):
        _id(fact.session_id, "session_id")
        _id(fact.user_id, "user_id", required=False)
        hour = _digits(fact.hour, "hour", 15)
        if hour % _HOUR_S or hour * 1_000 > MAX_TS_MS:
            raise Rejected("schema", "hour must be the start of an hour (epoch seconds)")
    elif isinstance(fact, OrderFact):
        _id(fact.order_id, "order_id")
        _id(fact.session_id, "session_id")
        _id(fact.user_id, "user_id", required=False)
        if _digits(fact.ts_ms, "ts_ms", 15) > MAX_TS_MS:
            raise Rejected("schema", "ts_ms is after 9999-12-31")
        _digits(fact.revenue_units, "revenue_units", _MAX_UNITS_DIGITS)
        if len(fact.currency) != 3 or not fact.currency.isascii() or not fact.currency.isupper():
            raise Rejected("schema", "currency must be 3 capital letters")
        for name in ("channel", "device"):
            if not 0 < len(getattr(fact, name)) <= 64:
                raise Rejected("schema", f"{name} must have 1 to 64 characters")
    elif isinstance(fact, CartFact):
        _id(fact.session_id, "session_id")
        if _digits(fact.version, "version", 15) < 1:
            raise Rejected("schema", "version must be at least 1")
        if fact.end_ms:
            if _digits(fact.end_ms, "end_ms", 15) > MAX_TS_MS + _MAX_TIMEOUT_MS:
                raise Rejected("schema", "end_ms is after 9999-12-31")
            for name in ("channel", "device", "country"):
                if not 0 < len(getattr(fact, name)) <= 64:
                    raise Rejected("schema", f"{name} must have 1 to 64 characters")
        elif fact.channel or fact.device or fact.country:
            raise Rejected("schema", "a withdrawn cart has no segment")
    else:
        orders = _digits(fact.orders, "orders", 10)
        first = _digits(fact.first_order_ms, "first_order_ms", 15)
        last = _digits(fact.last_order_ms, "last_order_ms", 15)
        if not 1 <= orders <= _MAX_ORDERS:
            raise Rejected("schema", "orders must be at least 1")
        if first > last or last > MAX_TS_MS:
            raise Rejected("schema", "first_order_ms must not be after last_order_ms")
    return fact
