"""Partition metas for unit tests of the read side: watermarks and apply times around NOW."""

from __future__ import annotations

from streams.store.funnel import PartitionMeta

NOW = 1_800_000_000.0  # a bucket boundary for 60 s buckets (1_800_000_000 = 60 x 30_000_000)


def meta(
    partition: int,
    wm_s: float | None,
    applied_s: float | None = NOW,
    offset: int = 99,
    hw: int = 100,
) -> PartitionMeta:
    return PartitionMeta(
        partition=partition,
        offset=offset,
        watermark_ms=None if wm_s is None else int(wm_s * 1_000),
        highwater=hw,
        applied_ms=None if applied_s is None else int(applied_s * 1_000),
    )
