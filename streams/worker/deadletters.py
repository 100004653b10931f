"""Dead letters: the record of a refused message, its JSON body, and the producer that sends it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer

from streams.contract.events import RejectReason
from streams.kafka import client_options
from streams.settings import Settings

__all__ = ["DeadLetterProducer", "DeadLetterSink", "Rejection", "dlq_payload"]


@dataclass(frozen=True)
class Rejection:
    """A message refused by the worker, bound for the dead-letter topic."""

    reason: RejectReason
    detail: str
    partition: int
    offset: int
    payload: bytes | None
    key: bytes | None


class DeadLetterSink(Protocol):
    async def publish(self, rejections: Sequence[Rejection]) -> None: ...


def dlq_payload(rejection: Rejection, topic: str, worker_id: str, now_ms: int) -> bytes:
    """The dead-letter JSON: reason, detail, source topic/partition/offset and the payload."""
    body: dict[str, object] = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "topic": topic,
        "partition": rejection.partition,
        "offset": rejection.offset,
        "worker": worker_id,
        "rejected_at_ms": now_ms,
    }
    for name, raw in (("key", rejection.key), ("payload", rejection.payload)):
        if raw is None:
            body[name] = None
            continue
        try:
            body[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            body[f"{name}_base64"] = base64.b64encode(raw).decode("ascii")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class DeadLetterProducer:
    """Publishes rejections to the dead-letter topic and waits for every acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Not idempotent: the local broker (Tansu) refuses idempotent producers; DLQ records
        # carry partition and offset, so a consumer can drop the rare re-published one.
        self.producer = AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=False, linger_ms=5
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

    async def publish(self, rejections: Sequence[Rejection]) -> None:
        assert self.producer is not None, "start() first"
        now_ms = int(time.time() * 1000)
        futures = [
            await self.producer.send(
                self.settings.dlq_topic,
                dlq_payload(r, self.settings.topic, self.settings.worker_id, now_ms),
                key=r.key,
            )
            for r in rejections
        ]
        for future in futures:
            await future
