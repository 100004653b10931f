"""Exporter metric families from a snapshot: names, labels, the min-sample rule, health."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from streams.exporter.metrics import create
from streams.exporter.snapshot import Snapshot, windows_for
from streams.settings import Settings
from streams.store.funnel import PartitionMeta
from tests.unit.streams.metas import NOW, meta


def funnel_fields(
    channel: str, device: str, counts: Mapping[str, int], orders: int = 0, revenue_units: int = 0
) -> dict[str, int]:
    fields = {f"s|{stage}|{channel}|{device}": n for stage, n in counts.items()}
    fields["sg|visit|DE"] = counts.get("visit", 0)
    if orders:
        fields[f"o|EUR|{channel}|{device}"] = orders
        fields[f"r|EUR|{channel}|{device}"] = revenue_units
    return fields


def snapshot(
    windows: Mapping[str, Mapping[str, int]],
    totals: Mapping[str, int] | None = None,
    metas: list[PartitionMeta] | None = None,
) -> Snapshot:
    return Snapshot(
        now_s=NOW,
        totals=totals or {},
        metas=metas if metas is not None else [meta(0, NOW - 5)],
        end_s=int(NOW) - 60,
        windows=windows,
    )


def registry_for(snap: Snapshot, settings: Settings | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    create(registry, lambda: snap, settings or Settings())
    return registry


def test_windows_shorter_than_a_bucket_are_not_exported() -> None:
    assert list(windows_for(Settings())) == ["5m", "15m", "1h"]
    assert list(windows_for(Settings(bucket_seconds=900))) == ["15m", "1h"]


# Families ----------------------------------------------------------------------------------


def test_ratios_below_the_minimum_sample_are_not_exported() -> None:
    small = {"visit": 19, "cart": 19, "shipping": 19, "payment": 10, "review": 8, "purchase": 5}
    registry = registry_for(snapshot({"15m": funnel_fields("organic", "mobile", small, 5, 1)}))
    overall = {"window": "15m", "channel": "all", "device": "all"}
    assert (
        registry.get_sample_value("storepulse_window_sessions", overall | {"stage": "visit"}) == 19
    )
    assert registry.get_sample_value("storepulse_conversion_ratio", overall) is None
    assert registry.get_sample_value("storepulse_cart_abandonment_ratio", overall) is None
    assert (
        registry.get_sample_value("storepulse_checkout_dropoff_ratio", overall | {"step": "cart"})
        is None
    )
    assert (
        registry.get_sample_value(
            "storepulse_average_order_value", {"window": "15m", "currency": "EUR"}
        )
        is None
    )


def test_ratios_at_the_minimum_sample_are_exported_at_every_level() -> None:
    counts = {"visit": 40, "cart": 20, "shipping": 16, "payment": 12, "review": 10, "purchase": 5}
    fields = funnel_fields("email", "tablet", counts, orders=20, revenue_units=20 * 415_000)
    registry = registry_for(snapshot({"1h": fields}))
    for channel, device in [("all", "all"), ("email", "all"), ("all", "tablet")]:
        labels = {"window": "1h", "channel": channel, "device": device}
        assert registry.get_sample_value("storepulse_conversion_ratio", labels) == 5 / 40
        assert registry.get_sample_value("storepulse_cart_abandonment_ratio", labels) == 1 - 5 / 20
        drop = "storepulse_checkout_dropoff_ratio"
        assert registry.get_sample_value(drop, labels | {"step": "cart"}) == 1 - 16 / 20
        # 12 sessions reached payment: below 20, so that step's drop-off is not exported.
        assert registry.get_sample_value(drop, labels | {"step": "payment"}) is None
    # Another channel was configured but saw nothing: its sessions are 0, its ratios absent.
    other = {"window": "1h", "channel": "organic", "device": "all"}
    assert registry.get_sample_value("storepulse_window_sessions", other | {"stage": "visit"}) == 0
    assert registry.get_sample_value("storepulse_conversion_ratio", other) is None
    aov = registry.get_sample_value(
        "storepulse_average_order_value", {"window": "1h", "currency": "EUR"}
    )
    assert aov == pytest.approx(41.5)


def test_min_sample_follows_the_setting() -> None:
    counts = {"visit": 5, "cart": 5, "purchase": 1}
    registry = registry_for(
        snapshot({"5m": funnel_fields("direct", "desktop", counts)}), Settings(min_sample=5)
    )
    labels = {"window": "5m", "channel": "all", "device": "all"}
    assert registry.get_sample_value("storepulse_conversion_ratio", labels) == 0.2


def test_counters_come_from_the_totals_with_configured_label_values_at_zero() -> None:
    totals = {
        "ev|visit": 120,
        "ev|purchase": 3,
        "dup": 7,
        "rej|late": 2,
        "f|visit|organic|mobile": 100,
        "f|purchase|other|unknown": 1,
        "o|organic|mobile": 3,
        "r|EUR": 1_234_567,
        "topic_resets": 1,
    }
    registry = registry_for(snapshot({}, totals=totals))
    value = registry.get_sample_value
    assert value("storepulse_events_total", {"type": "visit"}) == 120
    assert value("storepulse_events_total", {"type": "add_to_cart"}) == 0
    assert value("storepulse_events_duplicate_total") == 7
    assert value("storepulse_events_rejected_total", {"reason": "late"}) == 2
    assert value("storepulse_events_rejected_total", {"reason": "malformed"}) == 0
    funnel = "storepulse_funnel_sessions_total"
    assert value(funnel, {"stage": "visit", "channel": "organic", "device": "mobile"}) == 100
    assert value(funnel, {"stage": "review", "channel": "email", "device": "tablet"}) == 0
    assert value(funnel, {"stage": "purchase", "channel": "other", "device": "unknown"}) == 1
    assert value("storepulse_orders_total", {"channel": "organic", "device": "mobile"}) == 3
    assert value("storepulse_revenue_total", {"currency": "EUR"}) == pytest.approx(123.4567)
    assert value("storepulse_topic_resets_total") == 1
    text = generate_latest(registry).decode()
    # Only the cross product: the "all" levels are the rules' job for counters.
    assert 'storepulse_funnel_sessions_total{channel="all"' not in text
    assert "_created" not in text


def test_pipeline_health_from_the_partition_metas() -> None:
    metas = [
        meta(0, NOW - 30, offset=99, hw=150),
        meta(1, NOW - 4, offset=10, hw=11),
        meta(2, NOW - 10, offset=5, hw=-1),  # high-water mark unknown: no lag exported
        meta(3, None, applied_s=None, offset=-1, hw=-1),
    ]
    registry = registry_for(snapshot({}, metas=metas))
    value = registry.get_sample_value
    assert value("storepulse_consumer_lag", {"partition": "0"}) == 50
    assert value("storepulse_consumer_lag", {"partition": "1"}) == 0
    assert value("storepulse_consumer_lag", {"partition": "2"}) is None
    assert value("storepulse_newest_event_timestamp_seconds") == NOW - 4
    assert value("storepulse_watermark_age_seconds") == pytest.approx(4)
    assert value("storepulse_last_applied_timestamp_seconds", {"partition": "1"}) == NOW
    assert value("storepulse_window_end_timestamp_seconds") == NOW - 60


def test_nothing_counted_yet_exports_zeros_and_no_event_time() -> None:
    registry = registry_for(snapshot({"5m": {}}, metas=[]))
    assert registry.get_sample_value("storepulse_events_total", {"type": "visit"}) == 0
    assert registry.get_sample_value("storepulse_newest_event_timestamp_seconds") is None
    assert registry.get_sample_value("storepulse_watermark_age_seconds") is None
    labels = {"window": "5m", "stage": "purchase", "channel": "all", "device": "all"}
    assert registry.get_sample_value("storepulse_window_sessions", labels) == 0
