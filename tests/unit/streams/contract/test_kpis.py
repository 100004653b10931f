"""KPI math from bucket fields: groups, ratios, money formatting, null denominators."""

from __future__ import annotations

import pytest

from streams.contract.kpis import FunnelCounts, SessionCounts, kpi_record, session_record
from streams.query.kpis import render_table
from streams.store.keys import bucket_counts as group_counts

STAGES = ("visit", "cart", "shipping", "payment", "review", "purchase")
FIELDS = {
    "s|visit|organic|mobile": 60,
    "s|visit|email|desktop": 40,
    "s|cart|organic|mobile": 16,
    "s|cart|email|desktop": 16,
    "s|shipping|organic|mobile": 8,
    "s|shipping|email|desktop": 8,
    "s|payment|email|desktop": 8,
    "s|review|email|desktop": 8,
    "s|purchase|email|desktop": 8,
    "sg|visit|DE": 100,
    "sg|purchase|DE": 8,
    "o|EUR|email|desktop": 8,
    "og|EUR|DE": 8,
    "r|EUR|email|desktop": 3_290_400,  # 329.04 EUR
    "rg|EUR|DE": 3_290_400,
}


def test_overall_record() -> None:
    rec = kpi_record(group_counts(FIELDS)["all"], STAGES)
    assert rec["sessions"] == {
        "visit": 100,
        "cart": 32,
        "shipping": 16,
        "payment": 8,
        "review": 8,
        "purchase": 8,
    }
    assert rec["orders"] == 8
    assert rec["revenue"] == "329.04"
    assert rec["average_order_value"] == "41.13"
    assert rec["conversion_rate"] == 0.08
    assert rec["cart_abandonment_rate"] == 0.75
    assert rec["step_dropoff"] == {"cart": 0.5, "shipping": 0.5, "payment": 0.0, "review": 0.0}


def test_groups_by_channel_device_country() -> None:
    by_channel = group_counts(FIELDS, "channel")
    assert set(by_channel) == {"organic", "email"}
    organic = kpi_record(by_channel["organic"], STAGES)
    assert organic["conversion_rate"] == 0.0
    assert organic["step_dropoff"]["shipping"] == 1.0
    assert organic["step_dropoff"]["payment"] is None  # 0 sessions at payment
    assert organic["average_order_value"] is None
    assert organic["revenue"] == "0.00"
    by_device = group_counts(FIELDS, "device")
    assert by_device["desktop"].sessions["purchase"] == 8
    by_country = group_counts(FIELDS, "country")
    assert kpi_record(by_country["DE"], STAGES)["conversion_rate"] == 0.08


def test_empty_counts_give_nulls_not_errors() -> None:
    rec = kpi_record(FunnelCounts(), STAGES)
    assert rec["conversion_rate"] is None and rec["cart_abandonment_rate"] is None
    assert rec["orders"] == 0 and rec["revenue"] == "0.00"


def test_several_currencies_are_never_added_up() -> None:
    counts = FunnelCounts(
        orders={"EUR": 1, "USD": 2}, revenue_units={"EUR": 100_000, "USD": 30_000}
    )
    rec = kpi_record(counts, STAGES)
    assert rec["revenue"] is None and rec["average_order_value"] is None
    assert rec["revenue_by_currency"] == {"EUR": "10.00", "USD": "3.00"}
    assert rec["average_order_value_by_currency"] == {"EUR": "10.00", "USD": "1.50"}


@pytest.mark.parametrize(
    ("units", "orders", "aov"), [(1, 2, "0.00"), (150, 1, "0.02"), (250, 1, "0.02")]
)
def test_money_rounds_half_even_to_cents(units: int, orders: int, aov: str) -> None:
    rec = kpi_record(FunnelCounts(orders={"EUR": orders}, revenue_units={"EUR": units}), STAGES)
    assert rec["average_order_value"] == aov


def test_table_shows_every_stage_and_group() -> None:
    report = {
        "from": "a",
        "to": "b",
        "bucket_seconds": 60,
        "groups": {
            name: kpi_record(counts, STAGES) | session_record(SessionCounts(ended=4, bounces=1))
            for name, counts in group_counts(FIELDS, "channel").items()
        },
    }
    text = render_table(report, STAGES)
    assert "organic" in text and "email" in text
    assert "sessions review" in text
    assert "41.13" in text
    assert "25.00%" in text  # the bounce rate


def test_session_record_ratios_money_and_nulls() -> None:
    counts = SessionCounts(
        ended=8,
        bounces=2,
        session_ms=8 * 90_500,
        pages=20,
        abandoned=4,
        abandoned_units={"EUR": 1_000_050},  # 100.005 EUR: rounds half to even
        recovered=3,
        recovered_units={"EUR": 500_000, "USD": 0},  # a figure taken back leaves USD at 0
        recovered_of_abandoned=1,
    )
    rec = session_record(counts)
    assert (rec["bounce_rate"], rec["average_session_seconds"], rec["pages_per_session"]) == (
        0.25,
        90.5,
        2.5,
    )
    assert (rec["abandoned_value"], rec["recovered_revenue"]) == ("100.00", "50.00")
    assert rec["recovered_revenue_by_currency"] == {"EUR": "50.00"}
    assert rec["cart_recovery_rate"] == 0.25
    empty = session_record(SessionCounts())
    assert empty["bounce_rate"] is None and empty["average_session_seconds"] is None
    assert empty["pages_per_session"] is None and empty["cart_recovery_rate"] is None
    assert (empty["abandoned_value"], empty["abandoned_value_by_currency"]) == ("0.00", {})
    mixed = session_record(SessionCounts(abandoned=2, abandoned_units={"EUR": 1, "USD": 10_000}))
    assert mixed["abandoned_value"] is None
    assert mixed["abandoned_value_by_currency"] == {"EUR": "0.00", "USD": "1.00"}
