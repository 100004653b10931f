"""The key and field grammar of the account views: its one definition, for Python and Lua.

The account views live in the customer stage (an account is the customer of its events), under
the customer partition's prefix, so one Lua call sees all of an account's state. apply_accounts.lua
(inside apply_customers.lua) writes them, query_accounts.lua reads them; neither spells a name:
both get them from the header `lua_header()` renders (docs/semantics.md, "Accounts").

Per account (kept for as long as the account exists, points for the customer retention):

- ``ap:<account>``: a lex-ordered zset (scores 0) of the account's points. ``i<K><len>:<item>
  <hour12>``: item (a session, a user, or '' for the account itself) had a point of kind K in
  the hour (12 digits, so that lex order is time order), used to find an item's previous and
  next point; ``hP<hour12><len(user)>:<user><session>``: the (user, session) pairs active in an
  hour, in time order, for the rows of one account.
- ``ao:<account>`` zset of its tracked order ids by ts (ties by id, the (ts, order_id) order),
  ``ad:<account>`` hash order id -> ``ts\\tunits\\tcurrency\\tsession\\tuser\\tm2`` (m2: twice the
  median of the gaps between its orders up to this one, '' below 3 orders), ``ag:<account>``
  zset order id -> the gap (ms) from the order before it.

Per partition: the accounts seen (``aa``), first order incl. history (``af``), history first
order of any customer (``hf``), last tracked order (``al``), last order incl. history (``ax``),
the instant an account becomes at risk with the worker's factor (``ar``, META ``arf`` = that
factor x RISK_SCALE), accounts by their oldest untrimmed point (``at``).

Per hour ``h:<start>`` (kept STOREPULSE_CUSTOMER_RETENTION_SECONDS, indexed in the customer
stage's ``pz``): for each point kind K in PREV_KINDS a zset ``x<k>`` member -> the hour of the
member's previous point (-1: none), so that the distinct members with a point in [from, to) are
those of the range's hours with a score below from (one per member: its first point in the
range); for sessions and users a zset ``n<k>`` account -> points without a previous one; the
account's orders (``yo``) and revenue per currency (``yr|<cur>|``) as zsets for ranking, and the
hour's totals (``yt``: ``o``, ``r|<cur>``) as exact integers.
"""

from __future__ import annotations

from typing import NamedTuple

from streams.contract.accounts import RISK_SCALE, SORT_KEYS
from streams.contract.times import MAX_TS_MS
from streams.store import keys

__all__ = [
    "ACCOUNTS",
    "ACCOUNT_DETAILS",
    "ACCOUNT_FIRST",
    "ACCOUNT_GAPS",
    "ACCOUNT_LAST",
    "ACCOUNT_LAST_TRACKED",
    "ACCOUNT_ORDERS",
    "ACCOUNT_POINTS",
    "ACCOUNT_RISK",
    "ACCOUNT_TRIM",
    "DETAIL_SEP",
    "HISTORY_FIRST",
    "HOUR_DIGITS",
    "HOUR_NEW",
    "HOUR_ORDERS",
    "HOUR_PREV",
    "HOUR_REVENUE",
    "HOUR_TOTALS",
    "KIND_ACCOUNT",
    "KIND_ORDERING",
    "KIND_ORDERING_USER",
    "KIND_SESSION",
    "KIND_USER",
    "META_RISK_FACTOR",
    "MODE_RANK",
    "MODE_REPS",
    "MODE_ROWS",
    "NEW_KINDS",
    "PACK_FIELD",
    "PACK_RECORD",
    "PAIR_POINT",
    "PREV_KINDS",
    "SCOPE_ACTIVE",
    "SCOPE_AT_RISK",
    "QueryArgs",
    "encode_member",
    "hour_key",
    "lua_header",
    "revenue_key",
]

SEP = keys.SEP
DETAIL_SEP = "\t"
HOUR_DIGITS = 12  # hours as 12 zero-padded digits: up to 9999-12-31 in epoch seconds

# Keys of one account (under the customer partition's prefix).
ACCOUNT_POINTS = "ap:"
ACCOUNT_ORDERS = "ao:"
ACCOUNT_DETAILS = "ad:"
ACCOUNT_GAPS = "ag:"
# Keys of the partition.
ACCOUNTS = "aa"
ACCOUNT_FIRST = "af"
HISTORY_FIRST = "hf"
ACCOUNT_LAST_TRACKED = "al"
ACCOUNT_LAST = "ax"
ACCOUNT_RISK = "ar"
ACCOUNT_TRIM = "at"
META_RISK_FACTOR = "arf"
QUERY = "q:"  # + name: query_accounts.lua's temporary keys (deleted within its call)
# Packed replies: no UTF-8 text (an id, even with lone surrogates) holds these bytes.
PACK_FIELD = b"\xfe"
PACK_RECORD = b"\xff"

# Point kinds (one letter).
KIND_ACCOUNT = "A"  # the account was active (item '')
KIND_SESSION = "S"  # a session of the account was active
KIND_USER = "U"  # a user of the account was active
KIND_ORDERING = "O"  # the account placed an order (item '')
KIND_ORDERING_USER = "W"  # a user of the account placed an order
PREV_KINDS = (KIND_ACCOUNT, KIND_SESSION, KIND_USER, KIND_ORDERING, KIND_ORDERING_USER)
NEW_KINDS = (KIND_SESSION, KIND_USER, KIND_ORDERING_USER)  # per-account counts of first points
POINT_ITEM = "i"
POINT_HOUR = "h"
PAIR_POINT = "P"
ITEM_SEP = ":"  # <len(item)>:<item>, <len(account)>:<account><item>
HOUR_MAX = "9" * HOUR_DIGITS  # above every hour, in lex order

# query_accounts.lua: its modes, sort keys and scopes, and its temporary keys' names.
MODE_RANK, MODE_ROWS, MODE_REPS = "rank", "rows", "reps"
SCOPE_ACTIVE, SCOPE_AT_RISK = "active", "at_risk"
_TEMPS = {"TMP_SCORES": "t", "TMP_NULLS": "n", "TMP_BASE": "b", "TMP_ACTIVE": "a"}
_TEMPS |= {"TMP_ORDERING": "o", "TMP_SUMS": "s"}

# Per-hour keys: <kind>h:<start> (the customer stage's period key form).
HOUR_PREV = "x"  # + lower-case point kind
HOUR_NEW = "n"  # + lower-case point kind
HOUR_ORDERS = "yo"
HOUR_REVENUE = "yr" + SEP  # + currency + SEP
HOUR_TOTALS = "yt"
TOTAL_ORDERS = "o"
TOTAL_REVENUE = "r"  # r|<currency>


class QueryArgs(NamedTuple):
    """The fixed ARGV of query_accounts.lua, in order (Q_<NAME>, 1-based there); after them the
    mode's own arguments (streams/store/accounts.py)."""

    prefix: str
    mode: str  # rank | rows | reps
    from_s: int  # first hour start
    to_s: int  # end of the last hour
    risk_factor: int  # STOREPULSE_AT_RISK_FACTOR x RISK_SCALE, of the reader


def hour_key(prefix: str, kind: str, start: int | str) -> str:
    """The key of one hour's account zset or hash (kind: HOUR_* with its point kind)."""
    return f"{prefix}{kind}h:{start}"


def revenue_key(prefix: str, currency: str, start: int | str) -> str:
    return hour_key(prefix, f"{HOUR_REVENUE}{currency}{SEP}", start)


def encode_member(account: str, item: str) -> str:
    """A per-hour member of an item of an account: the account's length makes it unambiguous."""
    return f"{len(account)}:{account}{item}"


def _constants() -> dict[str, str | int]:
    constants: dict[str, str | int] = {
        "K_APOINTS": ACCOUNT_POINTS,
        "K_AORDERS": ACCOUNT_ORDERS,
        "K_ADETAILS": ACCOUNT_DETAILS,
        "K_AGAPS": ACCOUNT_GAPS,
        "K_ACCOUNTS": ACCOUNTS,
        "K_AFIRST": ACCOUNT_FIRST,
        "K_HFIRST": HISTORY_FIRST,
        "K_ALAST_T": ACCOUNT_LAST_TRACKED,
        "K_ALAST": ACCOUNT_LAST,
        "K_ARISK": ACCOUNT_RISK,
        "K_ATRIM": ACCOUNT_TRIM,
        "M_RISK": META_RISK_FACTOR,
        "K_QUERY": QUERY,
        "H_PREV": HOUR_PREV,
        "H_NEW": HOUR_NEW,
        "H_ORDERS": HOUR_ORDERS,
        "H_REVENUE": HOUR_REVENUE,
        "H_TOTALS": HOUR_TOTALS,
        "HT_ORDERS": TOTAL_ORDERS,
        "HT_REVENUE": TOTAL_REVENUE,
        "PT_ITEM": POINT_ITEM,
        "PT_HOUR": POINT_HOUR,
        "PT_PAIR": PAIR_POINT,
        "PK_ACCOUNT": KIND_ACCOUNT,
        "PK_SESSION": KIND_SESSION,
        "PK_USER": KIND_USER,
        "PK_ORDERING": KIND_ORDERING,
        "PK_OUSER": KIND_ORDERING_USER,
        "PREV_KINDS": "".join(PREV_KINDS),
        "NEW_KINDS": "".join(NEW_KINDS),
        "ADETAIL_PATTERN": "^" + DETAIL_SEP.join(f"([^{DETAIL_SEP}]*)" for _ in range(6)) + "$",
        "HOUR_FORMAT": f"%0{HOUR_DIGITS}d",
        "HOUR_DIGITS": HOUR_DIGITS,
        "HOUR_S": 3_600,
        "DAY_S": 86_400,
        "ITEM_SEP": ITEM_SEP,
        "HOUR_MAX": HOUR_MAX,
        "MAX_TS_MS": MAX_TS_MS,
        "RISK_DIVISOR": 2 * RISK_SCALE,
        "MODE_RANK": MODE_RANK,
        "MODE_ROWS": MODE_ROWS,
        "MODE_REPS": MODE_REPS,
        "SCOPE_AT_RISK": SCOPE_AT_RISK,
        "SORT_REVENUE": "revenue",
        "SORT_ORDERS": "orders",
        "SORT_SESSIONS": "sessions",
        "SORT_USERS": "active_users",
        "SEP": SEP,
        "DETAIL_SEP": DETAIL_SEP,
        **_TEMPS,
    }
    # The script's other sort key, last_order_at, is its last branch.
    assert {v for k, v in constants.items() if k.startswith("SORT_")} < set(SORT_KEYS)
    for i, name in enumerate(QueryArgs._fields, start=1):
        constants[f"Q_{name.upper()}"] = i
    return constants


LUA_CONSTANTS = _constants()


def lua_header(skip: frozenset[str] = frozenset()) -> str:
    """`local NAME = value` for every constant (but those another header defined already)."""
    constants = {k: v for k, v in LUA_CONSTANTS.items() if k not in skip}
    # The pack bytes as Lua decimal escapes: written as text they would go out as UTF-8.
    packs = "".join(
        f"local {name} = '\\{value[0]}'\n"
        for name, value in (("PACK_FIELD", PACK_FIELD), ("PACK_RECORD", PACK_RECORD))
    )
    return keys.lua_header_of(constants, "streams/store/account_keys.py") + packs
