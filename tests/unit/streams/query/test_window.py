"""The window end: the newest complete bucket over the partitions that are not idle."""

from __future__ import annotations

from streams.query.window import window_end
from tests.unit.streams.metas import NOW, meta


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
