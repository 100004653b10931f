"""Calendar periods: starts, neighbours and ranges, against datetime's own calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.contract.periods import (
    PERIODS,
    next_start,
    period_start,
    period_starts,
    previous_start,
    starts_in,
)

# 1900..2200: before the epoch too (floor, not truncation).
INSTANTS = st.integers(-2_208_988_800, 7_258_118_400)


def _calendar_start(period: str, epoch_s: int) -> int:
    moment = datetime.fromtimestamp(epoch_s, UTC)
    if period == "hour":
        start = moment.replace(minute=0, second=0, microsecond=0)
    elif period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "week":
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.isoweekday() - 1)  # ISO week: Monday first
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp())


@given(INSTANTS, st.sampled_from(PERIODS))
def test_a_period_holds_its_instant_and_ends_where_the_next_starts(ts: int, period) -> None:
    start = period_start(period, ts)
    assert start == _calendar_start(period, ts)
    assert start <= ts < next_start(period, start)
    assert period_start(period, next_start(period, start)) == next_start(period, start)
    assert next_start(period, previous_start(period, start)) == start


def test_known_periods() -> None:
    ts = int(datetime(2026, 3, 1, 13, 45, tzinfo=UTC).timestamp())  # a Sunday
    hour, day, week, month = period_starts(ts)
    assert datetime.fromtimestamp(hour, UTC) == datetime(2026, 3, 1, 13, tzinfo=UTC)
    assert datetime.fromtimestamp(day, UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(week, UTC) == datetime(2026, 2, 23, tzinfo=UTC)  # Monday
    assert datetime.fromtimestamp(month, UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    dec = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    assert next_start("month", dec) == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert previous_start("month", month) == int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())


def test_the_periods_whose_start_is_in_a_range() -> None:
    day = 86_400
    assert list(starts_in("day", 10 * day, 13 * day)) == [10 * day, 11 * day, 12 * day]
    # An unaligned from: the first period starting at or after it.
    assert list(starts_in("day", 10 * day + 1, 13 * day)) == [11 * day, 12 * day]
    assert list(starts_in("day", 10 * day, 10 * day)) == []
