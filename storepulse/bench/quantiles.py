"""Nearest-rank quantiles, without Faust: the load driver imports them in a light process."""

from __future__ import annotations

from typing import Any

__all__ = ["quantile"]


def quantile(sorted_values: Any, q: float) -> float:
    """Nearest-rank quantile of an ascending sequence (no interpolation: a real sample)."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = min(n - 1, max(0, int(q * n + 0.999999999) - 1))
    return float(sorted_values[rank])
