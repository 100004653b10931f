"""The Redis key and field grammar of the funnel state: its one definition, for Python and Lua.

Every key of a partition starts with ``sp:{<topic>/<partition>}:``; the hash tag puts them in one
Redis Cluster slot, so one Lua call may touch all of them. Field names join their parts with
``|``. apply_batch.lua does not spell a single key or field name itself: it gets them from the
header that `lua_header()` renders from the constants below (tests/unit/streams/store checks
that the script uses nothing else, and a test on a real redis-server reads back what it wrote).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from streams.contract.facts import (
    FACT_ACCOUNT_ACTIVITY,
    FACT_ACCOUNT_ORDER,
    FACT_ACTIVITY,
    FACT_CART,
    FACT_ORDER,
)
from streams.contract.kpis import Dimension, FunnelCounts

__all__ = [
    "ANON_DAYS",
    "ANON_PREFIX",
    "BUCKETS",
    "BUCKET_KINDS",
    "BUCKET_PREFIX",
    "FIELD_ANON_ORDERS",
    "FIELD_DLQ_LOST",
    "FIELD_DUPLICATES",
    "FIELD_TOPIC_RESETS",
    "META",
    "META_APPLIED_MS",
    "META_FIELDS",
    "META_FINGERPRINT",
    "META_HIGHWATER",
    "META_OFFSET",
    "META_RESETS",
    "META_WATERMARK",
    "ORDERS",
    "ORDER_TIMES",
    "OUTBOX",
    "SEP",
    "SESSIONS",
    "SESSION_PREFIX",
    "STATUS_CONFLICT",
    "STATUS_LIMIT",
    "STATUS_OK",
    "TOTALS",
    "TOTAL_KINDS",
    "BatchArgs",
    "EventRecord",
    "Totals",
    "anon_key",
    "bucket_counts",
    "bucket_key",
    "lua_header",
    "lua_header_of",
    "parse_totals",
    "partition_prefix",
    "partitions_key",
    "rejected_field",
]

SEP = "|"

# Keys under a partition's prefix.
META = "meta"  # hash: the META_* fields
TOTALS = "tot"  # hash: cumulative counters (Totals)
BUCKET_PREFIX = "b:"  # + bucket start in epoch seconds: hash of bucket counters
BUCKETS = "bz"  # zset: bucket starts, for range reads and retention
SESSION_PREFIX = "s:"  # + session_id: hash of one session's state
SESSIONS = "sz"  # zset: sessions not ended yet, by newest ts (ended: + the timeout < wm)
ORDERS = "o"  # hash: counted order_id -> ts
ORDER_TIMES = "oz"  # zset: counted order ids by ts (eviction)
# Customer facts appended by the script, not yet published: one entry per batch whose fields
# are (customer, fact JSON) pairs (streams/contract/facts.py); deleted once Kafka acknowledged.
OUTBOX = "fx"
ANON_PREFIX = "oh:"  # + day start (epoch s): hash hour start -> anonymous orders counted in it
ANON_DAYS = "ohz"  # zset: the days of ANON_PREFIX hashes, for retention

# Fields of META.
META_OFFSET = "offset"  # last applied Kafka offset (-1: none)
META_FINGERPRINT = "fp"  # fingerprint of the record at that offset
META_WATERMARK = "wm"  # newest accepted event time (ms)
META_HIGHWATER = "hw"  # high-water mark of the fetched data, for lag
META_APPLIED_MS = "applied_ms"  # worker clock of the last applied batch
META_RESETS = "resets"  # times the partition was found recreated

# Kinds of TOTALS fields: "<kind>|<parts...>".
TOTAL_EVENTS = "ev"  # ev|<type>: distinct accepted events
FIELD_DUPLICATES = "dup"  # events whose event_id was seen before
TOTAL_REJECTED = "rej"  # rej|<reason>
TOTAL_FUNNEL = "f"  # f|<stage>|<channel>|<device>: sessions reaching a stage, never moves
TOTAL_ORDERS = "o"  # o|<channel>|<device>
TOTAL_REVENUE = "r"  # r|<currency>, ten-thousandths
FIELD_TOPIC_RESETS = "topic_resets"
FIELD_DLQ_LOST = "dlq_lost"  # rejections whose dead letter Kafka refused for good
FIELD_ANON_ORDERS = "oa"  # counted orders without a customer
TOTAL_FACTS = "fx"  # fx|<kind>: customer facts appended to the outbox

# Kinds of bucket fields.
BUCKET_SESSIONS = "s"  # s|<stage>|<channel>|<device>
BUCKET_SESSIONS_BY_COUNTRY = "sg"  # sg|<stage>|<country>
BUCKET_ORDERS = "o"  # o|<currency>|<channel>|<device>
BUCKET_ORDERS_BY_COUNTRY = "og"  # og|<currency>|<country>
BUCKET_REVENUE = "r"  # r|<currency>|<channel>|<device>, ten-thousandths
BUCKET_REVENUE_BY_COUNTRY = "rg"  # rg|<currency>|<country>

TOTAL_KINDS = frozenset(
    {TOTAL_EVENTS, FIELD_DUPLICATES, TOTAL_REJECTED, TOTAL_FUNNEL, TOTAL_ORDERS, TOTAL_REVENUE}
    | {FIELD_TOPIC_RESETS, FIELD_DLQ_LOST, FIELD_ANON_ORDERS, TOTAL_FACTS}
)
BUCKET_KINDS = frozenset(
    {
        BUCKET_SESSIONS,
        BUCKET_SESSIONS_BY_COUNTRY,
        BUCKET_ORDERS,
        BUCKET_ORDERS_BY_COUNTRY,
        BUCKET_REVENUE,
        BUCKET_REVENUE_BY_COUNTRY,
    }
)
META_FIELDS = frozenset(
    {
        META_OFFSET,
        META_FINGERPRINT,
        META_WATERMARK,
        META_HIGHWATER,
        META_APPLIED_MS,
        META_RESETS,
    }
)

# Fields of a session's hash.
SESSION_SEGMENT = "g"  # "<channel>\t<device>\t<country>" of its first accepted event
SESSION_STAGE_TIME = "t"  # t<k>: when the session reached stage k (ms)
SESSION_EVENT = "e:"  # e:<event_id>: seen event ids
SESSION_COUNT = "n"  # distinct events held (the cap's count)
# a:<hour>:<kind><len(customer)>:<customer><user_id>: the session's activity fact of that kind
# (an account's or not), customer, user and hour was emitted (the length makes ids with any
# characters unambiguous).
SESSION_ACTIVITY = "a:"
ACTIVITY_SEP = ":"
SEGMENT_SEP = "\t"


class BatchArgs(NamedTuple):
    """The fixed ARGV of apply_batch.lua, in order (A_<NAME> in the script, 1-based there).

    After them: n_totals (field, increment) pairs for TOTALS, then one JSON array of the
    batch's EventRecords, flattened.
    """

    prefix: str  # partition_prefix()
    expected_offset: int  # the last applied offset the worker assumed (-1: none yet)
    new_offset: int  # offset of the last message of the batch
    new_fp: str  # fingerprint of that message (topic recreation check)
    watermark_ms: int  # max accepted event time on the partition after this batch
    highwater: int  # of the fetched data (for lag), -1 when unknown
    now_ms: int  # the worker's clock, for META_APPLIED_MS
    bucket_ms: int
    session_horizon_ms: int  # sessions and orders whose newest event is older are evicted
    bucket_horizon_s: int  # buckets (epoch seconds) older than this are deleted (retention)
    stages: str  # stage names, comma separated, funnel order
    session_cap: int  # distinct events a session may hold (STOREPULSE_MAX_EVENTS_PER_SESSION)
    customer_facts: int  # 1: append customer facts to the outbox (STOREPULSE_CUSTOMER_FACTS)
    anon_horizon_s: int  # anonymous-order days (epoch seconds) older than this are deleted
    session_timeout_ms: int  # a session ends this long after its newest event
    recovery_ms: int  # abandoned carts are listed until the watermark passes end + this
    session_figures: int  # 1: sessions end and count (sessions.lua); 0: the funnel alone
    n_totals: int


# Replies of apply_batch.lua: {status, stored offset, accepted, duplicates[, limits JSON]};
# with STATUS_OK also {outbox entry id or '', flat list of (customer, fact JSON)}.
STATUS_OK = "ok"
STATUS_CONFLICT = "conflict"  # the stored offset is not the expected one: nothing written
STATUS_LIMIT = "limit"  # events past a session's cap were not declared: nothing written


class EventRecord(NamedTuple):
    """One accepted event as the worker hands it to apply_batch.lua, all slots strings."""

    event_id: str
    session_id: str
    ts_ms: str
    stage: str  # stage index, 0-based
    type: str
    channel: str
    device: str
    country: str
    order_id: str  # '' when none
    revenue_units: str  # ten-thousandths, '' when none
    currency: str  # '' when none
    customer: str  # account_id, else user_id, else '' (streams/contract/facts.py)
    user_id: str  # '' when none
    account_id: str  # '' when none (with one, the customer is it: account facts)
    sku: str  # add_to_cart, remove_from_cart; '' otherwise
    quantity: str
    price_units: str  # add_to_cart: unit price, ten-thousandths (its currency in currency)


def partition_prefix(topic: str, partition: int) -> str:
    """The prefix, hash tag included, of every key of one partition."""
    return f"sp:{{{topic}/{partition}}}:"


def partitions_key(topic: str) -> str:
    """The set of partitions a worker has ever applied (readers sum over it)."""
    return f"sp:{topic}:partitions"


def bucket_key(prefix: str, bucket: int | str) -> str:
    return f"{prefix}{BUCKET_PREFIX}{bucket}"


def anon_key(prefix: str, day: int | str) -> str:
    return f"{prefix}{ANON_PREFIX}{day}"


def rejected_field(reason: str) -> str:
    return f"{TOTAL_REJECTED}{SEP}{reason}"


@dataclass
class Totals:
    """The cumulative counters of TOTALS (summed over partitions), by meaning."""

    events: dict[str, int] = field(default_factory=dict)  # type -> count
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    funnel: dict[tuple[str, str, str], int] = field(default_factory=dict)  # stage, ch, dev
    orders: dict[tuple[str, str], int] = field(default_factory=dict)  # channel, device
    revenue_units: dict[str, int] = field(default_factory=dict)  # currency -> units
    topic_resets: int = 0
    dlq_lost: int = 0
    anonymous_orders: int = 0
    facts: dict[str, int] = field(default_factory=dict)  # fact kind -> appended

    @property
    def accounted(self) -> int:
        """Messages that ended accepted, duplicate or rejected."""
        return sum(self.events.values()) + self.duplicates + sum(self.rejected.values())


def parse_totals(fields: Mapping[str, int]) -> Totals:
    """Totals from the summed TOTALS fields; names of another kind are ignored."""
    out = Totals()
    for name, value in fields.items():
        kind, _, rest = name.partition(SEP)
        if kind == FIELD_DUPLICATES:
            out.duplicates += value
        elif kind == FIELD_TOPIC_RESETS:
            out.topic_resets += value
        elif kind == FIELD_DLQ_LOST:
            out.dlq_lost += value
        elif kind == FIELD_ANON_ORDERS:
            out.anonymous_orders += value
        elif kind == TOTAL_FACTS:
            out.facts[rest] = out.facts.get(rest, 0) + value
        elif kind == TOTAL_EVENTS:
            out.events[rest] = out.events.get(rest, 0) + value
        elif kind == TOTAL_REJECTED:
            out.rejected[rest] = out.rejected.get(rest, 0) + value
        elif kind == TOTAL_FUNNEL:
            stage, channel, device = rest.rsplit(SEP, 2)
            key = (stage, channel, device)
            out.funnel[key] = out.funnel.get(key, 0) + value
        elif kind == TOTAL_ORDERS:
            channel, device = rest.split(SEP)
            out.orders[(channel, device)] = out.orders.get((channel, device), 0) + value
        elif kind == TOTAL_REVENUE:
            out.revenue_units[rest] = out.revenue_units.get(rest, 0) + value
    return out


_SEGMENT_KINDS = {BUCKET_SESSIONS: "s", BUCKET_ORDERS: "o", BUCKET_REVENUE: "r"}
_COUNTRY_KINDS = {
    BUCKET_SESSIONS_BY_COUNTRY: "s",
    BUCKET_ORDERS_BY_COUNTRY: "o",
    BUCKET_REVENUE_BY_COUNTRY: "r",
}


def bucket_counts(
    fields: Mapping[str, int], by: Dimension | None = None
) -> dict[str, FunnelCounts]:
    """Counts per value of one dimension ("all" when by is None) from summed bucket fields."""
    kinds = _COUNTRY_KINDS if by == "country" else _SEGMENT_KINDS
    groups: dict[str, FunnelCounts] = {}
    for name, value in fields.items():
        kind, _, rest = name.partition(SEP)
        what_kind = kinds.get(kind)
        if what_kind is None:
            continue
        if by == "country":
            what, _, group = rest.rpartition(SEP)
        else:
            what, channel, device = rest.rsplit(SEP, 2)
            group = channel if by == "channel" else device if by == "device" else "all"
        counts = groups.setdefault(group, FunnelCounts())
        target = {"s": counts.sessions, "o": counts.orders, "r": counts.revenue_units}[what_kind]
        target[what] = target.get(what, 0) + value
    return groups


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t") + "'"


def _lua_constants() -> dict[str, str | int]:
    constants: dict[str, str | int] = {
        "SEP": SEP,
        "K_META": META,
        "K_TOTALS": TOTALS,
        "K_BUCKET": BUCKET_PREFIX,
        "K_BUCKETS": BUCKETS,
        "K_SESSION": SESSION_PREFIX,
        "K_SESSIONS": SESSIONS,
        "K_ORDERS": ORDERS,
        "K_ORDER_TIMES": ORDER_TIMES,
        "K_OUTBOX": OUTBOX,
        "K_ANON": ANON_PREFIX,
        "K_ANON_DAYS": ANON_DAYS,
        "M_OFFSET": META_OFFSET,
        "M_FP": META_FINGERPRINT,
        "M_WM": META_WATERMARK,
        "M_HW": META_HIGHWATER,
        "M_APPLIED": META_APPLIED_MS,
        "T_EVENTS": TOTAL_EVENTS,
        "T_DUP": FIELD_DUPLICATES,
        "T_FUNNEL": TOTAL_FUNNEL,
        "T_ORDERS": TOTAL_ORDERS,
        "T_REVENUE": TOTAL_REVENUE,
        "T_ANON_ORDERS": FIELD_ANON_ORDERS,
        "T_FACTS": TOTAL_FACTS,
        "B_SESSIONS": BUCKET_SESSIONS,
        "B_SESSIONS_C": BUCKET_SESSIONS_BY_COUNTRY,
        "B_ORDERS": BUCKET_ORDERS,
        "B_ORDERS_C": BUCKET_ORDERS_BY_COUNTRY,
        "B_REVENUE": BUCKET_REVENUE,
        "B_REVENUE_C": BUCKET_REVENUE_BY_COUNTRY,
        "S_SEGMENT": SESSION_SEGMENT,
        "S_STAGE_TIME": SESSION_STAGE_TIME,
        "S_EVENT": SESSION_EVENT,
        "S_COUNT": SESSION_COUNT,
        "S_ACTIVITY": SESSION_ACTIVITY,
        "S_ACTIVITY_SEP": ACTIVITY_SEP,
        # Pairs per outbox entry: XADD's arguments stay far below Lua's 8,000-value unpack limit.
        "OUTBOX_PAIRS": 500,
        "FACT_ACTIVITY": FACT_ACTIVITY,
        "FACT_ORDER": FACT_ORDER,
        "FACT_CART": FACT_CART,
        "FACT_ACCOUNT_ACTIVITY": FACT_ACCOUNT_ACTIVITY,
        "FACT_ACCOUNT_ORDER": FACT_ACCOUNT_ORDER,
        "HOUR_MS": 3_600_000,
        "DAY_MS": 86_400_000,
        "STATUS_OK": STATUS_OK,
        "STATUS_CONFLICT": STATUS_CONFLICT,
        "STATUS_LIMIT": STATUS_LIMIT,
        "SEGMENT_SEP": SEGMENT_SEP,
        "SEGMENT_PATTERN": "^([^{0}]*){0}([^{0}]*){0}(.*)$".format(SEGMENT_SEP),  # noqa: UP032
        "RECORD_WIDTH": len(EventRecord._fields),
    }
    # A_<ARG>: 1-based index of a fixed argument in ARGV.
    for i, name in enumerate(BatchArgs._fields, start=1):
        constants[f"A_{name.upper()}"] = i
    # R_<SLOT>: 0-based offset of a slot in the flat event list.
    for i, name in enumerate(EventRecord._fields):
        constants[f"R_{name.upper()}"] = i
    return constants


LUA_CONSTANTS = _lua_constants()


def lua_header_of(
    constants: Mapping[str, str | int], source: str, extra: Iterable[tuple[str, str | int]] = ()
) -> str:
    """`local NAME = value` lines for constants (the header of a Lua script of the store)."""
    lines = [f"-- generated from {source}: the key and field grammar"]
    for name, value in [*constants.items(), *extra]:
        shown = str(value) if isinstance(value, int) else _lua_string(value)
        lines.append(f"local {name} = {shown}")
    return "\n".join(lines) + "\n"


def lua_header(extra: Iterable[tuple[str, str | int]] = ()) -> str:
    """`local NAME = value` for every constant, prepended to apply_batch.lua when loaded."""
    return lua_header_of(LUA_CONSTANTS, "streams/store/keys.py", extra)
