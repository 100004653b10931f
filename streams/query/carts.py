"""The abandoned cart list (`storepulse carts --abandoned`): newest end first, cursor pages."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from streams.contract.money import money_text, units_to_money
from streams.contract.times import format_ts
from streams.settings import Settings
from streams.store.carts import CartStore, ListedCart, Recovery

__all__ = ["CartQuery", "abandoned_carts", "decode_cursor", "encode_cursor"]


def encode_cursor(end_ms: int, session_id: str) -> str:
    """An opaque cursor: the page goes on after the cart (end_ms, session_id)."""
    raw = f"{end_ms}:{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    """(end_ms, session_id) of a cursor; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        end, sep, sid = raw.partition(":")
        if not sep or not sid or not end.isdigit():
            raise ValueError
        return int(end), sid
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"{text[:40]!r} is not a cursor of this list (pass `next` back)") from None


@dataclass(frozen=True)
class CartQuery:
    from_s: int
    to_s: int
    min_value: Decimal | None = None
    customer_only: bool = False
    limit: int = 100
    cursor: str | None = None


def _worth(cart: ListedCart, min_value: Decimal | None) -> bool:
    if min_value is None:
        return True
    if not cart.values:
        return min_value <= 0
    return any(units_to_money(int(v)) >= min_value for v in cart.values.values())


def _record(cart: ListedCart, recovery: Recovery | None) -> dict[str, Any]:
    single = len(cart.values) == 1
    value = (
        "0.00"
        if not cart.values
        else money_text(units_to_money(int(next(iter(cart.values.values())))))
        if single
        else None
    )
    return {
        "session_id": cart.session_id,
        "customer": cart.customer,
        "account_id": cart.account_id,
        "user_id": cart.user_id,
        "channel": cart.channel,
        "device": cart.device,
        "abandoned_at": format_ts(cart.end_ms),
        "value": value,
        "currency": next(iter(cart.values)) if single else None,
        "items": [
            {"sku": sku, "quantity": q, "unit_price": money_text(units_to_money(int(price)))}
            for sku, q, price, _ in cart.items
        ],
        "recovered_at": None if recovery is None else format_ts(recovery.ts_ms),
    }


class _Partition:
    """One partition's carts in list order, read a chunk at a time."""

    def __init__(
        self, store: CartStore, p: int, from_ms: int, upper: str, after: tuple[int, str]
    ) -> None:
        self.store, self.p, self.from_ms = store, p, from_ms
        self.upper = upper
        self.after = after  # the cursor's (-end, sid): only carts after it
        self.buffer: list[ListedCart] = []
        self.done = False

    async def head(self) -> ListedCart | None:
        while not self.buffer and not self.done:
            rows = await self.store.newest_below(self.p, self.from_ms, self.upper, CartStore.CHUNK)
            if not rows:
                self.done = True
                break
            self.upper = f"({rows[-1][1]}"
            rows = [r for r in rows if (-r[1], r[0]) > self.after]
            carts = await self.store.details(self.p, [sid for sid, _ in rows])
            self.buffer = [c for c in carts if c is not None]
        return self.buffer[0] if self.buffer else None


async def abandoned_carts(store: CartStore, settings: Settings, query: CartQuery) -> dict[str, Any]:
    """The page of the list that `query` asks for: {"carts": [...], "next": cursor or None}."""
    from_ms, to_ms = query.from_s * 1_000, query.to_s * 1_000
    upper, after = f"({to_ms}", (-to_ms, "")
    if query.cursor is not None:
        end, sid = decode_cursor(query.cursor)
        if end < to_ms:
            upper, after = str(end), (-end, sid)
    parts = [
        _Partition(store, p, from_ms, upper, after) for p in await store.partitions(settings.topic)
    ]
    page: list[ListedCart] = []
    more = False
    while True:
        heads = [(c, part) for part in parts if (c := await part.head()) is not None]
        if not heads:
            break
        cart, part = min(heads, key=lambda h: (-h[0].end_ms, h[0].session_id))
        part.buffer.pop(0)
        if query.customer_only and cart.customer is None:
            continue
        if not _worth(cart, query.min_value):
            continue
        if len(page) == query.limit:
            more = True
            break
        page.append(cart)
    found = await store.recoveries(page)
    return {
        "carts": [_record(c, found.get(c.session_id)) for c in page],
        "next": encode_cursor(page[-1].end_ms, page[-1].session_id) if more else None,
    }
