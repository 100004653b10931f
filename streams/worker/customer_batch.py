"""One customer partition's batch prepared: facts checked, their records, the dead letters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streams.contract.events import Rejected
from streams.contract.facts import ActivityFact, CartFact, HistoryFact, OrderFact, parse_fact
from streams.contract.funnel import PartitionCursor, country_label, fingerprint, segment_label
from streams.contract.periods import PERIODS, next_start, period_starts, previous_start
from streams.settings import Settings
from streams.store.customer_keys import DETAIL_SEP, FactRecord
from streams.store.funnel import BatchCall, SessionLimit
from streams.store.keys import rejected_field
from streams.worker.batch import Prepared, Record
from streams.worker.deadletters import Rejection

__all__ = ["FactBatchBuilder"]

# Every slot empty: a history or cart fact fills only its own (FactRecord's comments).
_BLANK = FactRecord(*[""] * len(FactRecord._fields))


class FactBatchBuilder:
    """Checks each fact of a customer partition and builds the partition's Lua call.

    A message that is not a fact (malformed, schema) or is not keyed by its customer (key: a
    customer's facts must all reach one partition) is dead-lettered like a bad event. The
    period starts of each fact are computed here, once (streams/contract/periods.py).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._retention_ms = settings.customer_retention_seconds * 1_000

    def build(
        self,
        p: int,
        cursor: PartitionCursor,
        records: Sequence[Record],
        now_ms: int,
        highwater: int | None,
        limits: Mapping[str, SessionLimit],
    ) -> Prepared:
        expected = cursor.offset
        totals: dict[str, int] = {}
        events: list[str] = []
        rejections: list[Rejection] = []
        channels, devices = self.settings.channels, self.settings.devices
        for r in records:
            try:
                fact = parse_fact(r.value, r.key)
            except Rejected as rej:
                rejections.append(Rejection(rej.reason, rej.detail, p, r.offset, r.value, r.key))
                name = rejected_field(rej.reason)
                totals[name] = totals.get(name, 0) + 1
                continue
            if isinstance(fact, HistoryFact):
                history = DETAIL_SEP.join((fact.orders, fact.first_order_ms, fact.last_order_ms))
                events += _BLANK._replace(kind=fact.kind, customer=fact.customer, history=history)
                continue
            if isinstance(fact, CartFact):
                if fact.end_ms:
                    cursor.accept(int(fact.end_ms))
                    channel = segment_label(fact.channel, channels)
                    device = segment_label(fact.device, devices)
                    country = country_label(fact.country)
                else:
                    channel = device = country = ""
                events += _BLANK._replace(
                    kind=fact.kind,
                    customer=fact.customer,
                    ts_ms=fact.end_ms,
                    channel=channel,
                    device=device,
                    session_id=fact.session_id,
                    version=fact.version,
                    country=country,
                )
                continue
            if isinstance(fact, ActivityFact):
                ts = int(fact.hour) * 1_000
                order_id = units = currency = channel = device = ""
            else:
                assert isinstance(fact, OrderFact)
                ts = int(fact.ts_ms)
                order_id, units, currency = fact.order_id, fact.revenue_units, fact.currency
                # Bounded like the funnel's labels, whoever published the fact.
                channel = segment_label(fact.channel, channels)
                device = segment_label(fact.device, devices)
            cursor.accept(ts)
            starts = period_starts(ts // 1_000)
            hour, day, week, month = (str(s) for s in starts)
            before = after = ""
            if isinstance(fact, OrderFact):
                # The neighbours of each period, for the retained count (customer_keys.py).
                pairs = list(zip(PERIODS, starts, strict=True))
                before = DETAIL_SEP.join(str(previous_start(g, s)) for g, s in pairs)
                after = DETAIL_SEP.join(str(next_start(g, s)) for g, s in pairs)
            events += FactRecord(
                fact.kind,
                fact.customer,
                order_id,
                str(ts),
                units,
                currency,
                channel,
                device,
                hour,
                day,
                week,
                month,
                before,
                after,
                "",
                fact.session_id,
                fact.user_id,
                "",
                "",
            )
        last = records[-1]
        wm = cursor.watermark_ms or 0
        call = BatchCall(
            partition=p,
            expected_offset=expected,
            new_offset=last.offset,
            new_fp=fingerprint(last.key, last.value),
            watermark_ms=wm,
            highwater=-1 if highwater is None else highwater,
            now_ms=now_ms,
            session_horizon_ms=0,
            bucket_horizon_s=(wm - self._retention_ms) // 1_000,
            totals=totals,
            events=events,
        )
        cursor.offset, cursor.fp = call.new_offset, call.new_fp
        return Prepared(call, list(records), rejections)
