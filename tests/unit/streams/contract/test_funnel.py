"""Pure funnel rules: buckets, stage indices, lateness and future checks, money units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.contract.events import EventParser
from streams.contract.funnel import PartitionCursor, StageMap, bucket_of, fingerprint
from streams.contract.money import money_units

HOUR_MS, SKEW_MS = 3_600_000, 300_000


@pytest.mark.parametrize(
    ("ts_ms", "size", "bucket"),
    [
        (0, 60, 0),
        (59_999, 60, 0),
        (60_000, 60, 60),
        (1_795_341_659_999, 60, 1_795_341_600),
        (1_795_341_660_000, 60, 1_795_341_660),
        (1_795_341_600_000, 300, 1_795_341_600),
        (1_795_341_899_999, 300, 1_795_341_600),
    ],
)
def test_bucket_boundaries(ts_ms: int, size: int, bucket: int) -> None:
    assert bucket_of(ts_ms, size) == bucket


@given(st.integers(0, 253_402_300_799_999), st.sampled_from([1, 10, 60, 300, 3600]))
def test_bucket_contains_its_timestamp(ts_ms: int, size: int) -> None:
    b = bucket_of(ts_ms, size)
    assert b * 1000 <= ts_ms < (b + size) * 1000
    assert b % size == 0


def test_stage_indices_follow_configured_steps() -> None:
    parser = EventParser(["address", "pay"])
    stages = StageMap(["address", "pay"])
    base = b'"event_id":"e","session_id":"s","ts":0'
    assert stages.stages == ("visit", "cart", "address", "pay", "purchase")
    cases = {
        b'{"type":"visit",' + base + b"}": 0,
        b'{"type":"add_to_cart","sku":"x","quantity":1,"unit_price":1,"currency":"EUR",'
        + base
        + b"}": 1,
        b'{"type":"checkout_step","step":"pay",' + base + b"}": 3,
        b'{"type":"purchase","order_id":"o","revenue":1,"currency":"EUR",' + base + b"}": 4,
    }
    for raw, index in cases.items():
        assert stages.index(parser.parse(raw)) == index


def test_future_is_beyond_the_skew() -> None:
    cursor = PartitionCursor()
    now = 1_000_000_000_000
    assert cursor.admit(now + SKEW_MS, now, HOUR_MS, SKEW_MS) is None
    verdict = cursor.admit(now + SKEW_MS + 1, now, HOUR_MS, SKEW_MS)
    assert verdict is not None and verdict[0] == "future"
    assert cursor.watermark_ms == now + SKEW_MS  # a rejected event never moves it


def test_late_is_older_than_watermark_minus_lateness() -> None:
    cursor = PartitionCursor()
    now = 1_000_000_000_000
    assert cursor.admit(now, now, HOUR_MS, SKEW_MS) is None
    assert cursor.admit(now - HOUR_MS, now, HOUR_MS, SKEW_MS) is None  # exactly at the bound
    verdict = cursor.admit(now - HOUR_MS - 1, now, HOUR_MS, SKEW_MS)
    assert verdict is not None and verdict[0] == "late"
    assert "3600.001s behind" in verdict[1]
    assert cursor.watermark_ms == now


@given(st.lists(st.integers(0, 10 * HOUR_MS), min_size=1, max_size=50))
def test_watermark_is_the_max_accepted_ts(times: list[int]) -> None:
    cursor = PartitionCursor()
    now = 10 * HOUR_MS
    accepted = [t for t in times if cursor.admit(t, now, HOUR_MS, SKEW_MS) is None]
    assert cursor.watermark_ms == max(accepted)
    assert accepted[0] == times[0]


def test_money_units_are_exact() -> None:
    assert money_units(Decimal("41.13")) == 411_300
    assert money_units(Decimal("0.0001")) == 1
    assert money_units(Decimal("123456789012.9999")) == 1_234_567_890_129_999
    with pytest.raises(ValueError, match="4 decimals"):
        money_units(Decimal("0.00001"))


def test_fingerprint_tells_records_apart() -> None:
    assert fingerprint(b"k", b"v") == fingerprint(b"k", b"v")
    assert fingerprint(b"k", b"v") != fingerprint(b"k", b"w")
    assert fingerprint(b"kv", b"") != fingerprint(b"k", b"v")
    assert fingerprint(None, None) == fingerprint(b"", b"")
