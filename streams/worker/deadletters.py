"""Dead letters: the record of a refused message, its bounded JSON body, and the producer of it."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.contract.events import RejectReason
from streams.kafka import client_options
from streams.settings import Settings

__all__ = [
    "DeadLetterProducer",
    "DeadLetterSink",
    "LostDeadLetter",
    "Rejection",
    "dlq_payload",
    "dlq_record_limit",
]

log = logging.getLogger("storepulse.worker")

# A reason's detail is a few hundred characters (5 validation errors at most); a key is an id.
MAX_DETAIL_CHARS = 1_024
MAX_KEY_BYTES = 1_024
# JSON writes a control character as \\u00XX: 6 characters for 1 byte, the worst case of text.
_ESCAPE = 6
# Everything else of a record (field names, topic, worker, numbers, digest): well under 2 KiB.
_FRAME_BYTES = 2_048


@dataclass(frozen=True)
class Rejection:
    """A message refused by the worker, bound for the dead-letter topic."""

    reason: RejectReason
    detail: str
    partition: int
    offset: int
    payload: bytes | None
    key: bytes | None


@dataclass(frozen=True)
class LostDeadLetter:
    """A dead letter the broker refused for good (too large, invalid topic, not authorised)."""

    rejection: Rejection
    error: str


class DeadLetterSink(Protocol):
    async def publish(self, rejections: Sequence[Rejection]) -> list[LostDeadLetter]:
        """Publish every rejection; returns those refused for good (transient errors raise)."""
        ...


def dlq_record_limit(max_payload_bytes: int) -> int:
    """The most bytes one dead-letter record can take, whatever the message was."""
    return _ESCAPE * (max_payload_bytes + MAX_KEY_BYTES + MAX_DETAIL_CHARS) + _FRAME_BYTES


def _bounded(body: dict[str, object], name: str, raw: bytes, limit: int) -> None:
    """raw as text (UTF-8) or base64, cut to limit bytes; its size and digest when cut."""
    kept = raw[:limit]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        body[f"{name}_base64"] = base64.b64encode(kept).decode("ascii")
    else:
        # Valid UTF-8 cut anywhere loses at most a split last character, never another byte.
        body[name] = kept.decode("utf-8", "ignore")
    if len(raw) > limit:
        body[f"{name}_truncated"] = True
        body[f"{name}_bytes"] = len(raw)
        body[f"{name}_sha256"] = hashlib.sha256(raw).hexdigest()


def dlq_payload(
    rejection: Rejection, topic: str, worker_id: str, now_ms: int, max_payload_bytes: int
) -> bytes:
    """The dead-letter JSON: reason, detail, source topic/partition/offset and the payload.

    Its size is at most dlq_record_limit(max_payload_bytes): a longer payload keeps its first
    max_payload_bytes bytes with payload_truncated, payload_bytes (the original size) and
    payload_sha256 (of the original), so that a 200 KB message never makes a record the broker
    refuses (a control character is 6 characters in JSON).
    """
    body: dict[str, object] = {
        "reason": rejection.reason,
        "detail": rejection.detail[:MAX_DETAIL_CHARS],
        "topic": topic,
        "partition": rejection.partition,
        "offset": rejection.offset,
        "worker": worker_id,
        "rejected_at_ms": now_ms,
    }
    for name, raw, limit in (
        ("key", rejection.key, MAX_KEY_BYTES),
        ("payload", rejection.payload, max_payload_bytes),
    ):
        if raw is None:
            body[name] = None
        else:
            _bounded(body, name, raw, limit)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _permanent(exc: BaseException) -> bool:
    """A Kafka error that retrying cannot cure (aiokafka marks the others retriable)."""
    return isinstance(exc, KafkaError) and not exc.retriable


class DeadLetterProducer:
    """Publishes rejections to the dead-letter topic and waits for every acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self._logged: set[tuple[int, int]] = set()

    async def start(self) -> None:
        # Not idempotent: the local broker (Tansu) refuses idempotent producers; DLQ records
        # carry partition and offset, so a consumer can drop the rare re-published one.
        limit = dlq_record_limit(self.settings.dlq_max_payload_bytes)
        self.producer = AIOKafkaProducer(
            **client_options(self.settings),
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            # Room for the largest record a rejection can make (aiokafka's default is 1 MiB).
            max_request_size=max(1_048_576, limit + 1_024),
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def reachable(self) -> bool:
        """A metadata round trip to the brokers."""
        assert self.producer is not None, "start() first"
        return bool(await self.producer.client.force_metadata_update())

    async def publish(self, rejections: Sequence[Rejection]) -> list[LostDeadLetter]:
        assert self.producer is not None, "start() first"
        s = self.settings
        now_ms = int(time.time() * 1000)
        lost: list[LostDeadLetter] = []
        pending = []
        for r in rejections:
            value = dlq_payload(r, s.topic, s.worker_id, now_ms, s.dlq_max_payload_bytes)
            try:
                pending.append((r, await self.producer.send(s.dlq_topic, value, key=r.key)))
            except KafkaError as exc:
                if not _permanent(exc):
                    raise
                lost.append(self._lost(r, exc))
        for r, future in pending:
            try:
                await future
            except KafkaError as exc:
                if not _permanent(exc):
                    raise
                lost.append(self._lost(r, exc))
        return lost

    def _lost(self, rejection: Rejection, exc: BaseException) -> LostDeadLetter:
        where = (rejection.partition, rejection.offset)
        if where not in self._logged:  # a redelivered batch must not log it again
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged.add(where)
            log.error(
                "dead letter of partition %d offset %d (%s) refused by Kafka for good: %s: %s; "
                "counted in storepulse_dlq_lost_total, not retried",
                rejection.partition,
                rejection.offset,
                rejection.reason,
                type(exc).__name__,
                exc,
            )
        return LostDeadLetter(rejection, type(exc).__name__)
