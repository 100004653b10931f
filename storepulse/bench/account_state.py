"""`storepulse bench --account-state`: Redis bytes per account, and the time of the top-N
accounts report over 30 days (the query, /api/accounts, the CLI) with 100,000 accounts.

The state is written through the customer stage's own path (account facts of
streams/contract/facts.py, FactBatchBuilder, CustomerStore.apply: the Lua script, 1,000 facts
per partition and call), not through the broker, as `--customer-state` does. Each account has
1-5 users and orders at its own cadence (7 to 42 days, +-25 %), one in ten stops ordering
half-way (the accounts at risk); sessions last one or two hours, and half the time a browsing
session comes between two orders.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from storepulse.bench.fact_writer import FactWriter
from storepulse.bench.options import BenchError
from storepulse.bench.runner import Bench
from streams.contract.accounts import DirectoryRow
from streams.contract.facts import (
    FACT_ACCOUNT_ACTIVITY,
    FACT_ACCOUNT_ORDER,
    ActivityFact,
    OrderFact,
    encode_fact,
)
from streams.query.accounts import AccountQuery, Accounts
from streams.settings import Settings
from streams.store.accounts import AccountStore
from streams.store.client import connect
from streams.store.customers import CustomerStore
from streams.store.directory import DirectoryStore

__all__ = ["account_state_results", "build_accounts"]

_HOUR = 3_600
_DAY = 86_400
_RUNS = 5
_CADENCES = (7, 10, 14, 21, 30, 42)  # days between an account's orders: weekly to 6-weekly
_TIERS = ("platinum", "gold", "silver", "bronze")


def _account(i: int) -> str:
    return f"acct-{i:06d}"


def _facts(i: int, first: int, end: int, rng: random.Random) -> Iterator[bytes]:
    """One account's facts over [first, end) (epoch seconds): an order every cadence, in a
    session of one or two hours, and half the time a browsing session between two orders."""
    account = _account(i)
    users = [f"{account}-u{k}" for k in range(rng.randint(1, 5))]
    cadence = rng.choice(_CADENCES) * _DAY
    stops = end - (end - first) // 2 if i % 10 == 0 else end  # one in ten goes quiet
    t = first + rng.randrange(cadence)
    n = 0
    while t < end:
        for at, buys in ((t, t < stops), (t + cadence // 2, False)):
            if at >= end or (not buys and rng.random() < 0.5):
                continue
            n += 1
            session, user = f"{account}-s{n}", rng.choice(users)
            hour = at // _HOUR * _HOUR
            for h in range(hour, hour + _HOUR * rng.choice((1, 1, 2)), _HOUR):
                fact = ActivityFact(FACT_ACCOUNT_ACTIVITY, account, session, user, str(h))
                yield encode_fact(fact)
            if buys:
                yield encode_fact(
                    OrderFact(
                        FACT_ACCOUNT_ORDER,
                        account,
                        f"{account}-o{n}",
                        str((at + rng.randrange(600)) * 1_000),
                        str(rng.randrange(5_000, 500_000) * 100),
                        "EUR",
                        "direct",
                        "desktop",
                        session,
                        user,
                    )
                )
        t += rng.randrange(cadence * 3 // 4, cadence * 5 // 4)


@dataclass
class Written:
    """What was written, and what the range [since, end) holds of it (the bench's check)."""

    facts: int = 0
    used_bytes: int = 0
    active: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    orders: int = 0


async def build_accounts(
    settings: Settings, accounts: int, days: int, end: int, seed: int, since: int
) -> Written:
    """Write `days` days of account state ending at end, and a directory of every other
    account; returns what was written, and counted in [since, end)."""
    client = connect(settings)
    try:
        await client.flushdb()
        store = CustomerStore(client, settings)
        await store.register_partitions(range(settings.customer_partition_count))
        base = int((await client.info("memory"))["used_memory"])
        writer = FactWriter(store, settings, "account state")
        rng = random.Random(seed)
        first = end - days * _DAY
        out = Written()
        for i in range(accounts):
            for value in _facts(i, first, end, rng):
                await writer.add(_account(i), value)
                kind, account, *rest = json.loads(value)
                at = int(rest[1]) // 1_000 if kind == FACT_ACCOUNT_ORDER else int(rest[2])
                # An order up to 10 min after its session's start may fall after the range.
                if since <= at < end:
                    out.active.add(account)
                    if kind == FACT_ACCOUNT_ORDER:
                        out.orders += 1
                    else:
                        out.sessions.add(rest[0])
        await writer.flush()
        out.facts = writer.facts
        out.used_bytes = int((await client.info("memory"))["used_memory"]) - base
        rows = [
            DirectoryRow(_account(i), f"Company {i}", _TIERS[i % 4], f"rep-{i % 150:03d}")
            for i in range(0, accounts, 2)
        ]
        await DirectoryStore(client, settings).replace(rows)
        return out
    finally:
        await client.aclose()


async def _timed(what: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await what()
    return time.perf_counter() - started, result


async def _queries(settings: Settings, first: int, end: int) -> dict[str, Any]:
    client = connect(settings)
    try:
        views = Accounts(AccountStore(client, settings), DirectoryStore(client, settings), settings)
        out: dict[str, Any] = {}
        cases = {
            "top": AccountQuery(first, end),
            "sessions": AccountQuery(first, end, sort="sessions"),
            "at_risk": AccountQuery(first, end, at_risk=True),
            "tier": AccountQuery(first, end, tier="gold"),
        }
        for name, q in cases.items():
            times = []
            for _ in range(_RUNS if name == "top" else 2):
                took, report = await _timed(lambda q=q: views.report(q))
                times.append(took)
            out[name] = (statistics.median(times), max(times), report)
        took, reps = await _timed(lambda: views.reps(first, end))
        out["reps"] = (took, took, reps)
        return out
    finally:
        await client.aclose()


def _api_times(settings: Settings, first: int, end: int) -> list[float]:
    from streams.exporter import Exporter

    times = []
    with Exporter(settings, port=0) as exporter:
        for k in range(_RUNS):
            # A new query each time: the exporter shares an answer for 1 s otherwise.
            url = f"{exporter.url}/api/accounts?from={first}000&to={end}000&top={20 + k}"
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()
                if resp.status != 200:
                    raise BenchError(f"account state: /api/accounts answered {resp.status}")
            times.append(time.perf_counter() - started)
    return times


async def account_state_results(bench: Bench, accounts: int, days: int) -> dict[str, Any]:
    """Build the state on the bench's redis-server and measure it."""
    assert bench.base is not None
    settings = bench.fresh("account_state")
    end = int(time.time()) // _HOUR * _HOUR
    first = end - days * _DAY
    # 30 days before the range too: the at-risk test and returning users need a past.
    written = days + 30
    bench.say(f"account state: writing {accounts:,} accounts over {written} days")
    started = time.monotonic()
    got = await build_accounts(settings, accounts, written, end, bench.opts.seed, first)
    facts, used = got.facts, got.used_bytes
    write_s = time.monotonic() - started
    bench.say(f"account state: {facts:,} facts written; timing the reports")
    q = await _queries(settings, first, end)
    api = await asyncio.to_thread(_api_times, settings, first, end)
    started = time.monotonic()
    await bench.run_cli(
        settings,
        ["accounts", "report", "--json", "--from", str(first * 1_000), "--to", str(end * 1_000)],
        "accounts-report.log",
    )
    cli_s = time.monotonic() - started
    top = q["top"][2]["totals"]
    want = (len(got.active), got.orders, len(got.sessions))
    if (top["active_accounts"], top["orders"], top["sessions"]) != want:
        raise BenchError(
            f"account state: the report counts {top['active_accounts']:,} active accounts, "
            f"{top['orders']:,} orders, {top['sessions']:,} sessions; written: {want}"
        )
    return {
        "account_state_accounts": accounts,
        "account_state_days": days,
        "account_state_days_written": written,
        "account_state_facts": facts,
        "account_state_sessions": top["sessions"],
        "account_state_orders": top["orders"],
        "account_state_active_users": top["active_users"],
        "account_state_at_risk": top["at_risk_accounts"],
        "account_state_partitions": settings.customer_partition_count,
        "redis_bytes_per_account": round(used / accounts, 1),
        "redis_bytes_per_account_fact": round(used / facts, 1),
        "account_state_facts_per_s": round(facts / write_s, 1),
        "accounts_report_top_30d_s": round(q["top"][0], 4),
        "accounts_report_top_30d_max_s": round(q["top"][1], 4),
        "accounts_api_top_30d_s": round(statistics.median(api), 4),
        "accounts_api_top_30d_max_s": round(max(api), 4),
        "accounts_report_sessions_30d_s": round(q["sessions"][0], 4),
        "accounts_report_at_risk_30d_s": round(q["at_risk"][0], 4),
        "accounts_report_tier_30d_s": round(q["tier"][0], 4),
        "accounts_reps_30d_s": round(q["reps"][0], 4),
        "accounts_report_cli_s": round(cli_s, 3),
    }
