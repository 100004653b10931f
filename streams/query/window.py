"""The one rule for "now" in event time: the end of the newest complete bucket, and ranges on it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from streams.settings import Settings
from streams.store.funnel import FunnelStore, PartitionMeta

__all__ = ["IDLE_PARTITION_SECONDS", "newest_complete_end", "range_ending_now", "window_end"]

# A partition whose last batch was applied this long before the newest one is idle (no traffic
# on it) and no longer holds the window end back; 60 s is one default bucket.
IDLE_PARTITION_SECONDS = 60.0


def window_end(
    metas: Iterable[PartitionMeta],
    now_s: float,
    bucket_seconds: int,
    idle_s: float = IDLE_PARTITION_SECONDS,
) -> int:
    """End (exclusive, epoch seconds) of the newest complete event-time bucket.

    Bucket b is complete when b + bucket_seconds <= min(now, W), where W is the smallest
    watermark (newest accepted event time) over the partitions that are not idle: a partition
    is idle when its last batch was applied more than idle_s before the newest one anywhere.
    Partitions without a watermark are ignored; with none at all W is ignored (now alone).
    Capping by now keeps future-skewed events (accepted up to 5 min ahead) out of the windows.
    """
    live = [m for m in metas if m.watermark_ms is not None and m.applied_ms is not None]
    limit = now_s
    if live:
        newest_apply = max(m.applied_ms or 0 for m in live)
        active = [m for m in live if (m.applied_ms or 0) >= newest_apply - idle_s * 1_000]
        limit = min(limit, min((m.watermark_ms or 0) for m in active) / 1_000)
    return math.floor(limit / bucket_seconds) * bucket_seconds


async def newest_complete_end(
    store: FunnelStore,
    settings: Settings,
    clock: Callable[[], float] = time.time,
    idle_s: float = IDLE_PARTITION_SECONDS,
) -> int:
    """window_end() of the stored partitions, read from Redis (2 round trips)."""
    metas = await store.metas(await store.partitions())
    return window_end(metas, clock(), settings.bucket_seconds, idle_s)


async def range_ending_now(
    store: FunnelStore,
    settings: Settings,
    length_s: int,
    clock: Callable[[], float] = time.time,
) -> tuple[int, int]:
    """[from, to) of the last length_s seconds ending at the newest complete bucket.

    The default range of `storepulse kpis`, `/api/kpis?window=` and the demo's KPI line: every
    surface that answers "the last N minutes" answers it from this one function.
    """
    to_s = await newest_complete_end(store, settings, clock)
    return to_s - length_s, to_s
