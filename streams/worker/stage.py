"""What a stage of the pipeline gives the batch processor: consumer, store and call builder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from streams.contract.funnel import PartitionCursor
from streams.store.funnel import ApplyResult, BatchCall, SessionLimit
from streams.worker.batch import Prepared, Record

__all__ = ["CallBuilder", "ConsumerControl", "PartitionStore"]


class ConsumerControl(Protocol):
    """The consumer operations the processor needs (Faust's consumer in production)."""

    def highwater(self, partition: int) -> int | None: ...

    async def seek_to_earliest(self, partition: int) -> int: ...

    async def seek(self, partition: int, offset: int) -> None: ...


class PartitionStore(Protocol):
    """The stage's store: offsets with its state, one atomic call per partition and batch."""

    topic: str

    async def register_partitions(self, partitions: Iterable[int]) -> None: ...

    async def load_cursor(self, partition: int) -> PartitionCursor: ...

    async def reset_partition(self, partition: int) -> int: ...

    async def apply(self, calls: Sequence[BatchCall]) -> list[ApplyResult]: ...


class CallBuilder(Protocol):
    """Checks a partition's records in rule order and builds its call (BatchBuilder)."""

    def build(
        self,
        p: int,
        cursor: PartitionCursor,
        records: Sequence[Record],
        now_ms: int,
        highwater: int | None,
        limits: Mapping[str, SessionLimit],
    ) -> Prepared: ...
