"""CustomerStore's read side over fixed data, for unit tests of the exporter (no Redis)."""

from __future__ import annotations

from collections.abc import Sequence

from streams.contract.periods import Period
from streams.store.customers import CohortSums, PeriodSums
from streams.store.funnel import BucketSums, PartitionMeta
from tests.unit.streams.metas import NOW, meta


class MemoryCustomers:
    """Every period holds the same figures; one customer partition, lagging by 3 facts."""

    def __init__(self) -> None:
        self.totals_fields = {
            "new|email|desktop": 4,
            "o|new": 4,
            "o|returning": 6,
            "r|EUR": 1_000_000,
            "fx|a": 30,
            "fx|o": 10,
            "rej|schema": 1,
        }
        self.reads: list[str] = []

    def figures(self) -> PeriodSums:
        counts = {"o": 10, "r|EUR": 1_000_000, "nc|email": 4, "nd|desktop": 4, "rp": 2}
        return PeriodSums(active=30, ordering=8, new=4, retained=25, counts=counts)

    async def partitions(self) -> list[int]:
        self.reads.append("partitions")
        return [0]

    async def totals(self, partitions: Sequence[int]) -> dict[str, int]:
        self.reads.append("totals")
        return dict(self.totals_fields)

    async def metas(self, partitions: Sequence[int]) -> list[PartitionMeta]:
        self.reads.append("metas")
        return [meta(0, NOW, offset=96, hw=100)]

    async def period_sums(
        self, partitions: Sequence[int], period: Period, starts: Sequence[int]
    ) -> dict[int, PeriodSums]:
        self.reads.append("period_sums")
        return {start: self.figures() for start in starts}

    async def cohort_sums(
        self, partitions: Sequence[int], period: Period, starts: Sequence[int]
    ) -> dict[int, CohortSums]:
        self.reads.append("cohort_sums")
        return {
            s: CohortSums(4, {f"n|{s}": 4, f"c|{s}|EUR": 4, f"r|{s}|EUR": 80_000}) for s in starts
        }

    async def bucket_sums(
        self, from_s: int, to_s: int, partitions: Sequence[int] | None = None
    ) -> BucketSums:
        """The recoveries' buckets: one cart recovered (by a 10.00 EUR order) per bucket."""
        self.reads.append("bucket_sums")
        sums = BucketSums()
        for _ in range(from_s // 60 * 60, to_s, 60):
            sums.add({b"kr|email|desktop": b"1", b"kw|EUR|email|desktop": b"100000"})
        return sums

    async def anonymous_orders(
        self, partitions: Sequence[int], days: Sequence[int]
    ) -> dict[int, int]:
        self.reads.append("anonymous_orders")
        return {day + 3_600: 1 for day in days}
