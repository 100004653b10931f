"""Reads of the abandoned cart list (stage 1) and of the carts' recoveries (stage 2)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from streams.settings import Settings
from streams.store import keys
from streams.store import session_keys as sk

__all__ = ["CartStore", "ListedCart", "Recovery"]


@dataclass(frozen=True)
class ListedCart:
    """One abandoned cart as the session worker listed it (apply_batch.lua's SK.DETAILS)."""

    session_id: str
    end_ms: int
    customer: str | None
    account_id: str | None
    user_id: str | None
    channel: str
    device: str
    values: dict[str, str]  # currency -> value, ten-thousandths (exact, any size)
    items: list[tuple[str, int, str, str]]  # sku, quantity, unit price (units), currency


@dataclass(frozen=True)
class Recovery:
    order_id: str
    ts_ms: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _listed(sid: str, raw: bytes) -> ListedCart:
    customer, account, user, channel, device, end, values, items = json.loads(raw)
    # cjson writes an empty list or map as {}.
    return ListedCart(
        session_id=sid,
        end_ms=int(end),
        customer=customer or None,
        account_id=account or None,
        user_id=user or None,
        channel=channel,
        device=device,
        values=dict(values or {}),
        items=[(s, int(q), p, c) for s, q, p, c in (items or [])],
    )


class CartStore:
    """The carts of the events topic's partitions and their recoveries on the customer topic's."""

    # Cart ids read per partition and round trip while paging.
    CHUNK = 200

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def _prefix(self, partition: int) -> str:
        return keys.partition_prefix(self.settings.topic, partition)

    async def partitions(self, topic: str) -> list[int]:
        return sorted(int(p) for p in await self.client.smembers(keys.partitions_key(topic)))

    async def newest_below(
        self, partition: int, from_ms: int, upper: str, count: int
    ) -> list[tuple[str, int]]:
        """(session id, end) of listed carts with from_ms <= end < or <= upper (a ZRANGE bound:
        "(N" or "N"), newest end first, ties by session id ascending; all ties of the last end
        read are included, so the next read may start strictly below it."""
        key = self._prefix(partition) + sk.CARTS
        rows: Any = await self.client.zrevrangebyscore(
            key, upper, from_ms, start=0, num=count, withscores=True
        )
        if not rows:
            return []
        last = int(rows[-1][1])
        above = [(_text(m), int(s)) for m, s in rows if int(s) > last]
        ties: Any = await self.client.zrangebyscore(key, last, last)
        above.sort(key=lambda r: (-r[1], r[0]))
        return above + [(_text(m), last) for m in ties]

    async def details(self, partition: int, sids: Sequence[str]) -> list[ListedCart | None]:
        if not sids:
            return []
        raws: Any = await self.client.hmget(self._prefix(partition) + sk.CART_DETAILS, sids)
        return [None if raw is None else _listed(s, raw) for s, raw in zip(sids, raws, strict=True)]

    async def recoveries(self, carts: Sequence[ListedCart]) -> dict[str, Recovery]:
        """session id -> the order that recovered it, for carts with a customer (one pipelined
        read per customer partition: the customer's partition is the one holding its cart)."""
        known = [c for c in carts if c.customer]
        if not known:
            return {}
        parts = await self.partitions(self.settings.customer_topic)
        async with self.client.pipeline(transaction=False) as pipe:
            for p in parts:
                pfx = keys.partition_prefix(self.settings.customer_topic, p)
                for cart in known:
                    pipe.hget(f"{pfx}{sk.CART}{cart.customer}", cart.session_id)
            rows = await pipe.execute()
        out: dict[str, Recovery] = {}
        for i, raw in enumerate(rows):
            if raw is None:
                continue
            state = json.loads(raw)
            if state.get("r"):
                cart = known[i % len(known)]
                out[cart.session_id] = Recovery(state["r"], int(state["rt"]))
        return out
