"""argparse types shared by every subcommand: numbers in a range, durations and instants."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from streams.contract.times import parse_duration, parse_instant_ms, whole_seconds

__all__ = [
    "count",
    "duration_s",
    "instant_ms",
    "instant_s",
    "positive",
    "positive_seconds",
    "seconds",
    "share",
]

T = TypeVar("T")


def _number(
    convert: Callable[[str], float], what: str, ok: Callable[[float], bool], bound: str
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = convert(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text}")
        return value

    return parse


def share(high: float = 1.0) -> Callable[[str], float]:
    """A share between 0 and high (inclusive)."""
    return _number(float, "a share", lambda v: 0 <= v <= high, f"between 0 and {high:g}")


positive = _number(float, "a number", lambda v: v > 0, "above 0")
_count = _number(int, "a whole number", lambda v: v >= 1, "of at least 1")


def count(text: str) -> int:
    """A whole number of at least 1 (underscores and commas allowed: 150_000, 150,000)."""
    return int(_count(text))


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser of streams.contract.times (ValueError -> usage error)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _seconds(text: str) -> float:
    return parse_duration(text, allow_zero=True)


def _instant_s(text: str) -> int:
    return parse_instant_ms(text) // 1_000


seconds = _argument(_seconds)  # 90, 1.5m, 2h: a non-negative number of seconds
positive_seconds = _argument(parse_duration)  # 90, 1.5m, 12h, 7d: positive seconds
duration_s = _argument(whole_seconds)  # 900, 15m, 1h, 7d: whole seconds, positive
instant_ms = _argument(parse_instant_ms)  # ISO 8601 with a zone, or epoch milliseconds
instant_s = _argument(_instant_s)  # the same, floored to epoch seconds
