"""Pure funnel rules: the stage list, event-time buckets, admission (late, future), segments."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from streams.contract.events import AddToCart, CheckoutStep, Purchase, RejectReason, Visit

__all__ = [
    "RESERVED_STAGES",
    "AnyEvent",
    "PartitionCursor",
    "StageMap",
    "bucket_of",
    "country_label",
    "fingerprint",
    "funnel_stages",
    "segment_label",
]

AnyEvent = Visit | AddToCart | CheckoutStep | Purchase

# Stage names the funnel uses itself; a checkout step may not reuse them.
RESERVED_STAGES = frozenset({"visit", "cart", "purchase"})


def funnel_stages(checkout_steps: Sequence[str]) -> tuple[str, ...]:
    """Funnel stages in order: visit, cart, each checkout step, purchase."""
    return ("visit", "cart", *checkout_steps, "purchase")


def bucket_of(ts_ms: int, bucket_seconds: int) -> int:
    """Start (epoch seconds) of the epoch-aligned bucket holding ts_ms; floor, also before 1970."""
    return (ts_ms // (bucket_seconds * 1_000)) * bucket_seconds


def fingerprint(key: bytes | None, value: bytes | None) -> str:
    """A short digest of one Kafka record, to recognise a recreated topic."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(key or b"")
    digest.update(b"\0")
    digest.update(value or b"")
    return digest.hexdigest()


class StageMap:
    """Funnel stages in order and the stage index each event reaches."""

    def __init__(self, checkout_steps: Sequence[str]) -> None:
        self.stages = funnel_stages(checkout_steps)
        self._step_index = {step: 2 + i for i, step in enumerate(checkout_steps)}
        self.purchase = len(self.stages) - 1

    def index(self, event: AnyEvent) -> int:
        if isinstance(event, Visit):
            return 0
        if isinstance(event, AddToCart):
            return 1
        if isinstance(event, CheckoutStep):
            return self._step_index[event.step]
        return self.purchase


@dataclass
class PartitionCursor:
    """What the worker knows of one partition: last applied offset, its fingerprint, watermark."""

    offset: int = -1
    fp: str = ""
    watermark_ms: int | None = None

    def admit(
        self, ts_ms: int, now_ms: int, allowed_lateness_ms: int, max_future_skew_ms: int
    ) -> tuple[RejectReason, str] | None:
        """None when accepted (and the watermark moves), else the reason and a detail."""
        verdict = self.check(ts_ms, now_ms, allowed_lateness_ms, max_future_skew_ms)
        if verdict is None:
            self.accept(ts_ms)
        return verdict

    def check(
        self, ts_ms: int, now_ms: int, allowed_lateness_ms: int, max_future_skew_ms: int
    ) -> tuple[RejectReason, str] | None:
        """The future and late rules alone: None when ts_ms passes them (nothing moves)."""
        if ts_ms > now_ms + max_future_skew_ms:
            return "future", (
                f"event time is {(ts_ms - now_ms) / 1000:.3f}s ahead of the worker clock, "
                f"more than the allowed {max_future_skew_ms / 1000:.0f}s"
            )
        wm = self.watermark_ms
        if wm is not None and ts_ms < wm - allowed_lateness_ms:
            return "late", (
                f"event time is {(wm - ts_ms) / 1000:.3f}s behind the partition watermark, "
                f"more than the allowed lateness of {allowed_lateness_ms / 1000:.0f}s"
            )
        return None

    def accept(self, ts_ms: int) -> None:
        """An event of ts_ms is accepted: the watermark is the newest accepted event time."""
        if self.watermark_ms is None or ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms


def country_label(value: str) -> str:
    """ISO 3166 alpha-2 codes pass; anything else is OTHER (bounded, and safe in field names)."""
    if value == "UNKNOWN" or (len(value) == 2 and value.isascii() and value.isalpha()):
        return value
    return "OTHER"


def segment_label(value: str, allowed: Sequence[str]) -> str:
    """Bounded segment labels: configured values and "unknown" pass, anything else is "other"."""
    return value if value in allowed or value == "unknown" else "other"
