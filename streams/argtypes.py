"""argparse types for numbers in a range, shared by every subcommand's options."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["count", "positive", "share"]


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
