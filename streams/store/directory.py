"""The account directory in Redis: generations swapped atomically, upserts, the topic feed.

Keys (one hash tag, the accounts topic's: one Redis Cluster slot): ``dir`` the pointer hash
(``gen`` the current generation, ``version`` moved by every change, ``loaded_ms``), ``g:<gen>``
a generation (account_id -> row, streams/contract/directory.py), ``next`` the generation counter,
``feed`` the topic feed's offsets (``o|<partition>``), rejected (``rej|<reason>``) and applied
records. A load writes a new generation beside the current one and flips the pointer in one
call (directory.lua): readers, who read pointer and rows in one call too, see the old directory
or the new one, never a mix. An upsert load merges into a copy and flips only if the version did
not move meanwhile (else it merges again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from streams.contract.accounts import DirectoryRow
from streams.contract.directory import decode_row, encode_row
from streams.settings import Settings
from streams.store import keys

__all__ = ["DIRECTORY_SCRIPT", "Directory", "DirectoryStore", "FeedTotals"]

POINTER = "dir"
GENERATION = "g:"
NEXT = "next"
FEED = "feed"
P_GENERATION = "gen"
P_VERSION = "version"
P_LOADED_MS = "loaded_ms"
F_OFFSET = "o"
F_REJECTED = "rej"
F_APPLIED = "applied"
_CONSTANTS: dict[str, str | int] = {
    "D_POINTER": POINTER,
    "D_GENERATION": GENERATION,
    "D_NEXT": NEXT,
    "D_FEED": FEED,
    "P_GENERATION": P_GENERATION,
    "P_VERSION": P_VERSION,
    "P_LOADED_MS": P_LOADED_MS,
    "F_OFFSET": F_OFFSET,
    "F_REJECTED": F_REJECTED,
    "F_APPLIED": F_APPLIED,
    "SEP": keys.SEP,
    "STATUS_OK": keys.STATUS_OK,
    "STATUS_CONFLICT": keys.STATUS_CONFLICT,
}
DIRECTORY_SCRIPT = keys.lua_header_of(_CONSTANTS, "streams/store/directory.py") + (
    resources.files("streams.store").joinpath("directory.lua").read_text()
)
_CHUNK = 1_000  # rows per HSET while a generation is written
_FLIP_ATTEMPTS = 20


@dataclass(frozen=True)
class Directory:
    """One consistent directory: its generation, version and rows by account id."""

    generation: str = ""
    version: str = "0"
    rows: Mapping[str, DirectoryRow] = field(default_factory=dict)

    def row(self, account_id: str) -> DirectoryRow:
        """The account's row, or an unassigned one (not in the directory)."""
        return self.rows.get(account_id) or DirectoryRow(account_id)

    @property
    def reps(self) -> set[str]:
        return {r.sales_rep for r in self.rows.values() if r.sales_rep is not None}


@dataclass(frozen=True)
class FeedTotals:
    applied: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class DirectoryStore:
    """The directory's keys and its atomic steps; reads are cached per (generation, version)."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.prefix = f"sp:{{{settings.accounts_topic}}}:"
        self._cached = Directory()
        self._script = client.register_script(DIRECTORY_SCRIPT)

    async def _call(self, *argv: Any) -> Any:
        return await self._script(args=[self.prefix, *argv])

    async def read(self) -> Directory:
        """The current directory (one atomic read when it changed since the last one)."""
        gen, version = await self.client.hmget(self.prefix + POINTER, P_GENERATION, P_VERSION)
        cached = self._cached
        if gen is not None and (_text(gen), _text(version or b"0")) == (
            cached.generation,
            cached.version,
        ):
            return cached
        got_gen, got_version, flat = await self._call("read")
        rows = {
            _text(flat[i]): decode_row(_text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)
        }
        self._cached = Directory(_text(got_gen), _text(got_version), rows)
        return self._cached

    async def _write_generation(self, rows: Iterable[DirectoryRow]) -> str:
        gen = str(await self.client.incr(self.prefix + NEXT))
        key = self.prefix + GENERATION + gen
        batch: dict[Any, Any] = {}  # redis-py types mapping keys as a wide invariant union
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            for row in rows:
                batch[row.account_id] = encode_row(row)
                if len(batch) >= _CHUNK:
                    pipe.hset(key, mapping=batch)
                    batch = {}
            if batch:
                pipe.hset(key, mapping=batch)
            await pipe.execute()
        return gen

    async def replace(self, rows: Sequence[DirectoryRow]) -> None:
        """The directory becomes exactly rows, at once for every reader."""
        gen = await self._write_generation(rows)
        await self._call("flip", gen, "", int(time.time() * 1000))

    async def upsert(self, rows: Sequence[DirectoryRow]) -> int:
        """Rows replace the rows of their ids, others stay; at once for every reader. Returns
        the size of the merged directory."""
        for _ in range(_FLIP_ATTEMPTS):
            self._cached = Directory()
            current = await self.read()
            merged = dict(current.rows)
            merged.update((r.account_id, r) for r in rows)
            gen = await self._write_generation(merged.values())
            (status,) = await self._call("flip", gen, current.version, int(time.time() * 1000))
            if _text(status) == keys.STATUS_OK:
                return len(merged)
            # The directory changed meanwhile (another load, the topic feed): merge again.
            await self.client.unlink(self.prefix + GENERATION + gen)
        raise RuntimeError("the directory kept changing during the upsert; try again")

    # The topic feed ---------------------------------------------------------------------------

    async def feed_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """The last applied offset of each partition of the accounts topic (-1: none)."""
        names = [f"{F_OFFSET}{keys.SEP}{p}" for p in partitions]
        values = await self.client.hmget(self.prefix + FEED, names) if names else []
        return {p: -1 if v is None else int(v) for p, v in zip(partitions, values, strict=True)}

    async def apply_feed(
        self,
        partition: int,
        expected: int,
        new: int,
        rows: Sequence[DirectoryRow],
        rejected: Mapping[str, int],
    ) -> tuple[bool, int]:
        """Upserts of one batch of a feed partition with its offset, atomically; (applied,
        stored offset): False when the stored offset was not the expected one."""
        flat: list[str] = []
        for row in rows:  # later records of one batch win: HSET in order
            flat += [row.account_id, encode_row(row)]
        pairs: list[Any] = []
        for reason, n in rejected.items():
            pairs += [reason, n]
        status, stored = await self._call(
            "feed",
            partition,
            expected,
            new,
            len(rejected),
            *pairs,
            json.dumps(flat, separators=(",", ":"), ensure_ascii=False),
        )
        return _text(status) == keys.STATUS_OK, int(stored)

    async def feed_totals(self) -> FeedTotals:
        raw: Any = await self.client.hgetall(self.prefix + FEED)
        rejected: dict[str, int] = {}
        applied = 0
        for name, value in raw.items():
            kind, _, rest = _text(name).partition(keys.SEP)
            if kind == F_REJECTED:
                rejected[rest] = int(value)
            elif kind == F_APPLIED:
                applied = int(value)
        return FeedTotals(applied, rejected)
