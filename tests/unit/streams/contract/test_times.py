"""The time grammar: window durations in whole units, and their refusals."""

from __future__ import annotations

import pytest

from streams.contract.times import whole_seconds


@pytest.mark.parametrize(
    ("text", "seconds"), [("900", 900), ("15m", 900), ("1h", 3_600), ("7d", 604_800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert whole_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5m", "15x", "m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        whole_seconds(text)
