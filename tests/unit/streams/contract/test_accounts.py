"""The pure account rules: whole hours, the at-risk test at its edges, money, sorting, reps."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.contract.accounts import (
    RepTally,
    at_risk,
    hour_range,
    main_currency,
    median_gap2,
    money_fields,
    rep_row,
    risk_factor_scaled,
    risk_start_ms,
    sort_reps,
    sort_rows,
)
from streams.contract.times import MAX_TS_MS

H = 3_600_000
TWO = risk_factor_scaled(Decimal(2))


def test_the_range_is_the_hours_whose_start_is_in_it() -> None:
    assert hour_range(7_200, 14_400) == (7_200, 14_400)
    assert hour_range(7_201, 14_400) == (10_800, 14_400)  # 02:00 starts before from
    assert hour_range(7_200, 10_801) == (7_200, 14_400)  # 03:00 starts before to
    assert hour_range(7_201, 7_300) == (10_800, 10_800)  # no hour at all


def test_exactly_three_orders_use_the_mean_of_their_two_gaps() -> None:
    orders = [0, 2 * H, 3 * H]  # gaps 2 h and 1 h: median 1.5 h, twice it 3 h
    assert median_gap2(orders) == 3 * H
    threshold = 3 * H + 2 * 3 * H // 2  # last + 2 x 1.5 h
    assert not at_risk(orders, threshold, TWO)  # equal is not more: not at risk
    assert at_risk(orders, threshold + 1, TWO)
    assert risk_start_ms(3 * H, 3 * H, TWO) == threshold + 1


def test_two_orders_are_never_at_risk_and_four_use_the_middle_gap() -> None:
    assert not at_risk([0, H], 10**12, TWO)
    assert median_gap2([0, H, 3 * H, 4 * H]) == 2 * H  # gaps 1, 2, 1 h: median 1 h
    assert at_risk([0, H, 3 * H, 4 * H], 6 * H + 1, TWO)
    assert not at_risk([0, H, 3 * H, 4 * H], 6 * H, TWO)


def test_only_orders_before_the_instant_count() -> None:
    # The caller passes the orders before `to`; a later one is not there to save it.
    orders = [0, H, 2 * H]
    assert at_risk(orders, 4 * H + 1, TWO)
    assert not at_risk([*orders, 4 * H], 4 * H + 1, TWO)


def test_fractional_factors_and_half_millisecond_medians_stay_exact() -> None:
    f = risk_factor_scaled(Decimal("1.5"))
    assert f == 150
    orders = [0, 1, 2, 4]  # gaps 1, 1, 2 ms: median 1 ms
    assert not at_risk(orders, 4 + 1, f)  # 1 ms > 1.5 ms? no
    assert at_risk(orders, 4 + 2, f)  # 2 ms > 1.5 ms
    orders = [0, 1, 3]  # gaps 1 and 2: median 1.5 ms, x 1.5 = 2.25 ms
    assert not at_risk(orders, 3 + 2, f)
    assert at_risk(orders, 3 + 3, f)
    with pytest.raises(ValueError, match="2 decimals"):
        risk_factor_scaled(Decimal("1.505"))


def test_ties_of_time_have_a_gap_of_zero() -> None:
    orders = [5 * H, 5 * H, 5 * H]  # median 0: at risk as soon as any time passes
    assert not at_risk(orders, 5 * H, TWO)
    assert at_risk(orders, 5 * H + 1, TWO)


def test_a_risk_after_9999_is_never() -> None:
    assert risk_start_ms(MAX_TS_MS - 10, 100, TWO) is None
    assert risk_start_ms(0, MAX_TS_MS, 10_000) is None


@given(st.lists(st.integers(0, 10**13), min_size=3, max_size=12), st.integers(1, 10_000))
def test_risk_start_is_the_first_instant_at_risk(ts: list[int], factor: int) -> None:
    ts = sorted(ts)
    m2 = median_gap2(ts)
    assert m2 is not None
    start = risk_start_ms(ts[-1], m2, factor)
    if start is not None:
        assert at_risk(ts, start, factor) and not at_risk(ts, start - 1, factor)


def test_money_with_one_currency_and_with_several() -> None:
    one = money_fields({"EUR": 12_345}, {"EUR": 2})
    assert one["revenue"] == "1.23" and one["average_order_value"] == "0.62"  # 0.61725: up
    none = money_fields({}, {})
    assert none["revenue"] == "0.00" and none["average_order_value"] is None
    two = money_fields({"EUR": 10_000, "USD": 250}, {"EUR": 1, "USD": 1})
    assert two["revenue"] is None and two["revenue_by_currency"] == {"EUR": "1.00", "USD": "0.02"}
    assert main_currency({"EUR": 10_000, "USD": 250}) == "EUR"
    assert main_currency({"USD": 5, "EUR": 5}) == "EUR"  # ties: by code
    assert main_currency({}) is None


def test_rows_sort_descending_with_nulls_last_and_ties_by_account() -> None:
    rows = [
        {"account_id": "b", "last_order_at": "2026-01-02T00:00:00.000Z"},
        {"account_id": "c", "last_order_at": None},
        {"account_id": "a", "last_order_at": "2026-01-02T00:00:00.000Z"},
        {"account_id": "d", "last_order_at": "2026-01-03T00:00:00.000Z"},
        {"account_id": "0", "last_order_at": None},
    ]
    got = [r["account_id"] for r in sort_rows(rows, "last_order_at", None)]
    assert got == ["d", "a", "b", "0", "c"]


def test_reps_sort_by_revenue_with_ties_by_name_and_growth() -> None:
    a = RepTally("ann", revenue={"EUR": 100}, revenue_before={"EUR": 50})
    b = RepTally("bob", revenue={"EUR": 100})
    c = RepTally("cid", revenue={"EUR": 300}, revenue_before={"EUR": 300})
    assert [t.sales_rep for t in sort_reps([b, c, a], "EUR")] == ["cid", "ann", "bob"]
    assert rep_row(a)["revenue_growth"] == 1.0
    assert rep_row(b)["revenue_growth"] is None  # nothing before
    assert rep_row(c)["revenue_growth"] == 0.0
