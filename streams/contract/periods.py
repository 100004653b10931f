"""Calendar periods in UTC (hour, day, ISO week from Monday, month): their starts and neighbours."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal, get_args

__all__ = [
    "COHORT_PERIODS",
    "PERIODS",
    "PERIOD_CODES",
    "Period",
    "next_start",
    "period_end",
    "period_start",
    "period_starts",
    "previous_start",
    "starts_in",
]

Period = Literal["hour", "day", "week", "month"]
PERIODS: tuple[Period, ...] = get_args(Period)
# Cohorts are grouped by day, week or month (an hour is too short to retain anyone in).
COHORT_PERIODS: tuple[Period, ...] = ("day", "week", "month")
# One letter per period in Redis key names (streams/store/customer_keys.py).
PERIOD_CODES: dict[Period, str] = {"hour": "h", "day": "d", "week": "w", "month": "m"}

_HOUR = 3_600
_DAY = 86_400
# 1970-01-01 was a Thursday: the Monday on or before epoch day n is n - (n + 3) % 7.
_THURSDAY_OFFSET = 3


def period_start(period: Period, epoch_s: int) -> int:
    """Start (epoch seconds, UTC) of the period holding epoch_s; floor, also before 1970."""
    if period == "hour":
        return epoch_s // _HOUR * _HOUR
    day = epoch_s // _DAY
    if period == "day":
        return day * _DAY
    if period == "week":
        return (day - (day + _THURSDAY_OFFSET) % 7) * _DAY
    moment = datetime.fromtimestamp(day * _DAY, UTC)
    return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))


def next_start(period: Period, start: int) -> int:
    """Start of the period after the one starting at start (start must be a period start)."""
    if period == "hour":
        return start + _HOUR
    if period == "day":
        return start + _DAY
    if period == "week":
        return start + 7 * _DAY
    moment = datetime.fromtimestamp(start, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def previous_start(period: Period, start: int) -> int:
    """Start of the period before the one starting at start (P-1 of the reports)."""
    return period_start(period, start - 1)


def period_end(period: Period, start: int) -> int:
    """End (exclusive) of the period starting at start."""
    return next_start(period, start)


def starts_in(period: Period, from_s: int, to_s: int) -> Iterator[int]:
    """Starts of the periods whose start is in [from_s, to_s), ascending."""
    start = period_start(period, from_s)
    if start < from_s:
        start = next_start(period, start)
    while start < to_s:
        yield start
        start = next_start(period, start)


def period_starts(epoch_s: int) -> tuple[int, int, int, int]:
    """Starts of the hour, day, week and month holding epoch_s (the order of PERIODS)."""
    return (
        period_start("hour", epoch_s),
        period_start("day", epoch_s),
        period_start("week", epoch_s),
        period_start("month", epoch_s),
    )
