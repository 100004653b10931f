"""Metric families of one scrape, built fresh from a Snapshot, and the collector serving them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.contract.events import EventType, RejectReason
from streams.contract.kpis import Dimension, FunnelCounts, funnel_ratios
from streams.contract.money import MONEY_SCALE
from streams.exporter.session_metrics import session_counters, session_window_gauges
from streams.exporter.snapshot import Snapshot
from streams.settings import Settings
from streams.store.keys import bucket_counts, parse_totals

__all__ = [
    "OVERLOAD_REASONS",
    "WEBHOOK_REFUSALS",
    "ExporterCollector",
    "ExporterStats",
    "create",
    "families",
    "stats_families",
]

K = TypeVar("K", str, tuple[str, str], tuple[str, str, str])
_EVENT_TYPES: tuple[str, ...] = get_args(EventType)
_REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)


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


def _known_then_seen(known: Iterable[K], seen: Iterable[K]) -> list[K]:
    """Configured label values first (exported at 0 so rate() sees the first increment)."""
    out = list(dict.fromkeys(known))
    out += sorted(set(seen) - set(out))
    return out


def _counters(out: _Families, fields: Mapping[str, int], settings: Settings) -> None:
    totals = parse_totals(fields)
    events = out.counter(
        "storepulse_events", "Distinct accepted events (by event_id), by type.", ["type"]
    )
    for t in _known_then_seen(_EVENT_TYPES, totals.events):
        events.add_metric([t], totals.events.get(t, 0))
    out.counter(
        "storepulse_events_duplicate", "Events whose event_id was seen before; ignored."
    ).add_metric([], totals.duplicates)
    rejected = out.counter(
        "storepulse_events_rejected",
        "Rejected events by reason; each also went to the dead-letter topic.",
        ["reason"],
    )
    for reason in _known_then_seen(_REJECT_REASONS, totals.rejected):
        rejected.add_metric([reason], totals.rejected.get(reason, 0))

    # The channel x device cross product; the rules derive the "all" levels from it.
    grid = [(c, d) for c in settings.channels for d in settings.devices]
    sessions = out.counter(
        "storepulse_funnel_sessions",
        "Sessions that reached the funnel stage (closed funnel), by the session's segment.",
        ["stage", "channel", "device"],
    )
    known_f = [(s, c, d) for s in settings.stages for c, d in grid]
    for key in _known_then_seen(known_f, totals.funnel):
        sessions.add_metric(list(key), totals.funnel.get(key, 0))
    orders = out.counter(
        "storepulse_orders", "Distinct order_ids, by the session's segment.", ["channel", "device"]
    )
    for segment in _known_then_seen(grid, totals.orders):
        orders.add_metric(list(segment), totals.orders.get(segment, 0))
    revenue = out.counter(
        "storepulse_revenue", "Revenue of the counted orders in currency units.", ["currency"]
    )
    for currency, units in sorted(totals.revenue_units.items()):
        revenue.add_metric([currency], units / MONEY_SCALE)
    out.counter(
        "storepulse_dlq_lost",
        "Rejected events whose dead letter Kafka refused for good (logged by the worker with "
        "partition and offset); the rejection itself is in storepulse_events_rejected_total.",
    ).add_metric([], totals.dlq_lost)
    out.counter(
        "storepulse_topic_resets",
        "Partitions found recreated (Redis offsets the broker no longer has); counters kept.",
    ).add_metric([], totals.topic_resets)


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
    window_orders = out.gauge(
        "storepulse_window_orders",
        "Distinct order_ids in the window (overall; the board's orders per minute).",
        ["window"],
    )
    window_revenue = out.gauge(
        "storepulse_window_revenue",
        "Revenue of the window's orders in currency units, by currency (overall).",
        ["window", "currency"],
    )
    known: dict[Dimension | None, tuple[str, ...]] = {
        None: ("all",),
        "channel": settings.channels,
        "device": settings.devices,
    }
    for window, fields in snapshot.windows.items():
        for by in _LEVELS:
            groups = bucket_counts(fields, by)
            for value in _known_then_seen(known[by], groups):
                counts = groups.get(value, FunnelCounts())
                channel, device = _segment(by, value)
                for stage in stages:
                    got = counts.sessions.get(stage, 0)
                    sessions.add_metric([window, stage, channel, device], got)
                ratios = funnel_ratios(counts.sessions, stages, n)
                if ratios.conversion is not None:
                    conversion.add_metric([window, channel, device], ratios.conversion)
                if ratios.abandonment is not None:
                    abandonment.add_metric([window, channel, device], ratios.abandonment)
                for step, drop in ratios.dropoff.items():
                    if drop is not None:
                        dropoff.add_metric([window, step, channel, device], drop)
                if by is None:
                    window_orders.add_metric([window], sum(counts.orders.values()))
                    for currency in sorted(counts.revenue_units):
                        units = counts.revenue_units[currency]
                        window_revenue.add_metric([window, currency], units / MONEY_SCALE)
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


# Why POST /api/alerts was refused: no token configured, no or a wrong bearer token, not
# application/json, not a webhook payload, over 1 MiB, a body that did not arrive in time.
WEBHOOK_REFUSALS = ("disabled", "unauthorized", "content_type", "malformed", "too_large", "timeout")
# Load the server shed: a request answered 503 (too many in flight), a connection closed at
# the connection limit (the oldest idle one, or the new one when none is idle).
OVERLOAD_REASONS = ("in_flight", "connections")


@dataclass
class ExporterStats:
    """This exporter process's own counters (not Redis'): refused webhooks and shed load."""

    webhook_refused: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(WEBHOOK_REFUSALS, 0)
    )
    shed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OVERLOAD_REASONS, 0))


def stats_families(stats: ExporterStats, alerts_dropped: int) -> list[Metric]:
    """The exporter process's own counters, every reason at 0 before it first counts."""
    out = _Families()
    refused = out.counter(
        "storepulse_exporter_webhook_refused",
        "POST /api/alerts refused by this exporter, by reason.",
        ["reason"],
    )
    for reason in WEBHOOK_REFUSALS:
        refused.add_metric([reason], stats.webhook_refused.get(reason, 0))
    out.counter(
        "storepulse_exporter_alerts_dropped",
        "Firing alerts the webhook book did not keep (over its limit; fair per alert name).",
    ).add_metric([], alerts_dropped)
    shed = out.counter(
        "storepulse_exporter_requests_shed",
        "Load this exporter shed: requests answered 503, connections closed at the limit.",
        ["reason"],
    )
    for reason in OVERLOAD_REASONS:
        shed.add_metric([reason], stats.shed.get(reason, 0))
    return out.items


def families(snapshot: Snapshot, settings: Settings) -> list[Metric]:
    """Every metric family of one scrape, built fresh from a snapshot (pure)."""
    out = _Families()
    _counters(out, snapshot.totals, settings)
    out.items += session_counters(snapshot.totals, settings)
    _window_gauges(out, snapshot, settings)
    out.items += session_window_gauges(snapshot.windows, settings)
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
