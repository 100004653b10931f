"""The state benches' writer: facts into the customer partitions in batches, as the stage does."""

from __future__ import annotations

import zlib

from storepulse.bench.options import BenchError
from streams.contract.funnel import PartitionCursor
from streams.settings import Settings
from streams.store.customers import CustomerStore
from streams.store.keys import STATUS_OK
from streams.worker.batch import Record
from streams.worker.customer_batch import FactBatchBuilder

__all__ = ["FactWriter"]

BATCH = 1_000  # facts per partition and Lua call, the worker's batch size


class FactWriter:
    """Facts of many customers into the customer partitions, in batches of BATCH, through the
    customer stage's own batch builder and Lua apply (`what` names the bench in errors)."""

    def __init__(self, store: CustomerStore, settings: Settings, what: str) -> None:
        self.store = store
        self.what = what
        self.builder = FactBatchBuilder(settings)
        self.parts = settings.customer_partition_count
        self.cursors = [PartitionCursor() for _ in range(self.parts)]
        self.offsets = [0] * self.parts
        self.pending: list[list[Record]] = [[] for _ in range(self.parts)]
        self.facts = 0

    async def add(self, customer: str, value: bytes) -> None:
        p = zlib.crc32(customer.encode()) % self.parts
        self.pending[p].append(Record(p, self.offsets[p], customer.encode(), value))
        self.offsets[p] += 1
        self.facts += 1
        if len(self.pending[p]) >= BATCH:
            await self.flush(full_only=True)

    async def flush(self, full_only: bool = False) -> None:
        calls = []
        for p, records in enumerate(self.pending):
            if records and (len(records) >= BATCH or not full_only):
                prepared = self.builder.build(p, self.cursors[p], records, 0, None, {})
                if prepared.rejections:
                    raise BenchError(f"{self.what}: a fact was refused: {prepared.rejections[0]}")
                calls.append(prepared.call)
                self.pending[p] = []
        if calls:
            for call, result in zip(calls, await self.store.apply(calls), strict=True):
                if result.status != STATUS_OK:
                    raise BenchError(f"{self.what}: partition {call.partition}: {result}")
