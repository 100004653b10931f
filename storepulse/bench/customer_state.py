"""`storepulse bench --customer-state`: Redis bytes per customer and per active customer-day, and
the time of the daily customer report over 30 days, on a customer base built in bulk.

The state is written through the customer stage's own path (streams/contract/facts.py facts,
FactBatchBuilder, CustomerStore.apply: the Lua script, 1,000 facts per partition and call, every
partition in one round trip), not by the broker: a million customers through Kafka would measure
the broker. The customers are spread over the customer partitions by CRC32 of their id (the
spread, not the partitioner, matters here).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

from storepulse.bench.fact_writer import FactWriter
from storepulse.bench.options import BenchError
from storepulse.bench.runner import Bench
from streams.contract.facts import ActivityFact, OrderFact, encode_fact
from streams.contract.periods import period_start
from streams.query.customers import cohort_report, customer_report
from streams.settings import Settings
from streams.store.client import connect
from streams.store.customers import CustomerStore
from streams.store.funnel import FunnelStore

__all__ = ["customer_state_results"]

_DAY = 86_400
_CHANNELS = ("organic", "direct", "paid_search", "social", "email")
_DEVICES = ("desktop", "mobile", "tablet")
_REPORT_RUNS = 5


def _customer(i: int) -> str:
    return f"u-{i:08d}"  # 10 characters, like a shop's numeric customer ids


def _plan(customers: int, days: int, first_day: int, seed: int) -> Iterator[tuple[int, int, int]]:
    """(customer, day start, orders that day) for each active customer-day.

    Every customer is active on 1-3 of the days (2 on average) and orders on its first one;
    3 in 10 order again on a later active day: a customer base where most bought once.
    """
    rng = random.Random(seed)
    for i in range(customers):
        n = rng.choice((1, 2, 3))
        active = sorted(rng.sample(range(days), n))
        again = n > 1 and rng.random() < 0.3
        for k, d in enumerate(active):
            orders = 1 if k == 0 or (again and k == n - 1) else 0
            yield i, first_day + d * _DAY, orders


async def _used_memory(client: Any) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def _time(what: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await what()
    return time.perf_counter() - started, result


async def _build_and_measure(
    bench: Bench, settings: Settings, customers: int, days: int
) -> dict[str, Any]:
    client = connect(settings)
    try:
        await client.flushdb()
        store = CustomerStore(client, settings)
        await store.register_partitions(range(settings.customer_partition_count))
        today = period_start("day", int(time.time()))
        first_day = today - days * _DAY
        rng = random.Random(bench.opts.seed)
        plan = list(_plan(customers, days, first_day, bench.opts.seed))
        base = await _used_memory(client)
        bench.say(f"customer state: {len(plan):,} active customer-days of {customers:,} customers")
        # Phase 1: activity only, one fact per active customer-day (an hour of that day).
        writer = FactWriter(store, settings, "customer state")
        started = time.monotonic()
        for i, day, _ in plan:
            hour = day + 3_600 * rng.randrange(24)
            seen = ActivityFact("a", _customer(i), f"s-{i}-{day}", "", str(hour))
            await writer.add(seen.customer, encode_fact(seen))
        await writer.flush()
        activity_s = time.monotonic() - started
        after_activity = await _used_memory(client)
        bench.say(f"customer state: activity written in {activity_s:.0f} s; now the orders")
        # Phase 2: the orders of those days (the customer base: per-customer state).
        orders = 0
        started = time.monotonic()
        for i, day, n in plan:
            for k in range(n):
                orders += 1
                ts = (day + rng.randrange(_DAY)) * 1_000
                fact = OrderFact(
                    "o",
                    _customer(i),
                    f"o-{i}-{day}-{k}",
                    str(ts),
                    str(rng.randrange(500, 50_000) * 100),
                    "USD",
                    rng.choice(_CHANNELS),
                    rng.choice(_DEVICES),
                    f"s-{i}-{day}",
                    "",
                )
                await writer.add(fact.customer, encode_fact(fact))
        await writer.flush()
        orders_s = time.monotonic() - started
        after_orders = await _used_memory(client)
        bench.say(f"customer state: {writer.facts:,} facts written; timing the reports")
        funnel = FunnelStore(client, settings)
        report_s, cohort_s = [], []
        report: dict[str, Any] = {}
        for _ in range(_REPORT_RUNS):
            took, report = await _time(
                lambda: customer_report(store, funnel, settings, "day", first_day, today)
            )
            report_s.append(took)
            took, _ = await _time(lambda: cohort_report(store, settings, "day", first_day, today))
            cohort_s.append(took)
        hour_s, _ = await _time(
            lambda: customer_report(store, funnel, settings, "hour", first_day, today)
        )
        keys = await client.dbsize()
        version = (await client.info("server"))["redis_version"]
    finally:
        await client.aclose()
    # The command a person runs, whole: interpreter start, imports, the report, JSON.
    started = time.monotonic()
    await bench.run_cli(
        settings,
        [
            *("customers", "report", "--period", "day", "--json"),
            *("--from", str(first_day * 1_000), "--to", str(today * 1_000)),
        ],
        "customers-report.log",
    )
    cli_s = time.monotonic() - started
    active_days = len(plan)
    rows = report["rows"]
    return {
        "redis_version": version,
        "customer_state_customers": customers,
        "customer_state_days": days,
        "customer_state_active_customer_days": active_days,
        "customer_state_orders": orders,
        "customer_state_facts": writer.facts,
        "customer_state_keys": keys,
        "customer_state_partitions": settings.customer_partition_count,
        "redis_bytes_per_active_customer_day": round((after_activity - base) / active_days, 1),
        "redis_bytes_per_customer": round((after_orders - after_activity) / customers, 1),
        "redis_bytes_per_order": round((after_orders - after_activity) / orders, 1),
        "redis_used_memory_mb": round((after_orders - base) / 2**20, 1),
        "customer_state_activity_facts_per_s": round(active_days / activity_s, 1),
        "customer_state_order_facts_per_s": round(orders / orders_s, 1),
        "customers_report_day_30d_s": round(statistics.median(report_s), 4),
        "customers_report_day_30d_max_s": round(max(report_s), 4),
        "customers_cohorts_day_30d_s": round(statistics.median(cohort_s), 4),
        "customers_report_hour_30d_s": round(hour_s, 4),
        "customers_report_cli_s": round(cli_s, 3),
        "customer_state_report_rows": len(rows),
        "customer_state_new_customers": sum(r["new_customers"] for r in rows),
    }


async def customer_state_results(bench: Bench, customers: int, days: int) -> dict[str, Any]:
    """Build the state on the bench's redis-server and measure it (the keys above)."""
    assert bench.base is not None
    settings = bench.fresh("customer_state")
    figures = await _build_and_measure(bench, settings, customers, days)
    if figures["customer_state_new_customers"] != customers:
        raise BenchError(
            f"customer state: the report counts {figures['customer_state_new_customers']:,} "
            f"new customers, not {customers:,}"
        )
    return figures
