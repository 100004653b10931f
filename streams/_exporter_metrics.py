"""Exporter metrics: the Redis snapshot of one scrape and the metric families built from it."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.events import EventType, RejectReason
from streams.funnel import MONEY_SCALE
from streams.kpis import Dimension, FunnelCounts, group_counts
from streams.settings import Settings
from streams.store import FunnelStore, PartitionMeta

__all__ = [
    "IDLE_PARTITION_SECONDS",
    "MAX_CACHE_SECONDS",
    "WINDOWS",
    "CachedSnapshots",
    "ExporterCollector",
    "Snapshot",
    "SnapshotReader",
    "SnapshotUnavailable",
    "create",
    "families",
    "window_end",
    "windows_for",
]

# Window gauges: label value -> length in seconds (issue 5: 5m, 15m and 1h).
WINDOWS: dict[str, int] = {"5m": 300, "15m": 900, "1h": 3_600}
# Prometheus scrapes every 5-15 s; several scrapers (two Prometheus replicas, the board, a
# curl) within one second share one Redis read. Longer would serve stale KPIs.
MAX_CACHE_SECONDS = 1.0
# A partition whose last batch was applied this long before the newest one is idle (no traffic
# on it) and no longer holds the window end back; 60 s is one default bucket.
IDLE_PARTITION_SECONDS = 60.0

_EVENT_TYPES: tuple[str, ...] = get_args(EventType)
_REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)


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
        """The current window end alone (2 round trips), for /api/kpis?window=."""
        metas = await self.store.metas(await self.store.partitions())
        return window_end(metas, self.clock(), self.settings.bucket_seconds, self.idle_s)

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


class CachedSnapshots:
    """A snapshot at most max_age seconds old; concurrent scrapes wait for one shared read."""

    def __init__(
        self,
        read: Callable[[], Snapshot],
        max_age: float = MAX_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= max_age <= MAX_CACHE_SECONDS:
            raise ValueError(f"cache age must be within 0..{MAX_CACHE_SECONDS} s, got {max_age}")
        self._read = read
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None
        self.reads = 0

    def get(self) -> Snapshot:
        with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] <= self.max_age:
                return self._cached[1]
            taken = self._clock()
            snapshot = self._read()
            self.reads += 1
            self._cached = (taken, snapshot)
            return snapshot


# Families ----------------------------------------------------------------------------------


@dataclass
class _Families:
    """Fresh metric families for one scrape."""

    items: list[Metric] = field(default_factory=list)

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=list(labels))
        self.items.append(family)
        return family

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        self.items.append(family)
        return family


def _known_then_seen(known: Iterable[str], seen: Iterable[str]) -> list[str]:
    """Configured label values first (exported at 0 so rate() sees the first increment)."""
    out = list(dict.fromkeys(known))
    out += sorted(set(seen) - set(out))
    return out


def _counters(out: _Families, totals: Mapping[str, int], settings: Settings) -> None:
    parts: dict[str, dict[str, int]] = {}
    for name, value in totals.items():
        kind, sep, rest = name.partition("|")
        if sep:
            parts.setdefault(kind, {})[rest] = value

    events = out.counter(
        "storepulse_events", "Distinct accepted events (by event_id), by type.", ["type"]
    )
    ev = parts.get("ev", {})
    for t in _known_then_seen(_EVENT_TYPES, ev):
        events.add_metric([t], ev.get(t, 0))
    out.counter(
        "storepulse_events_duplicate", "Events whose event_id was seen before; ignored."
    ).add_metric([], totals.get("dup", 0))
    rejected = out.counter(
        "storepulse_events_rejected",
        "Rejected events by reason; each also went to the dead-letter topic.",
        ["reason"],
    )
    rej = parts.get("rej", {})
    for reason in _known_then_seen(_REJECT_REASONS, rej):
        rejected.add_metric([reason], rej.get(reason, 0))

    # The channel x device cross product; the rules derive the "all" levels from it.
    grid = [(c, d) for c in settings.channels for d in settings.devices]
    sessions = out.counter(
        "storepulse_funnel_sessions",
        "Sessions that reached the funnel stage (closed funnel), by the session's segment.",
        ["stage", "channel", "device"],
    )
    funnel = parts.get("f", {})
    known_f = [f"{s}|{c}|{d}" for s in settings.stages for c, d in grid]
    for key in _known_then_seen(known_f, funnel):
        stage, channel, device = key.split("|")
        sessions.add_metric([stage, channel, device], funnel.get(key, 0))
    orders = out.counter(
        "storepulse_orders", "Distinct order_ids, by the session's segment.", ["channel", "device"]
    )
    o = parts.get("o", {})
    for key in _known_then_seen([f"{c}|{d}" for c, d in grid], o):
        channel, device = key.split("|")
        orders.add_metric([channel, device], o.get(key, 0))
    revenue = out.counter(
        "storepulse_revenue", "Revenue of the counted orders in currency units.", ["currency"]
    )
    for currency, units in sorted(parts.get("r", {}).items()):
        revenue.add_metric([currency], units / MONEY_SCALE)
    out.counter(
        "storepulse_topic_resets",
        "Partitions found recreated (Redis offsets the broker no longer has); counters kept.",
    ).add_metric([], totals.get("topic_resets", 0))


# Overall, per channel, per device: the three levels the rules and the dashboard use.
_LEVELS: tuple[Dimension | None, ...] = (None, "channel", "device")


def _segment(by: Dimension | None, value: str) -> tuple[str, str]:
    if by == "channel":
        return value, "all"
    if by == "device":
        return "all", value
    return "all", "all"


def _window_gauges(out: _Families, snapshot: Snapshot, settings: Settings) -> None:
    stages = settings.stages
    steps = stages[1:-1]  # cart and each checkout step: each has a next stage
    n = settings.min_sample
    sessions = out.gauge(
        "storepulse_window_sessions",
        "Sessions reaching the stage in the event-time window ending at the newest complete "
        "bucket; channel/device 'all' = not broken down.",
        ["window", "stage", "channel", "device"],
    )
    conversion = out.gauge(
        "storepulse_conversion_ratio",
        f"purchase / visit sessions in the window (not exported below {n} visits).",
        ["window", "channel", "device"],
    )
    abandonment = out.gauge(
        "storepulse_cart_abandonment_ratio",
        f"1 - purchase / cart sessions in the window (not exported below {n} carts).",
        ["window", "channel", "device"],
    )
    dropoff = out.gauge(
        "storepulse_checkout_dropoff_ratio",
        f"1 - sessions(next stage) / sessions(step) in the window (not exported below {n}).",
        ["window", "step", "channel", "device"],
    )
    aov = out.gauge(
        "storepulse_average_order_value",
        f"Revenue / orders in the window, by currency (not exported below {n} orders).",
        ["window", "currency"],
    )
    known: dict[Dimension | None, tuple[str, ...]] = {
        None: ("all",),
        "channel": settings.channels,
        "device": settings.devices,
    }
    for window, fields in snapshot.windows.items():
        for by in _LEVELS:
            groups = group_counts(fields, by)
            for value in _known_then_seen(known[by], groups):
                counts = groups.get(value, FunnelCounts())
                channel, device = _segment(by, value)
                got = {stage: counts.sessions.get(stage, 0) for stage in stages}
                for stage in stages:
                    sessions.add_metric([window, stage, channel, device], got[stage])
                visit, cart, purchase = got[stages[0]], got[stages[1]], got[stages[-1]]
                if visit >= n:
                    conversion.add_metric([window, channel, device], purchase / visit)
                if cart >= n:
                    abandonment.add_metric([window, channel, device], 1 - purchase / cart)
                for k, step in enumerate(steps, start=1):
                    if got[step] >= n:
                        ratio = 1 - got[stages[k + 1]] / got[step]
                        dropoff.add_metric([window, step, channel, device], ratio)
                if by is None:
                    for currency in sorted(counts.orders):
                        orders = counts.orders[currency]
                        if orders >= n:
                            units = counts.revenue_units.get(currency, 0)
                            aov.add_metric([window, currency], units / MONEY_SCALE / orders)
    out.gauge(
        "storepulse_window_end_timestamp_seconds",
        "End (exclusive) of the window gauges: the newest complete event-time bucket's end.",
    ).add_metric([], snapshot.end_s)


def _health(out: _Families, snapshot: Snapshot) -> None:
    lag = out.gauge(
        "storepulse_consumer_lag",
        "Messages not yet applied: high-water mark of the fetched data - (last applied offset "
        "+ 1), as of the partition's last applied batch.",
        ["partition"],
    )
    applied = out.gauge(
        "storepulse_last_applied_timestamp_seconds",
        "Wall clock time the worker applied the partition's last batch.",
        ["partition"],
    )
    for meta in snapshot.metas:
        if meta.highwater >= 0:
            lag.add_metric([str(meta.partition)], max(0, meta.highwater - (meta.offset + 1)))
        if meta.applied_ms is not None:
            applied.add_metric([str(meta.partition)], meta.applied_ms / 1_000)
    marks = [m.watermark_ms for m in snapshot.metas if m.watermark_ms is not None]
    newest = out.gauge(
        "storepulse_newest_event_timestamp_seconds",
        "Event time of the newest accepted event over all partitions (Unix seconds).",
    )
    age = out.gauge("storepulse_watermark_age_seconds", "Now minus the newest accepted event time.")
    if marks:
        newest.add_metric([], max(marks) / 1_000)
        age.add_metric([], snapshot.now_s - max(marks) / 1_000)
    out.gauge(
        "storepulse_exporter_redis_read_seconds",
        "Duration of the exporter's last Redis read (one snapshot, 9 pipelined round trips).",
    ).add_metric([], snapshot.read_seconds)


def families(snapshot: Snapshot, settings: Settings) -> list[Metric]:
    """Every metric family of one scrape, built fresh from a snapshot (pure)."""
    out = _Families()
    _counters(out, snapshot.totals, settings)
    _window_gauges(out, snapshot, settings)
    _health(out, snapshot)
    return out.items


class ExporterCollector(Collector):
    """client_python custom collector: a snapshot (cached at most 1 s) per scrape."""

    def __init__(self, snapshots: Callable[[], Snapshot], settings: Settings) -> None:
        self._snapshots = snapshots
        self._settings = settings

    def describe(self) -> list[Metric]:
        # Empty: registering must not read Redis; names are checked at scrape time instead.
        return []

    def collect(self) -> Iterable[Metric]:
        return families(self._snapshots(), self._settings)


def create(
    registry: CollectorRegistry, snapshots: Callable[[], Snapshot], settings: Settings
) -> ExporterCollector:
    """The exporter's metrics, registered in registry (tests pass their own)."""
    collector = ExporterCollector(snapshots, settings)
    registry.register(collector)
    return collector
