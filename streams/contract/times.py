"""Time grammar of events, CLIs and the API: instants, durations and their printed forms."""

from __future__ import annotations

import functools
import math
import time
from datetime import UTC, datetime

__all__ = [
    "MAX_TS_MS",
    "MIN_INSTANT_MS",
    "format_ts",
    "iso",
    "parse_duration",
    "parse_instant_ms",
    "parse_ts",
    "whole_seconds",
]

# 9999-12-31T23:59:59.999Z: the largest instant ISO 8601 strings can spell.
MAX_TS_MS = 253_402_300_799_999
# 2000-01-01T00:00:00Z: the earliest instant a person or a URL may ask for. Events carry no
# older timestamps, and `to=0` or `--from 5` (epoch milliseconds typed for seconds, or nothing)
# would otherwise answer for 1969/1970 instead of saying what is wrong.
MIN_INSTANT_MS = 946_684_800_000
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
# Longer texts are refused before any conversion: a 10,000-digit number would otherwise reach
# int() and its digit limit (sys.set_int_max_str_digits) with Python's own error text.
_MAX_TEXT = 40
# A hundred years: longer than any window, retention or run anyone asks for.
_MAX_DURATION_S = 100 * 366 * 86_400


def parse_ts(value: object) -> int:
    """Epoch milliseconds from an ISO 8601 string with a zone, or integer epoch milliseconds."""
    if isinstance(value, bool):
        raise ValueError(
            "ts must be an ISO 8601 string or integer epoch milliseconds, not a boolean"
        )
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value[:64]!r} is not ISO 8601") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValueError(f"ts {value[:64]!r} has no time zone (add Z or an offset)")
        # Exact integer arithmetic: timedelta keeps microseconds, floor to milliseconds.
        delta = parsed - _EPOCH
        ms = (delta.days * 86_400 + delta.seconds) * 1_000 + delta.microseconds // 1_000
    else:
        raise ValueError("ts must be an ISO 8601 string or integer epoch milliseconds")
    if not 0 <= ms <= MAX_TS_MS:
        raise ValueError(f"ts {ms} ms is outside 1970-01-01..9999-12-31")
    return ms


def parse_instant_ms(text: str) -> int:
    """An instant typed by a person or a URL: ISO 8601 with a zone, or epoch milliseconds."""
    value = text.strip()
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{value[:_MAX_TEXT]!r}... is not an instant (too long)")
    if value.isascii() and value.isdigit():
        ms = parse_ts(int(value))
    else:
        try:
            ms = parse_ts(value)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; expected ISO 8601 with a zone or epoch milliseconds"
            ) from None
    if ms < MIN_INSTANT_MS:
        raise ValueError(
            f"{value!r} is before 2000-01-01T00:00:00Z; expected ISO 8601 with a zone or "
            "epoch milliseconds (e.g. 1800000000000)"
        )
    return ms


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds from '90', '90s', '1.5m', '2h' or '7d' (positive; zero too with allow_zero)."""
    value = text.strip().lower()
    shown = text.strip()[:_MAX_TEXT]
    if not value or len(value) > _MAX_TEXT:
        raise ValueError(f"{shown!r} is not a duration (e.g. 90, 90s, 15m, 2h, 7d)")
    factor = 1
    if value[-1] in _UNITS:
        factor = _UNITS[value[-1]]
        value = value[:-1]
    try:
        seconds = float(value) * factor
    except ValueError:
        raise ValueError(f"{shown!r} is not a duration (e.g. 90, 90s, 15m, 2h, 7d)") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        least = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{shown!r} is not a {least} duration")
    if seconds > _MAX_DURATION_S:
        raise ValueError(f"{shown!r} is longer than 100 years")
    return seconds


def whole_seconds(text: str) -> int:
    """A positive duration in whole units, '900', '15m', '1h', '7d' (windows and ranges)."""
    value = text.strip().lower()
    if not value.rstrip("".join(_UNITS)).isdigit():
        shown = text.strip()[:_MAX_TEXT]
        raise ValueError(f"expected a positive duration like 15m, 1h, 7d, got {shown!r}")
    return int(parse_duration(value))


@functools.lru_cache(maxsize=8_192)
def _second(epoch_s: int) -> str:
    # Cached: a generator formats ~10 events per second of event time, strftime costs ~2 us.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


def format_ts(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and Z: the form producers write and replay re-times to."""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


def iso(epoch_s: int) -> str:
    """ISO 8601 UTC to the second with Z: the form of every range bound in reports."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
