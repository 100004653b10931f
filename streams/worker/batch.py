"""One partition's batch prepared: records checked in rule order, the Lua call, the dead letters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from streams.contract.events import AddToCart, EventParser, Purchase, Rejected, RemoveFromCart
from streams.contract.facts import customer_of
from streams.contract.funnel import (
    PartitionCursor,
    StageMap,
    country_label,
    fingerprint,
    segment_label,
)
from streams.contract.money import money_units
from streams.settings import Settings
from streams.store.funnel import BatchCall, SessionLimit
from streams.store.keys import EventRecord, rejected_field
from streams.worker.deadletters import Rejection

__all__ = ["BatchBuilder", "Prepared", "Record"]


class Record(NamedTuple):
    """One consumed Kafka message, framework-neutral.

    A NamedTuple: made once per consumed message, 0.6 µs against a frozen dataclass's 1.9.
    """

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass
class Prepared:
    """A partition's Lua call, the records it covers and the rejections among them."""

    call: BatchCall
    records: list[Record]
    rejections: list[Rejection] = field(default_factory=list)


class _Held:
    """A session at its cap, as the script described it, while one batch is prepared."""

    __slots__ = ("held", "known", "seen")

    def __init__(self, limit: SessionLimit) -> None:
        self.held = limit.held
        self.known = limit.known
        self.seen: set[str] = set()


class BatchBuilder:
    """Checks each record of a partition in rule order and builds the partition's Lua call.

    Order (docs/semantics.md): malformed and schema (the parser), key (must be the
    session_id, so that a session never spans partitions), future and late (the cursor's
    watermark), session_limit (a session holding STOREPULSE_MAX_EVENTS_PER_SESSION events).
    A rejected event never moves the watermark. Duplicates are found by the script.
    """

    def __init__(self, settings: Settings, parser: EventParser, stage_map: StageMap) -> None:
        self.settings = settings
        self.parser = parser
        self.stage_map = stage_map
        self._lateness_ms = settings.allowed_lateness_seconds * 1_000
        self._skew_ms = settings.max_future_skew_seconds * 1_000
        self._keep_ms = (
            settings.allowed_lateness_seconds + settings.session_timeout_seconds
        ) * 1_000
        self._cap = settings.max_events_per_session

    def build(
        self,
        p: int,
        cursor: PartitionCursor,
        records: Sequence[Record],
        now_ms: int,
        highwater: int | None,
        limits: Mapping[str, SessionLimit],
    ) -> Prepared:
        """The call for records (all newer than the cursor); moves the cursor optimistically."""
        expected = cursor.offset
        wm_before = cursor.watermark_ms
        totals: dict[str, int] = {}
        events: list[str] = []
        rejections: list[Rejection] = []
        held = {sid: _Held(limit) for sid, limit in limits.items()}
        channels, devices = self.settings.channels, self.settings.devices
        for r in records:
            try:
                event = self.parser.parse(r.value)
                sid = event.session_id
                if r.key is None or r.key != sid.encode("utf-8", "surrogatepass"):
                    raise Rejected("key", _key_detail(r.key, sid))
                verdict = cursor.check(event.ts, now_ms, self._lateness_ms, self._skew_ms)
                if verdict is not None:
                    raise Rejected(*verdict)
                if sid in held:
                    self._count(held[sid], event.event_id, sid)
            except Rejected as rej:
                rejections.append(Rejection(rej.reason, rej.detail, p, r.offset, r.value, r.key))
                name = rejected_field(rej.reason)
                totals[name] = totals.get(name, 0) + 1
                continue
            cursor.accept(event.ts)
            order_id = revenue = currency = sku = quantity = price = ""
            if isinstance(event, Purchase):
                order_id, currency = event.order_id, event.currency
                revenue = str(money_units(event.revenue))
            elif isinstance(event, AddToCart):
                sku, quantity, currency = event.sku, str(event.quantity), event.currency
                price = str(money_units(event.unit_price))
            elif isinstance(event, RemoveFromCart):
                sku, quantity = event.sku, str(event.quantity)
            # Tabs separate the stored segment triple; the contract caps lengths already.
            events += EventRecord(
                event.event_id,
                sid,
                str(event.ts),
                str(self.stage_map.index(event)),
                event.type,
                segment_label(event.channel, channels),
                segment_label(event.device, devices),
                country_label(event.country),
                order_id,
                revenue,
                currency,
                customer_of(event.account_id, event.user_id),
                event.user_id or "",
                event.account_id or "",
                sku,
                quantity,
                price,
            )
        last = records[-1]
        wm = cursor.watermark_ms
        if wm is None:
            wm = wm_before if wm_before is not None else 0
        call = BatchCall(
            partition=p,
            expected_offset=expected,
            new_offset=last.offset,
            new_fp=fingerprint(last.key, last.value),
            watermark_ms=wm,
            highwater=-1 if highwater is None else highwater,
            now_ms=now_ms,
            session_horizon_ms=wm - self._keep_ms,
            bucket_horizon_s=(wm - self.settings.retention_seconds * 1_000) // 1_000,
            anon_horizon_s=(wm - self.settings.customer_retention_seconds * 1_000) // 1_000,
            totals=totals,
            events=events,
        )
        # Optimistic: the next batch chains on this one. A conflict or a failed apply reloads.
        cursor.offset, cursor.fp = call.new_offset, call.new_fp
        return Prepared(call, list(records), rejections)

    def _count(self, session: _Held, event_id: str, sid: str) -> None:
        """Pass a session's event that it holds already or that fits; reject one past the cap."""
        if event_id in session.known or event_id in session.seen:
            return  # a duplicate: the script counts it, the session does not grow
        if session.held >= self._cap:
            raise Rejected(
                "session_limit",
                f"session {sid[:64]!r} holds {session.held} events, the limit "
                "(STOREPULSE_MAX_EVENTS_PER_SESSION); later events of it are not counted",
            )
        session.held += 1
        session.seen.add(event_id)


def _key_detail(key: bytes | None, session_id: str) -> str:
    if key is None:
        return "the message has no key; producers must key each event by its session_id"
    return (
        f"the message key {key[:64]!r} is not the session_id {session_id[:64]!r}; producers "
        "must key each event by its session_id (and use the murmur2 partitioner)"
    )
