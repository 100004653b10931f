"""One scrape's view of Redis: totals, partition metas and the window sums, in fixed round trips."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from streams.query.window import IDLE_PARTITION_SECONDS, newest_complete_end, window_end
from streams.settings import Settings
from streams.store.funnel import FunnelStore, PartitionMeta

__all__ = ["WINDOWS", "Snapshot", "SnapshotReader", "SnapshotUnavailable", "windows_for"]

# Window gauges: label value -> length in seconds (issue 5: 5m, 15m and 1h).
WINDOWS: dict[str, int] = {"5m": 300, "15m": 900, "1h": 3_600}


class SnapshotUnavailable(RuntimeError):
    """Redis could not be read for this scrape; /metrics answers 503 so `up` shows it."""


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape exports, read from Redis in a fixed number of round trips."""

    now_s: float  # wall clock of the read
    totals: Mapping[str, int]  # cumulative counters summed over partitions (store.totals)
    metas: Sequence[PartitionMeta]
    end_s: int  # window end: start of the oldest bucket that is not complete yet
    windows: Mapping[str, Mapping[str, int]]  # window label -> bucket fields summed
    read_seconds: float = 0.0
    round_trips: int = 0


def windows_for(settings: Settings) -> dict[str, int]:
    """The exported windows: those at least one bucket long (a shorter one holds no bucket)."""
    return {name: s for name, s in WINDOWS.items() if s >= settings.bucket_seconds}


class SnapshotReader:
    """Reads one Snapshot: 9 pipelined round trips, whatever the number of sessions.

    partitions (1), totals and metas (1 each, concurrent), then the buckets of the largest
    window in disjoint slices, newest first, 2 round trips each (bucket ids, then hashes), the
    slices concurrent: each bucket is read once and the windows are cumulative sums of slices.
    Redis work grows with partitions x buckets of 1 h (6 x 60 by default), never with sessions.
    """

    def __init__(
        self,
        store: FunnelStore,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        idle_s: float = IDLE_PARTITION_SECONDS,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.idle_s = idle_s
        self.windows = windows_for(settings)

    async def window_end(self) -> int:
        """The current window end alone (2 round trips)."""
        return await newest_complete_end(self.store, self.settings, self.clock, self.idle_s)

    async def read(self) -> Snapshot:
        started = time.perf_counter()
        now = self.clock()
        parts = await self.store.partitions()
        totals, metas = await asyncio.gather(self.store.totals(parts), self.store.metas(parts))
        end = window_end(metas, now, self.settings.bucket_seconds, self.idle_s)
        lengths = sorted(self.windows.values())
        edges = [0, *lengths]
        slices = await asyncio.gather(
            *(
                self.store.bucket_sums(end - hi, end - lo, parts)
                for lo, hi in itertools.pairwise(edges)
            )
        )
        windows: dict[str, dict[str, int]] = {}
        running: dict[str, int] = {}
        by_length = {s: name for name, s in self.windows.items()}
        for length, part in zip(lengths, slices, strict=True):
            for key, value in part.fields.items():
                running[key] = running.get(key, 0) + value
            windows[by_length[length]] = dict(running)
        return Snapshot(
            now_s=now,
            totals=totals,
            metas=metas,
            end_s=end,
            windows=windows,
            read_seconds=time.perf_counter() - started,
            round_trips=3 + 2 * len(lengths),
        )
