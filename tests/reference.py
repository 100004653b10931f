"""An independent, deliberately naive reference of the funnel semantics (docs/semantics.md).

It recomputes everything from the whole list of messages at once, with no incremental state,
so it shares no logic with the Lua script it checks.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from streams.contract.events import DEFAULT_CHECKOUT_STEPS, EventParser, Rejected

CHANNELS = ("direct", "organic", "paid_search", "social", "email", "referral", "affiliate")
DEVICES = ("desktop", "mobile", "tablet")


@dataclass
class Expected:
    """What the worker must have stored after consuming the messages."""

    fields: Counter[str] = field(default_factory=Counter)  # bucket fields summed over buckets
    buckets: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    totals: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, int, str]] = field(default_factory=list)  # partition, index, reason

    def range_fields(self, from_s: int, to_s: int) -> Counter[str]:
        out: Counter[str] = Counter()
        for b, counts in self.buckets.items():
            if from_s <= b < to_s:
                out.update(counts)
        return +out


def _seg(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed or value == "unknown" else "other"


def expected_state(
    messages: Iterable[tuple[int, bytes] | tuple[int, bytes | None, bytes]],
    now_ms: int,
    bucket_seconds: int = 60,
    lateness_ms: int = 3_600_000,
    skew_ms: int = 300_000,
    steps: Sequence[str] = DEFAULT_CHECKOUT_STEPS,
    max_events: int = 10_000,
) -> Expected:
    """messages: (partition, [key,] raw value) in the order one partition's consumer reads them.

    Without a key the message is taken to be keyed by its session_id, as producers must.
    """
    parser = EventParser(steps)
    stages = ["visit", "cart", *steps, "purchase"]
    exp = Expected()
    watermark: dict[int, int] = {}
    seen_ids: set[tuple[int, str, str]] = set()
    held: Counter[tuple[int, str]] = Counter()
    accepted: list[tuple[int, Any]] = []
    for index, message in enumerate(messages):
        p, raw = message[0], message[-1]
        assert isinstance(raw, bytes)
        try:
            ev = parser.parse(raw)
        except Rejected as rej:
            exp.rejected.append((p, index, rej.reason))
            continue
        if len(message) == 3 and message[1] != ev.session_id.encode():
            exp.rejected.append((p, index, "key"))
            continue
        if ev.ts > now_ms + skew_ms:
            exp.rejected.append((p, index, "future"))
            continue
        if p in watermark and ev.ts < watermark[p] - lateness_ms:
            exp.rejected.append((p, index, "late"))
            continue
        seen = (p, ev.session_id, ev.event_id) in seen_ids
        if not seen and held[(p, ev.session_id)] >= max_events:
            exp.rejected.append((p, index, "session_limit"))
            continue
        watermark[p] = max(watermark.get(p, ev.ts), ev.ts)
        if seen:
            exp.totals["dup"] += 1
            continue
        seen_ids.add((p, ev.session_id, ev.event_id))
        held[(p, ev.session_id)] += 1
        exp.totals[f"ev|{ev.type}"] += 1
        accepted.append((p, ev))
    for _, _, reason in exp.rejected:
        exp.totals[f"rej|{reason}"] += 1

    def stage_of(ev: Any) -> int:
        if ev.type == "visit":
            return 0
        if ev.type == "add_to_cart":
            return 1
        if ev.type == "checkout_step":
            return 2 + list(steps).index(ev.step)
        return len(stages) - 1

    sessions: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for p, ev in accepted:
        sessions[(p, ev.session_id)].append(ev)
    size_ms = bucket_seconds * 1000
    for evs in sessions.values():
        first = evs[0]  # segments of the first accepted event
        ch, dev = _seg(first.channel, CHANNELS), _seg(first.device, DEVICES)
        cty = first.country if len(first.country) == 2 or first.country == "UNKNOWN" else "OTHER"
        for k, stage in enumerate(stages):
            times = [e.ts for e in evs if stage_of(e) >= k]
            if not times:
                continue
            b = min(times) // size_ms * bucket_seconds
            exp.buckets[b][f"s|{stage}|{ch}|{dev}"] += 1
            exp.buckets[b][f"sg|{stage}|{cty}"] += 1
            exp.totals[f"f|{stage}|{ch}|{dev}"] += 1
    orders_seen: set[tuple[int, str]] = set()
    for p, ev in accepted:
        if ev.type != "purchase" or (p, ev.order_id) in orders_seen:
            continue
        orders_seen.add((p, ev.order_id))
        sess = sessions[(p, ev.session_id)][0]
        ch, dev = _seg(sess.channel, CHANNELS), _seg(sess.device, DEVICES)
        cty = sess.country if len(sess.country) == 2 or sess.country == "UNKNOWN" else "OTHER"
        units = int(ev.revenue * Decimal(10_000))
        b = ev.ts // size_ms * bucket_seconds
        exp.buckets[b][f"o|{ev.currency}|{ch}|{dev}"] += 1
        exp.buckets[b][f"og|{ev.currency}|{cty}"] += 1
        exp.buckets[b][f"r|{ev.currency}|{ch}|{dev}"] += units
        exp.buckets[b][f"rg|{ev.currency}|{cty}"] += units
        exp.totals[f"o|{ch}|{dev}"] += 1
        exp.totals[f"r|{ev.currency}"] += units
    for counts in exp.buckets.values():
        exp.fields.update(counts)
    return exp


def event(kind: str, eid: str, sid: str, ts: int | str, **extra: Any) -> dict[str, Any]:
    """A valid event dict of a kind with sensible defaults for its required fields."""
    body: dict[str, Any] = {"event_id": eid, "type": kind, "ts": ts, "session_id": sid}
    if kind == "add_to_cart":
        body |= {"sku": "SKU-1", "quantity": 1, "unit_price": "19.99", "currency": "EUR"}
    elif kind == "checkout_step":
        body |= {"step": "shipping"}
    elif kind == "purchase":
        body |= {"order_id": f"o-{sid}", "revenue": "19.99", "currency": "EUR"}
    body.update(extra)
    return body


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def session_key(raw: bytes) -> bytes:
    """The Kafka key a producer gives a message: its session_id (b"" for a non-event)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return b""
    sid = body.get("session_id") if isinstance(body, dict) else None
    return sid.strip().encode() if isinstance(sid, str) else b""
