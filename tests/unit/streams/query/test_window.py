"""The window end: the newest complete bucket over the partitions that are not idle."""

from __future__ import annotations

from streams.query.window import window_end
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


def test_window_end_is_the_bucket_holding_the_slowest_active_partitions_watermark() -> None:
    metas = [meta(0, NOW + 50), meta(1, NOW - 61), meta(2, NOW - 5)]
    # Partition 1 has only reached NOW - 61 s: buckets up to NOW - 120 are complete.
    assert window_end(metas, NOW + 55, 60) == NOW - 120


def test_window_end_is_capped_by_the_wall_clock() -> None:
    # Events up to 5 min in the future are accepted; their buckets are not complete yet.
    assert window_end([meta(0, NOW + 290)], NOW + 10, 60) == NOW


def test_an_idle_partition_does_not_hold_the_window_back() -> None:
    busy = meta(0, NOW + 2, applied_s=NOW)
    idle = meta(1, NOW - 3_000, applied_s=NOW - 61)  # last batch 61 s before the newest
    assert window_end([busy, idle], NOW + 30, 60) == NOW
    recent = meta(1, NOW - 3_000, applied_s=NOW - 59)  # within 60 s: it still counts
    assert window_end([busy, recent], NOW + 30, 60) == NOW - 3_000


def test_window_end_without_watermarks_is_the_wall_clock_bucket() -> None:
    assert window_end([], NOW + 59.9, 60) == NOW
    assert window_end([meta(0, None, applied_s=None)], NOW + 61, 60) == NOW + 60
