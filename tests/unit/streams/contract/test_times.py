"""The time grammar: window durations in whole units, and their refusals."""

from __future__ import annotations

import re

import pytest

from streams.contract.times import parse_instant_ms, whole_seconds


@pytest.mark.parametrize(
    ("text", "seconds"), [("900", 900), ("15m", 900), ("1h", 3_600), ("7d", 604_800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert whole_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5m", "15x", "m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        whole_seconds(text)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2000-01-01T00:00:00Z", 946_684_800_000),
        ("946684800000", 946_684_800_000),
        ("2027-01-15T09:00:00+01:00", 1_800_000_000_000),
    ],
)
def test_instants(text: str, ms: int) -> None:
    assert parse_instant_ms(text) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "'0' is before 2000-01-01T00:00:00Z"),  # `to=0` answered for 1969 before
        ("1800000000", "is before 2000-01-01"),  # epoch seconds typed for milliseconds
        ("1999-12-31T23:59:59.999Z", "is before 2000-01-01"),
        ("9" * 10_000, "is not an instant (too long)"),  # never reaches int()'s digit limit
        ("١٢٣", "is not ISO 8601"),  # digits, but not ASCII ones
    ],
)
def test_bad_instants(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_instant_ms(text)
