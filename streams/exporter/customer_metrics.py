"""The customer metric families of one scrape: the customer stage's totals, current periods, lag.

Bounded labels only (channel, device, currency, kind, period, reason, partition): never a
customer, user, account or order id. Read in a fixed number of round trips per scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.contract.events import RejectReason
from streams.contract.facts import FACT_KINDS
from streams.contract.money import MONEY_SCALE
from streams.contract.periods import PERIODS, Period, next_start, period_start, previous_start
from streams.settings import Settings
from streams.store import customer_keys as ck
from streams.store.customers import CustomerStore, PeriodSums
from streams.store.funnel import PartitionMeta
from streams.store.keys import FIELD_ANON_ORDERS, SEP
from streams.store.session_keys import TOTAL_RECOVERED

__all__ = ["CustomerCollector", "CustomerReader", "CustomerSnapshot", "customer_families"]

_DAY = 86_400
# A fact is only ever one of these when refused (streams/contract/facts.py).
_FACT_REASONS: tuple[RejectReason, ...] = ("malformed", "schema", "key")


@dataclass(frozen=True)
class CurrentPeriod:
    """The period holding the newest complete bucket, and the one before it."""

    start: int
    now: PeriodSums
    before: PeriodSums
    anonymous: int


@dataclass(frozen=True)
class CustomerSnapshot:
    totals: Mapping[str, int] = field(default_factory=dict)  # the customer stage's TOTALS
    metas: Sequence[PartitionMeta] = ()
    periods: Mapping[Period, CurrentPeriod] = field(default_factory=dict)


class CustomerReader:
    """Reads a CustomerSnapshot for a funnel snapshot: 3 round trips (partitions, totals and
    metas and anonymous orders, then the two periods of each granularity). Commands: 1 +
    customer partitions x (1 + 3 + 32) + funnel partitions x the days of the current week and
    month so far (37 at most)."""

    def __init__(self, customers: CustomerStore) -> None:
        self.customers = customers

    async def read(self, end_s: int, funnel_partitions: Sequence[int]) -> CustomerSnapshot:
        cparts = await self.customers.partitions()
        starts = {p: period_start(p, end_s - 1) for p in PERIODS}
        # The days of the current week and month so far (a week can start in the month before).
        first = min(starts["week"], starts["month"])
        days = list(range(first, starts["day"] + _DAY, _DAY))
        totals, metas, hours = await asyncio.gather(
            self.customers.totals(cparts),
            self.customers.metas(cparts),
            self.customers.anonymous_orders(funnel_partitions, days),
        )
        sums = await asyncio.gather(
            *(
                self.customers.period_sums(cparts, p, [previous_start(p, s), s])
                for p, s in starts.items()
            )
        )
        periods: dict[Period, CurrentPeriod] = {}
        for (period, start), got in zip(starts.items(), sums, strict=True):
            stop = next_start(period, start)
            anonymous = sum(n for hour, n in hours.items() if start <= hour < stop)
            periods[period] = CurrentPeriod(
                start, got[start], got[previous_start(period, start)], anonymous
            )
        return CustomerSnapshot(totals, metas, periods)


def _fields(totals: Mapping[str, int], kind: str) -> dict[str, int]:
    prefix = kind + SEP
    return {k[len(prefix) :]: v for k, v in totals.items() if k.startswith(prefix)}


def customer_families(
    snapshot: CustomerSnapshot, funnel_totals: Mapping[str, int], settings: Settings
) -> list[Metric]:
    """Every customer family of one scrape (pure)."""
    totals = snapshot.totals
    out: list[Metric] = []
    new = CounterMetricFamily(
        "storepulse_customers_new",
        "Customers counted new (first order seen, no imported history), by the acquisition "
        "segment; counted once, never moved (the exact, moving figures are per period).",
        labels=["channel", "device"],
    )
    seen = {tuple(k.split(SEP)): v for k, v in _fields(totals, ck.TOTAL_NEW).items()}
    grid = [(c, d) for c in settings.channels for d in settings.devices]
    for segment in [*grid, *sorted(set(seen) - set(grid))]:
        new.add_metric(list(segment), seen.get(segment, 0))
    orders = CounterMetricFamily(
        "storepulse_customer_orders",
        "Counted orders by kind: new (the customer's first), returning (a customer's later "
        "one, as first seen), anonymous (no customer; counted by the session worker).",
        labels=["kind"],
    )
    by_kind = _fields(totals, ck.TOTAL_ORDERS)
    for kind in (ck.ORDER_NEW, ck.ORDER_RETURNING):
        orders.add_metric([kind], by_kind.get(kind, 0))
    orders.add_metric(["anonymous"], funnel_totals.get(FIELD_ANON_ORDERS, 0))
    revenue = CounterMetricFamily(
        "storepulse_customer_revenue",
        "Revenue of the orders with a customer, in the currency's units.",
        labels=["currency"],
    )
    for currency, units in sorted(_fields(totals, ck.TOTAL_REVENUE).items()):
        revenue.add_metric([currency], units / MONEY_SCALE)
    facts = CounterMetricFamily(
        "storepulse_customer_facts",
        "Customer facts applied by the customer stage, by kind (re-sent ones included: they "
        "change nothing).",
        labels=["kind"],
    )
    applied = _fields(totals, ck.TOTAL_FACTS)
    for code, kind in FACT_KINDS.items():
        facts.add_metric([kind], applied.get(code, 0))
    rejected = CounterMetricFamily(
        "storepulse_customer_facts_rejected",
        "Messages of the customer topic that were not facts, by reason (dead-lettered).",
        labels=["reason"],
    )
    refused = _fields(totals, "rej")
    for reason in [*_FACT_REASONS, *sorted(set(refused) - set(_FACT_REASONS))]:
        rejected.add_metric([reason], refused.get(reason, 0))
    recovered = CounterMetricFamily(
        "storepulse_carts_recovered",
        "Abandoned carts recovered (their customer's first order within "
        "STOREPULSE_RECOVERY_WINDOW_SECONDS after their end), when first seen recovered.",
    )
    recovered.add_metric([], totals.get(TOTAL_RECOVERED, 0))
    out += [new, orders, revenue, facts, rejected, recovered]
    out += _period_gauges(snapshot, settings)
    lag = GaugeMetricFamily(
        "storepulse_customer_consumer_lag",
        "Customer facts not yet applied by the customer stage, per customer partition, as of "
        "its last applied batch (anonymous orders and the customer reports wait for it).",
        labels=["partition"],
    )
    for meta in snapshot.metas:
        if meta.highwater >= 0:
            lag.add_metric([str(meta.partition)], max(0, meta.highwater - (meta.offset + 1)))
    out.append(lag)
    return out


def _period_gauges(snapshot: CustomerSnapshot, settings: Settings) -> list[Metric]:
    customers = GaugeMetricFamily(
        "storepulse_period_customers",
        "Customers of the current period (the one holding the newest complete bucket): active, "
        "ordering, new, returning, repeat, retained (ordering in it and the period before).",
        labels=["period", "kind"],
    )
    orders = GaugeMetricFamily(
        "storepulse_period_orders",
        "Counted orders of the current period, with a customer or anonymous.",
        labels=["period", "kind"],
    )
    retention = GaugeMetricFamily(
        "storepulse_period_retention_ratio",
        f"Retained / ordering customers of the period before (not exported below "
        f"{settings.min_sample} of them).",
        labels=["period"],
    )
    starts = GaugeMetricFamily(
        "storepulse_period_start_timestamp_seconds",
        "Start of the current period of the period gauges (Unix seconds, UTC calendar).",
        labels=["period"],
    )
    for period, current in snapshot.periods.items():
        now = current.now
        figures = {
            "active": now.active,
            "ordering": now.ordering,
            "new": now.new,
            "returning": now.ordering - now.new,
            "repeat": now.counts.get(ck.COUNT_REPEAT, 0),
            "retained": now.retained,
        }
        for kind, value in figures.items():
            customers.add_metric([period, kind], value)
        orders.add_metric([period, "customer"], now.counts.get(ck.COUNT_ORDERS, 0))
        orders.add_metric([period, "anonymous"], current.anonymous)
        if current.before.ordering >= settings.min_sample:
            retention.add_metric([period], now.retained / current.before.ordering)
        starts.add_metric([period], current.start)
    return [customers, orders, retention, starts]


class CustomerCollector(Collector):
    """client_python custom collector over one scrape's customer snapshot."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self._build = build

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self._build()

    @classmethod
    def register(
        cls,
        registry: CollectorRegistry,
        snapshot: CustomerSnapshot,
        funnel_totals: Mapping[str, int],
        settings: Settings,
    ) -> CustomerCollector:
        collector = cls(lambda: customer_families(snapshot, funnel_totals, settings))
        registry.register(collector)
        return collector
