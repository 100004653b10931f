"""The account gauges of a scrape: accounts by tier (and, if asked, by sales rep) over 30 days.

Bounded labels only: `tier` (the directory's largest MAX_TIERS tiers by name, the others as
"other", and "unassigned"), `currency`, and `sales_rep` only with STOREPULSE_EXPORT_REP_LABELS
and at most MAX_REPS reps in the directory. Never an account, user or order id. The figures are
those of `storepulse accounts reps` over the same 30 days (streams/query/accounts.py); they are
read at most every REFRESH_SECONDS (a read costs about a reps report), not with every scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from streams.contract.accounts import UNASSIGNED, DirectoryRow
from streams.contract.money import MONEY_SCALE
from streams.query.accounts import Accounts, TierFigures, days_ending
from streams.settings import Settings
from streams.store.directory import FeedTotals

__all__ = [
    "MAX_REPS",
    "MAX_TIERS",
    "REFRESH_SECONDS",
    "WINDOW_DAYS",
    "AccountReader",
    "AccountSnapshot",
    "account_families",
]

WINDOW_DAYS = 30
MAX_TIERS = 20
MAX_REPS = 200
REFRESH_SECONDS = 15.0
OTHER = "other"
NO_REP = "none"


@dataclass(frozen=True)
class AccountSnapshot:
    end_s: int = 0
    tiers: Mapping[str, TierFigures] = field(default_factory=dict)
    reps: Mapping[str, TierFigures] | None = None  # None: not exported
    feed: FeedTotals = field(default_factory=FeedTotals)


def _tier_labels(rows: Mapping[str, DirectoryRow]) -> Callable[[DirectoryRow], str]:
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row.tier] = counts.get(row.tier, 0) + 1
    kept = set(sorted(counts, key=lambda t: (-counts[t], t))[:MAX_TIERS]) | {UNASSIGNED}
    return lambda row: row.tier if row.tier in kept else OTHER


class AccountReader:
    """Reads an AccountSnapshot when the last one is older than REFRESH_SECONDS."""

    def __init__(self, accounts: Accounts, settings: Settings) -> None:
        self.accounts = accounts
        self.directory = accounts.directory
        self.settings = settings
        self._last = AccountSnapshot()
        self._read_at = -REFRESH_SECONDS

    async def read(self, window_end_s: int) -> AccountSnapshot:
        """The snapshot of the 30 days ending with the hour of the scrape's window end."""
        now = time.monotonic()
        if now - self._read_at < REFRESH_SECONDS:
            return self._last
        from_s, to_s = days_ending(window_end_s, WINDOW_DAYS)
        directory = await self.directory.read()
        label = _tier_labels(directory.rows)
        tiers = await self.accounts.tiers(from_s, to_s, label)
        reps = None
        if self.settings.export_rep_labels and len(directory.reps) <= MAX_REPS:
            found = await self.accounts.tiers(from_s, to_s, lambda r: r.sales_rep or NO_REP)
            reps = {str(k): v for k, v in found.items()}
        self._last = AccountSnapshot(
            to_s,
            {str(k): v for k, v in tiers.items()},
            reps,
            await self.directory.feed_totals(),
        )
        self._read_at = now
        return self._last


def _gauges(
    prefix: str, label: str, groups: Mapping[str, TierFigures], settings: Settings
) -> list[Metric]:
    window = f"in the last {WINDOW_DAYS} days of whole hours"
    known = GaugeMetricFamily(
        f"{prefix}accounts",
        f"Accounts by {label}: the directory's rows and the accounts seen in events but not "
        "in it (tier unassigned).",
        labels=[label],
    )
    active = GaugeMetricFamily(
        f"{prefix}accounts_active", f"Accounts with an accepted event {window}.", labels=[label]
    )
    ordering = GaugeMetricFamily(
        f"{prefix}accounts_ordering", f"Accounts with a counted order {window}.", labels=[label]
    )
    risky = GaugeMetricFamily(
        f"{prefix}accounts_at_risk",
        "Accounts at risk at the window's end: 3 tracked orders at least and quiet for longer "
        "than STOREPULSE_AT_RISK_FACTOR times the median gap between their orders.",
        labels=[label],
    )
    usage = GaugeMetricFamily(
        f"{prefix}account_usage_ratio",
        f"Ordering users / active users of the accounts {window} (users of each account "
        f"counted apart; not exported below {settings.min_sample} active users).",
        labels=[label],
    )
    revenue = GaugeMetricFamily(
        f"{prefix}account_revenue",
        f"Revenue of the accounts' orders {window}, in the currency's units.",
        labels=[label, "currency"],
    )
    for name in sorted(groups):
        f = groups[name]
        known.add_metric([name], f.accounts)
        active.add_metric([name], f.active)
        ordering.add_metric([name], f.ordering)
        risky.add_metric([name], f.at_risk)
        if f.users >= settings.min_sample:
            usage.add_metric([name], f.ordering_users / f.users)
        for currency, units in sorted(f.revenue.items()):
            revenue.add_metric([name, currency], units / MONEY_SCALE)
    return [known, active, ordering, risky, usage, revenue]


def account_families(snapshot: AccountSnapshot, settings: Settings) -> list[Metric]:
    """Every account family of one scrape (pure)."""
    tiers = dict(snapshot.tiers)
    tiers.setdefault(UNASSIGNED, TierFigures())
    out = _gauges("storepulse_", "tier", tiers, settings)
    if snapshot.reps is not None:
        reps = dict(snapshot.reps)
        reps.setdefault(NO_REP, TierFigures())
        out += _gauges("storepulse_rep_", "sales_rep", reps, settings)
    end = GaugeMetricFamily(
        "storepulse_accounts_window_end_timestamp_seconds",
        f"End of the {WINDOW_DAYS} days of the account gauges (the current hour's end).",
    )
    end.add_metric([], snapshot.end_s)
    applied = CounterMetricFamily(
        "storepulse_account_directory_records",
        "Directory upserts applied from the accounts topic (STOREPULSE_ACCOUNTS_TOPIC).",
    )
    applied.add_metric([], snapshot.feed.applied)
    rejected = CounterMetricFamily(
        "storepulse_account_directory_rejected",
        "Messages of the accounts topic that were not directory records, by reason "
        "(dead-lettered).",
        labels=["reason"],
    )
    for reason in sorted({"malformed", "schema", *snapshot.feed.rejected}):
        rejected.add_metric([reason], snapshot.feed.rejected.get(reason, 0))
    return [*out, end, applied, rejected]
