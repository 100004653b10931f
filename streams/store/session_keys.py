"""The key and field grammar of ended sessions, carts and recoveries, for Python and Lua.

Stage 1 (the session worker, streams/store/sessions.lua in front of apply_batch.lua) keeps, per
session, what its figures are computed from and what it contributed to the bucket of its end;
per partition the sessions not ended yet (by last ts) and the ended ones whose state is still kept,
and the list of abandoned carts. Stage 2 (the customer stage, streams/store/carts.lua in front of
apply_customers.lua) keeps each customer's abandoned carts and which order recovered each. The
scripts spell no name themselves: they get the table SK (stage 1) or CK (stage 2) that
`lua_table()` renders from the constants below (tests/unit/streams/store checks it).
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.contract.kpis import Dimension, SessionCounts

__all__ = [
    "BUCKET_KINDS_STAGE1",
    "BUCKET_KINDS_STAGE2",
    "CART",
    "CARTS",
    "CART_DETAILS",
    "CART_PREFIX",
    "CUSTOMER_CART_LUA",
    "DURATION_BUCKETS_S",
    "ENDED",
    "ENDED_BUCKET_PREFIX",
    "ENDED_TOTALS",
    "SESSION_LUA",
    "TOTAL_ABANDONED",
    "TOTAL_BOUNCED",
    "TOTAL_DURATION",
    "TOTAL_DURATION_SUM",
    "TOTAL_ENDED",
    "TOTAL_KINDS_STAGE1",
    "TOTAL_RECOVERED",
    "TOTAL_STALE_CARTS",
    "TOTAL_VALUE",
    "TOTAL_VALUE_OVERFLOW",
    "SessionCounts",
    "lua_table",
    "session_counts",
]

SEP = "|"

# Stage 1 keys under a partition's prefix (keys.SESSIONS "sz" holds the sessions not ended yet
# scored by their last ts; keys.SESSION_PREFIX their hashes).
ENDED = "ez"  # zset: ended sessions by end, their state kept until wm passes end + lateness
# The stage 1 bucket fields (B_* below) of bucket b, and the stage 1 totals (TOTAL_*): hashes of
# their own, read with keys.BUCKET_PREFIX + b and keys.TOTALS and summed with them (the version
# of 2026-12-02 wrote them there; a late event's withdrawal lands here, the sums are the same).
# Not in those hashes: Redis keeps a hash of up to hash-max-listpack-entries (512) fields as a
# list that every field read or write scans, and the session figures doubled a bucket's fields
# (to 150-260), which made each of the funnel's own HINCRBY of it slower (docs/benchmarks.md).
ENDED_BUCKET_PREFIX = "eb:"  # + bucket start in epoch seconds
ENDED_TOTALS = "et"
CART_PREFIX = "k:"  # + session_id: hash of the session's cart events (CART_ENTRY -> change)
CARTS = "kl"  # zset: abandoned carts (session ids) by end, kept end + the recovery window
CART_DETAILS = "kd"  # hash: session_id -> the listed cart (JSON, CART_* keys)

# Stage 2 keys under a customer partition's prefix.
CART = "kc:"  # + customer: hash session_id -> cart state (CART_STATE_*), w:<order_id> -> owner
CUSTOMER_CARTS = "kz:"  # + customer: zset of its live carts (session ids) by end
CART_EXPIRY = "kx"  # zset: "<len>:<customer><session_id>" by when the cart's state goes

# Stage 1 bucket fields, in the bucket of the session's end (ten-thousandths for money, ms);
# each kind also by country: <kind>g|<country> (<kind>g|<currency>|<country> for money).
COUNTRY_SUFFIX = "g"
B_ENDED = "e"  # e|<channel>|<device>: ended sessions
B_BOUNCED = "eb"
B_MS = "et"  # session milliseconds (last ts - first ts)
B_PAGES = "ep"  # visit events
B_ABANDONED = "ka"  # abandoned carts
B_VALUE = "kv"  # kv|<currency>|<channel>|<device>: their value
# Stage 2 bucket fields (customer partitions), by the cart's segment.
B_RECOVERED = "kr"  # kr|<channel>|<device>: carts recovered, in the bucket of the order
B_REVENUE = "kw"  # kw|<currency>|<channel>|<device>: recovering orders' revenue, once each
B_RECOVERED_END = "kc"  # kc|<channel>|<device>: carts recovered, in the bucket of the cart's end
_STAGE1 = (B_ENDED, B_BOUNCED, B_MS, B_PAGES, B_ABANDONED, B_VALUE)
_STAGE2 = (B_RECOVERED, B_REVENUE, B_RECOVERED_END)
BUCKET_KINDS_STAGE1 = frozenset(_STAGE1 + tuple(k + COUNTRY_SUFFIX for k in _STAGE1))
BUCKET_KINDS_STAGE2 = frozenset(_STAGE2 + tuple(k + COUNTRY_SUFFIX for k in _STAGE2))

# Cumulative counters (TOTALS): a session, cart or recovery counts once, when first seen.
TOTAL_ENDED = "se"  # se|<channel>|<device>
TOTAL_BOUNCED = "sb"  # sb|<channel>|<device>
TOTAL_ABANDONED = "ka"  # ka|<channel>|<device>
TOTAL_VALUE = "kv"  # kv|<currency>: value of the carts when first seen abandoned
TOTAL_VALUE_OVERFLOW = "kvx"  # carts whose value passes 2^63 ten-thousandths: not summed
TOTAL_DURATION = "sd"  # sd|<i>: ended sessions whose duration is in bucket i (not cumulative)
TOTAL_DURATION_SUM = "sds"  # their durations, ms
TOTAL_RECOVERED = "kr"  # stage 2: carts recovered
TOTAL_STALE_CARTS = "kst"  # stage 2: cart facts of a version applied already (or older)
TOTAL_KINDS_STAGE1 = frozenset(
    {TOTAL_ENDED, TOTAL_BOUNCED, TOTAL_ABANDONED, TOTAL_VALUE, TOTAL_VALUE_OVERFLOW}
    | {TOTAL_DURATION, TOTAL_DURATION_SUM}
)

# Bounds (seconds) of the session duration histogram, storepulse_session_duration_seconds:
# 0 holds the single-event sessions (bounces), then a glance (10 s), a page read (30 s, 1 min),
# a short visit (2, 5 min), a shopping trip (10, 20 min), the default timeout (30 min), long
# sessions (1 h, 2 h); docs/metrics.md.
DURATION_BUCKETS_S: tuple[int, ...] = (0, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

# The contribution's figures, as SESSION_LUA's patterns read them in every layout: bounce, ms,
# pages, abandoned, too large.
_CONTRIB_FIGURES = ["(%d)", "(%d+)", "(%d+)", "(%d)", "(%d)"]

# The fields of a session's hash (keys.SESSION_PREFIX) these scripts add, and the rest.
SESSION_LUA: dict[str, str | int] = {
    "ENDED": ENDED,
    "BUCKET": ENDED_BUCKET_PREFIX,
    "TOTALS": ENDED_TOTALS,
    "CART": CART_PREFIX,
    "CARTS": CARTS,
    "DETAILS": CART_DETAILS,
    # The first ts is the first stage time (t0) or, earlier, FIRST: the smallest ts of a
    # removal. The last ts is the session's score in keys.SESSIONS.
    "FIRST": "f",
    "MARK": "y",  # ON: kept with figures (a session without it ends without: older versions)
    "OTHERS": "w",  # accepted events that are not visits (visits: the event count - these)
    "VISITS": "v",  # visit events, as the version before counted them
    "ORDERS": "oc",  # orders the session counted
    "CUST_TS": "ut",  # ts and event id of the latest event with a customer
    "CUST_EID": "ue",
    "CUST": "u",  # JSON [customer, account_id, user_id] of that event
    "CONTRIB": "c",  # what the session contributed to the bucket of its end: CONTRIB_FORMAT
    # Its last ts, bucket, bounce, ms, pages, abandoned, too large; tab-separated as the
    # segment is (a JSON encode was 4 us of the ~20 a session's end costs). 47 bytes at most
    # for sessions of a year: Redis keeps a hash as a listpack only while every value is at
    # most hash-max-listpack-value (64) bytes, and the 80 bytes of the layout before
    # (CONTRIB_WIDE_PATTERN) turned every ended session's hash into a hash table (with the count
    # below, -4,500 of the 147,500 instructions per event of the bench's run, docs/benchmarks.md).
    # The end is last + the timeout, the segment the session's own.
    "CONTRIB_FORMAT": "\t".join(["%d", "%s"] + ["%d"] * 5),
    "CONTRIB_PATTERN": "^" + "\t".join(["(%d+)"] * 2 + _CONTRIB_FIGURES) + "$",
    "CONTRIB_VALUE": "cv",  # an abandoned cart's value by currency (JSON), when it was summed
    # The layout of the version before: its end first, then the above, the segment and the
    # value's JSON in the same field. The one before that stored JSON (JSON_OPEN).
    "CONTRIB_WIDE_PATTERN": "^"
    + "\t".join(["(%d+)"] * 3 + _CONTRIB_FIGURES + ["[^\t]*"] * 3)
    + "\t(.*)$",
    "JSON_OPEN": "{",
    "ON": "1",
    "SEEN": "x",  # which totals counted it already: SEEN_* letters
    "SEEN_ENDED": "e",
    "SEEN_BOUNCED": "b",
    "SEEN_ABANDONED": "a",
    "CART_VERSION": "kv",  # cart facts emitted so far
    "CART_FACT": "kf",  # JSON of the last cart fact: [customer, end, ch, dev, cty] or none
    "ENTRY_SEP": ":",  # cart entry field: <len(sku)>:<sku><ts>:<event_id>
    "COUNTRY": COUNTRY_SUFFIX,
    "B_ENDED": B_ENDED,
    "B_BOUNCED": B_BOUNCED,
    "B_MS": B_MS,
    "B_PAGES": B_PAGES,
    "B_ABANDONED": B_ABANDONED,
    "B_VALUE": B_VALUE,
    "T_ENDED": TOTAL_ENDED,
    "T_BOUNCED": TOTAL_BOUNCED,
    "T_ABANDONED": TOTAL_ABANDONED,
    "T_VALUE": TOTAL_VALUE,
    "T_VALUE_OVERFLOW": TOTAL_VALUE_OVERFLOW,
    "T_DURATION": TOTAL_DURATION,
    "T_DURATION_SUM": TOTAL_DURATION_SUM,
    "DURATIONS": ",".join(str(b) for b in DURATION_BUCKETS_S),
    "LIST_ITEM": "[^,]+",
    "LIMB_FORMAT": "%07d",  # the limbs below the top one: 7 digits each
    "MINUS": "-",
    # Sessions ended per call at most: a watermark that jumps (a partition idle for an hour)
    # ends the rest in the next calls; the eviction never passes a session not ended yet.
    "END_LIMIT": 5_000,
    "EVICT_LIMIT": 2_000,
    # 2^63 - 1 has 19 digits: a value of 18 digits always fits a Redis integer.
    "MAX_DIGITS": 18,
}

CUSTOMER_CART_LUA: dict[str, str | int] = {
    "CART": CART,
    "CARTS": CUSTOMER_CARTS,
    "EXPIRY": CART_EXPIRY,
    "OWNER": "w:",  # + order_id: the cart its revenue counts with, JSON [sid, ch, dev, cty]
    "COUNTRY": COUNTRY_SUFFIX,
    "B_RECOVERED": B_RECOVERED,
    "B_REVENUE": B_REVENUE,
    "B_RECOVERED_END": B_RECOVERED_END,
    "T_RECOVERED": TOTAL_RECOVERED,
    "T_STALE": TOTAL_STALE_CARTS,
    "EXPIRY_SEP": ":",  # <len(customer)>:<customer><session_id>
    "EXPIRY_LIMIT": 500,
}


def _lua_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t") + "'"


def lua_table(name: str, constants: Mapping[str, str | int]) -> str:
    """`local NAME = {KEY = value, ...}`: one local for many names (Lua allows 200 locals)."""
    body = ",\n".join(f"  {k} = {_lua_value(v)}" for k, v in constants.items())
    return f"-- generated from streams/store/session_keys.py\nlocal {name} = {{\n{body},\n}}\n"


_PLAIN = {
    B_ENDED: "ended",
    B_BOUNCED: "bounces",
    B_MS: "session_ms",
    B_PAGES: "pages",
    B_ABANDONED: "abandoned",
    B_RECOVERED: "recovered",
    B_RECOVERED_END: "recovered_of_abandoned",
}
_MONEY = {B_VALUE: "abandoned_units", B_REVENUE: "recovered_units"}
_BY_COUNTRY = {kind + COUNTRY_SUFFIX: name for kind, name in _PLAIN.items()}
_MONEY_BY_COUNTRY = {kind + COUNTRY_SUFFIX: name for kind, name in _MONEY.items()}


def session_counts(
    fields: Mapping[str, int], by: Dimension | None = None
) -> dict[str, SessionCounts]:
    """Figures per value of one dimension ("all" when by is None) from summed bucket fields."""
    plain, money = (_BY_COUNTRY, _MONEY_BY_COUNTRY) if by == "country" else (_PLAIN, _MONEY)
    groups: dict[str, SessionCounts] = {}
    for name, value in fields.items():
        kind, _, rest = name.partition(SEP)
        if kind in plain:
            currency = None
            what = plain[kind]
        elif kind in money:
            currency, _, rest = rest.partition(SEP)
            what = money[kind]
        else:
            continue
        if by == "country":
            group = rest
        else:
            channel, _, device = rest.partition(SEP)
            group = channel if by == "channel" else device if by == "device" else "all"
        counts = groups.setdefault(group, SessionCounts())
        if currency is None:
            setattr(counts, what, getattr(counts, what) + value)
        else:
            target: dict[str, int] = getattr(counts, what)
            target[currency] = target.get(currency, 0) + value
    return groups
