"""The key and field grammar of the customer stage: its one definition, for Python and Lua.

Every key of a customer partition starts with ``sp:{<customer topic>/<partition>}:`` (the
funnel's partition_prefix on the customer topic), so one Lua call touches one Redis Cluster slot.
apply_customers.lua spells no key or field name itself: it gets them from the header that
`lua_header()` renders from the constants below (tests/unit/streams/store checks it).

Per customer (kept for as long as the customer exists): ``c:<customer>`` hash (``o:<order_id>``
-> order details, ``h`` -> imported history) and ``co:<customer>`` zset (its tracked order ids
by ts; ties by order id, as Redis orders equal scores). Per period ``<g>:<start>`` (g = h, d, w, m
of streams/contract/periods.py, start in epoch seconds; kept STOREPULSE_CUSTOMER_RETENTION_SECONDS
in event time): sets of active (``pa:``), ordering (``po:``) and first-ordering (``cs:``, the
cohort: new customers) customers, a hash of counters (``pc:``) and of cohort values (``cv:``,
days, weeks and months only), indexed by the ``pz`` zset for eviction.
"""

from __future__ import annotations

from typing import NamedTuple

from streams.contract.facts import (
    FACT_ACCOUNT_ACTIVITY,
    FACT_ACCOUNT_ORDER,
    FACT_ACTIVITY,
    FACT_CART,
    FACT_HISTORY,
    FACT_ORDER,
)
from streams.contract.periods import COHORT_PERIODS, PERIOD_CODES, PERIODS, Period
from streams.store import keys
from streams.store.session_keys import CUSTOMER_CART_LUA, lua_table

__all__ = [
    "ACTIVE",
    "CARTS_LUA",
    "COHORT",
    "COHORT_VALUES",
    "COUNTS",
    "COUNT_NEW_CHANNEL",
    "COUNT_NEW_DEVICE",
    "COUNT_ORDERS",
    "COUNT_REPEAT",
    "COUNT_RETAINED",
    "COUNT_REVENUE",
    "CUSTOMER",
    "CUSTOMER_ORDERS",
    "DETAIL_SEP",
    "FIELD_HISTORY",
    "FIELD_ORDER",
    "ORDERING",
    "PERIOD_INDEX",
    "TOTAL_DUP_ORDERS",
    "TOTAL_FACTS",
    "TOTAL_NEW",
    "TOTAL_ORDERS",
    "TOTAL_REVENUE",
    "VALUE_CUSTOMERS",
    "VALUE_ORDERS",
    "VALUE_REVENUE",
    "CustomerArgs",
    "FactRecord",
    "carts_table",
    "lua_header",
    "period_key",
]

SEP = keys.SEP
PERIOD_SEP = ":"  # <kind><g>:<start>

# Keys under a customer partition's prefix (META and TOTALS: keys.META, keys.TOTALS).
CUSTOMER = "c:"  # + customer: hash
CUSTOMER_ORDERS = "co:"  # + customer: zset order_id by ts
ACTIVE = "pa:"  # + <g>:<start>: set of customers with an accepted event in the period
ORDERING = "po:"  # + <g>:<start>: set of customers with a counted order in the period
COHORT = "cs:"  # + <g>:<start>: set of customers whose first order is in the period
COUNTS = "pc:"  # + <g>:<start>: hash of the period's counters (COUNT_*)
COHORT_VALUES = "cv:"  # + <g>:<start>: hash of the cohort's values (VALUE_*), d/w/m only
PERIOD_INDEX = "pz"  # zset: "<g>:<start>" by start, for retention

# Fields of a customer's hash.
FIELD_ORDER = "o:"  # + order_id: ts, units, currency, channel, device, h, d, w, m starts
FIELD_HISTORY = "h"  # orders, first_order_ms, last_order_ms
DETAIL_SEP = "\t"

# Fields of COUNTS.
COUNT_ORDERS = "o"  # orders with a customer
COUNT_REVENUE = "r"  # r|<currency>: their revenue, ten-thousandths
COUNT_NEW_CHANNEL = "nc"  # nc|<channel>: new customers by acquisition channel
COUNT_NEW_DEVICE = "nd"  # nd|<device>
COUNT_REPEAT = "rp"  # customers whose second order is in the period
# Customers ordering in the period and the one before: counted when a customer joins a
# period's ordering set, against the sets of the periods before and after (a set only grows,
# so the count is exact in any order; reading it needs no intersection of large sets).
COUNT_RETAINED = "rt"

# Fields of COHORT_VALUES (of the cohort starting at the key's period).
VALUE_CUSTOMERS = "n"  # n|<period start>: the cohort's customers ordering in that period
VALUE_REVENUE = "r"  # r|<period start>|<currency>: their revenue in it
VALUE_ORDERS = "c"  # c|<period start>|<currency>: their orders in it (which currencies it has)

# Fields of TOTALS (cumulative, never move; dup, rej|, dlq_lost, topic_resets as the funnel's).
TOTAL_FACTS = "fx"  # fx|<kind>: facts applied
TOTAL_DUP_ORDERS = "dupo"  # order facts of an order the customer held already
TOTAL_NEW = "new"  # new|<channel>|<device>: customers counted new, when first seen so
TOTAL_ORDERS = "o"  # o|new, o|returning: orders by the kind they had when applied
TOTAL_REVENUE = "r"  # r|<currency>
ORDER_NEW = "new"
ORDER_RETURNING = "returning"


class CustomerArgs(NamedTuple):
    """The fixed ARGV of apply_customers.lua, in order (A_<NAME>, 1-based there).

    After them: n_totals (field, increment) pairs for TOTALS, then one JSON array of the
    batch's FactRecords, flattened.
    """

    prefix: str
    expected_offset: int
    new_offset: int
    new_fp: str
    watermark_ms: int  # newest fact time (activity hour, order ts) on the partition
    highwater: int
    now_ms: int
    horizon_s: int  # periods starting before this are deleted and no longer written
    bucket_ms: int  # recoveries count in event-time buckets like the funnel's
    recovery_ms: int  # an order recovers the customer's carts that ended this long before it
    cart_horizon_ms: int  # carts that ended before this are forgotten (wm - window - lateness)
    bucket_horizon_s: int  # recovery buckets older than this are deleted (retention)
    risk_factor: int  # STOREPULSE_AT_RISK_FACTOR x RISK_SCALE (account views, account_keys.py)
    n_totals: int


class FactRecord(NamedTuple):
    """One fact as the customer stage hands it to apply_customers.lua, all slots strings."""

    kind: str  # streams.contract.facts FACT_*
    customer: str
    order_id: str  # '' unless an order
    ts_ms: str  # order: its ts; activity: its hour's start
    revenue_units: str
    currency: str
    channel: str
    device: str
    hour: str  # starts of the periods holding ts (streams/contract/periods.py)
    day: str
    week: str
    month: str
    before: str  # order: starts of the periods before those, DETAIL_SEP-joined; else ''
    after: str  # order: starts of the periods after them; else ''
    history: str  # "<orders>\t<first_ms>\t<last_ms>", '' unless a history fact
    session_id: str  # activity, order and cart facts: the session ('' without one)
    user_id: str  # activity and order facts: the user ('' without one)
    version: str  # cart facts: the fact's version and the session's country ('' otherwise)
    country: str


def period_key(prefix: str, kind: str, period: Period, start: int | str) -> str:
    """The key of one period's set or hash (kind: ACTIVE, ORDERING, COHORT, COUNTS, ...)."""
    return f"{prefix}{kind}{PERIOD_CODES[period]}{PERIOD_SEP}{start}"


def _pattern(n: int) -> str:
    return "^" + DETAIL_SEP.join(f"([^{DETAIL_SEP}]*)" for _ in range(n)) + "$"


def _constants() -> dict[str, str | int]:
    constants: dict[str, str | int] = {
        "SEP": SEP,
        "PSEP": PERIOD_SEP,
        "K_META": keys.META,
        "K_TOTALS": keys.TOTALS,
        "K_CUSTOMER": CUSTOMER,
        "K_CUSTOMER_ORDERS": CUSTOMER_ORDERS,
        "K_ACTIVE": ACTIVE,
        "K_ORDERING": ORDERING,
        "K_COHORT": COHORT,
        "K_COUNTS": COUNTS,
        "K_VALUES": COHORT_VALUES,
        "K_PERIODS": PERIOD_INDEX,
        "M_OFFSET": keys.META_OFFSET,
        "M_FP": keys.META_FINGERPRINT,
        "M_WM": keys.META_WATERMARK,
        "M_HW": keys.META_HIGHWATER,
        "M_APPLIED": keys.META_APPLIED_MS,
        "C_ORDER": FIELD_ORDER,
        "C_HISTORY": FIELD_HISTORY,
        "DETAIL_SEP": DETAIL_SEP,
        "MINUS": "-",  # a negated amount: HINCRBY of "-" .. units (exact past 2^53)
        "DETAIL_PATTERN": _pattern(9),
        "HISTORY_PATTERN": _pattern(3),
        "STARTS_PATTERN": _pattern(4),
        "P_ORDERS": COUNT_ORDERS,
        "P_REVENUE": COUNT_REVENUE,
        "P_NEW_CHANNEL": COUNT_NEW_CHANNEL,
        "P_NEW_DEVICE": COUNT_NEW_DEVICE,
        "P_REPEAT": COUNT_REPEAT,
        "P_RETAINED": COUNT_RETAINED,
        "V_CUSTOMERS": VALUE_CUSTOMERS,
        "V_REVENUE": VALUE_REVENUE,
        "V_ORDERS": VALUE_ORDERS,
        "T_FACTS": TOTAL_FACTS,
        "T_DUP_ORDERS": TOTAL_DUP_ORDERS,
        "T_NEW": TOTAL_NEW,
        "T_ORDERS": TOTAL_ORDERS,
        "T_REVENUE": TOTAL_REVENUE,
        "O_NEW": ORDER_NEW,
        "O_RETURNING": ORDER_RETURNING,
        "FACT_ACTIVITY": FACT_ACTIVITY,
        "FACT_ORDER": FACT_ORDER,
        "FACT_HISTORY": FACT_HISTORY,
        "FACT_CART": FACT_CART,
        "FACT_ACCOUNT_ACTIVITY": FACT_ACCOUNT_ACTIVITY,
        "FACT_ACCOUNT_ORDER": FACT_ACCOUNT_ORDER,
        "STATUS_OK": keys.STATUS_OK,
        "STATUS_CONFLICT": keys.STATUS_CONFLICT,
        "RECORD_WIDTH": len(FactRecord._fields),
        # Granularities 1..4 in slot order; cohort values from COHORT_FROM on (d, w, m).
        "N_PERIODS": len(PERIODS),
        "COHORT_FROM": PERIODS.index(COHORT_PERIODS[0]) + 1,
    }
    for k, period in enumerate(PERIODS, start=1):
        constants[f"G_{k}"] = PERIOD_CODES[period]
    for i, name in enumerate(CustomerArgs._fields, start=1):
        constants[f"A_{name.upper()}"] = i
    for i, name in enumerate(FactRecord._fields):
        # The period slots are R_HOUR + k - 1 for granularity k: day .. month go unnamed.
        if name not in PERIODS[1:]:
            constants[f"R_{name.upper()}"] = i
    return constants


LUA_CONSTANTS = _constants()


def lua_header() -> str:
    """`local NAME = value` for every constant, prepended to apply_customers.lua when loaded."""
    return keys.lua_header_of(LUA_CONSTANTS, "streams/store/customer_keys.py")


# The table CK of carts.lua: session_keys' names, and the bucket keys it shares with stage 1.
CARTS_LUA: dict[str, str | int] = {
    "BUCKET": keys.BUCKET_PREFIX,
    "BUCKETS": keys.BUCKETS,
    **CUSTOMER_CART_LUA,
}


def carts_table() -> str:
    """`local CK = {...}`, prepended to carts.lua when loaded."""
    return lua_table("CK", CARTS_LUA)
