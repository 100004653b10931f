"""The ended-session and cart families of one scrape: first-seen counters, duration, windows.

Counters count a session, cart or recovery once, when first seen (streams/store/sessions.lua),
and never move; the exact, moving figures are the buckets' (`storepulse kpis`), of which the
window gauges show the windows ending at the newest complete bucket. Bounded labels only.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from streams.contract.kpis import Dimension, SessionCounts, ratio
from streams.contract.money import MONEY_SCALE
from streams.settings import Settings
from streams.store import session_keys as sk
from streams.store.keys import SEP

__all__ = ["session_counters", "session_window_gauges"]

_LEVELS: tuple[Dimension | None, ...] = (None, "channel", "device")


def _by_segment(totals: Mapping[str, int], kind: str) -> dict[tuple[str, str], int]:
    prefix = kind + SEP
    out: dict[tuple[str, str], int] = {}
    for name, value in totals.items():
        if name.startswith(prefix):
            channel, _, device = name[len(prefix) :].partition(SEP)
            out[(channel, device)] = out.get((channel, device), 0) + value
    return out


def session_counters(totals: Mapping[str, int], settings: Settings) -> list[Metric]:
    """The session worker's first-seen counters and the duration histogram (from TOTALS)."""
    grid = [(c, d) for c in settings.channels for d in settings.devices]
    out: list[Metric] = []
    for name, kind, doc in (
        ("storepulse_sessions_ended", sk.TOTAL_ENDED, "Sessions that ended (the partition's "
         "watermark passed their last event + the session timeout), when first seen."),
        ("storepulse_sessions_bounced", sk.TOTAL_BOUNCED, "Ended sessions whose events were "
         "exactly one visit, when first seen so."),
        ("storepulse_carts_abandoned", sk.TOTAL_ABANDONED, "Ended sessions that reached the cart "
         "stage without a counted order, when first seen so."),
    ):  # fmt: skip
        family = CounterMetricFamily(name, doc, labels=["channel", "device"])
        seen = _by_segment(totals, kind)
        for segment in [*grid, *sorted(set(seen) - set(grid))]:
            family.add_metric(list(segment), seen.get(segment, 0))
        out.append(family)
    value = CounterMetricFamily(
        "storepulse_cart_value_abandoned",
        "Value of the abandoned carts when first seen abandoned, in the currency's units.",
        labels=["currency"],
    )
    prefix = sk.TOTAL_VALUE + SEP
    for name in sorted(totals):
        if name.startswith(prefix):
            value.add_metric([name[len(prefix) :]], totals[name] / MONEY_SCALE)
    out.append(value)
    counts = [
        totals.get(f"{sk.TOTAL_DURATION}{SEP}{i}", 0) for i in range(len(sk.DURATION_BUCKETS_S) + 1)
    ]
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip([*map(str, sk.DURATION_BUCKETS_S), "+Inf"], counts, strict=True):
        running += n
        buckets.append((bound, running))
    out.append(
        HistogramMetricFamily(
            "storepulse_session_duration_seconds",
            "Event-time duration (last ts - first ts) of ended sessions, when first seen: 0 = "
            "single-event sessions, then 10 s .. 2 h (docs/metrics.md, 'Session duration').",
            buckets=buckets,
            sum_value=totals.get(sk.TOTAL_DURATION_SUM, 0) / 1_000,
        )
    )
    return out


def _segment(by: Dimension | None, value: str) -> tuple[str, str]:
    if by == "channel":
        return value, "all"
    if by == "device":
        return "all", value
    return "all", "all"


def session_window_gauges(
    windows: Mapping[str, Mapping[str, int]], settings: Settings
) -> list[Metric]:
    """Ended sessions, bounce rate, abandoned carts and value at risk of each window."""
    n = settings.min_sample
    ended = GaugeMetricFamily(
        "storepulse_window_sessions_ended",
        "Sessions whose end is in the window (exact: a late event moves a session).",
        labels=["window", "channel", "device"],
    )
    bounce = GaugeMetricFamily(
        "storepulse_bounce_ratio",
        f"Bounces / ended sessions in the window (not exported below {n} ended sessions).",
        labels=["window", "channel", "device"],
    )
    carts = GaugeMetricFamily(
        "storepulse_window_carts_abandoned",
        "Abandoned carts whose session ended in the window.",
        labels=["window", "channel", "device"],
    )
    value = GaugeMetricFamily(
        "storepulse_window_cart_value_abandoned",
        "Value at risk: the abandoned carts of the window, in the currency's units.",
        labels=["window", "currency"],
    )
    known: dict[Dimension | None, tuple[str, ...]] = {
        None: ("all",),
        "channel": settings.channels,
        "device": settings.devices,
    }
    for window, fields in windows.items():
        for by in _LEVELS:
            groups = sk.session_counts(fields, by)
            for name in [*known[by], *sorted(set(groups) - set(known[by]))]:
                counts = groups.get(name, SessionCounts())
                labels = [window, *_segment(by, name)]
                ended.add_metric(labels, counts.ended)
                carts.add_metric(labels, counts.abandoned)
                rate = ratio(counts.bounces, counts.ended, n)
                if rate is not None:
                    bounce.add_metric(labels, rate)
                if by is None:
                    for currency in sorted(counts.abandoned_units):
                        units = counts.abandoned_units[currency]
                        value.add_metric([window, currency], units / MONEY_SCALE)
    return [ended, bounce, carts, value]
