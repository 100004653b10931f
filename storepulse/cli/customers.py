"""`storepulse customers report|cohorts|import`: customer KPIs, cohorts, imported history."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from storepulse.cli.argtypes import instant_s
from storepulse.cli.errors import BAD_INPUT
from streams.settings import Settings

__all__ = ["register"]


def _emit(report: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(text)


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    from streams.query.customers import (
        cohort_report,
        customer_report,
        render_cohorts,
        render_report,
    )
    from streams.store.client import connect
    from streams.store.customers import CustomerStore
    from streams.store.funnel import FunnelStore

    client = connect(settings)
    try:
        customers = CustomerStore(client, settings)
        if args.what == "report":
            funnel = FunnelStore(client, settings)
            report = await customer_report(
                customers, funnel, settings, args.period, args.from_, args.to
            )
            _emit(report, args.json, render_report(report))
        else:
            report = await cohort_report(customers, settings, args.period, args.from_, args.to)
            _emit(report, args.json, render_cohorts(report))
    finally:
        await client.aclose()
    return 0


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    from streams.contract.facts import encode_fact
    from streams.contract.history import HistoryError, parse_history_bytes
    from streams.kafka import ensure_topics
    from streams.worker.facts import FactProducer

    path = Path(args.file)
    try:
        facts = parse_history_bytes(await asyncio.to_thread(path.read_bytes))
    except HistoryError as exc:
        print(
            f"storepulse customers import: {path} {exc}; nothing was imported",
            file=sys.stderr,
        )
        return BAD_INPUT
    await ensure_topics(settings)
    producer = FactProducer(settings)
    await producer.start()
    try:
        # Keyed by customer: each row lands on its customer's partition of the customer stage.
        await producer.send_all([(f.customer.encode(), encode_fact(f)) for f in facts])
    finally:
        await producer.stop()
    summary = {"file": str(path), "rows": len(facts), "topic": settings.customer_topic}
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"customers import: {len(facts):,} history rows of {path} published to "
            f"{settings.customer_topic}; the customer stage applies them (a re-import of the "
            "same file changes nothing, a changed row replaces the earlier one)"
        )
    return 0


def _cmd(args: argparse.Namespace, settings: Settings) -> int:
    if args.what == "import":
        return asyncio.run(_import(args, settings))
    return asyncio.run(_report(args, settings))


_PERIODS = ("hour", "day", "week", "month")


def _range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="from_",
        type=instant_s,
        required=True,
        metavar="FROM",
        help="ISO 8601 with a zone, or epoch ms: the first period starting at or after it",
    )
    p.add_argument(
        "--to", type=instant_s, required=True, help="ISO 8601 with a zone, or epoch ms (exclusive)"
    )
    p.add_argument("--json", action="store_true", help="JSON output (docs/semantics.md)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    customers = sub.add_parser(
        "customers",
        help="customer KPIs, cohorts and imported history (the customer stage's state)",
        description=(
            "Customer KPIs per calendar period (UTC hours, days, ISO weeks from Monday, months) "
            "read from the customer stage's state in Redis (`storepulse customers-worker`), and "
            "the import of what the shop knew before tracking began. docs/semantics.md, "
            "'Customers', defines every figure."
        ),
    )
    what = customers.add_subparsers(dest="what", required=True, metavar="ACTION")
    report = what.add_parser(
        "report",
        help="new, returning, repeat and retained customers, orders, revenue per period",
        description=(
            "One row per period whose start is in [FROM, TO), ascending, zeros included: "
            "active, ordering, new (by acquisition channel and device), returning, repeat and "
            "retained customers, retention and churn against the period before (even before "
            "FROM), orders with a customer, anonymous orders, revenue, per-customer figures "
            "and growth. Ratios are null where a denominator is 0; money has 2 decimals "
            "(half-even); with several currencies the money fields are null and the "
            "*_by_currency objects carry them."
        ),
    )
    report.add_argument("--period", choices=_PERIODS, required=True)
    _range_options(report)
    cohorts = what.add_parser(
        "cohorts",
        help="customers grouped by the period of their first order: retention and value",
        description=(
            "The cohorts (customers by the period of their first order; customers with "
            "imported history are in none) starting in [FROM, TO) that have a customer: "
            "retention[k] = share ordering in the k-th period after the first, "
            "revenue_per_customer[k] = the cohort's revenue up to the end of that period per "
            "customer, each list up to the last period starting before TO."
        ),
    )
    cohorts.add_argument("--period", choices=_PERIODS[1:], required=True)
    _range_options(cohorts)
    imp = what.add_parser(
        "import",
        help="import customer history from a CSV file (all or nothing, idempotent)",
        description=(
            "FILE is CSV with the header customer_id,first_order_at,orders,last_order_at: "
            "orders >= 1, both instants ISO 8601 with a zone, first_order_at <= last_order_at, "
            "each customer once. A bad row stops the import with its line number and reason "
            "(exit 2) and nothing is written. Every row is published to "
            "STOREPULSE_CUSTOMER_TOPIC keyed by its customer; the customer stage applies it. "
            "Importing the same file again changes nothing; a changed row replaces the "
            "earlier one. A customer with history is never new and is in no cohort; with n "
            "imported orders its k-th tracked order is its (n+k)-th overall."
        ),
    )
    imp.add_argument("file", help="the CSV file")
    imp.add_argument("--json", action="store_true", help="the summary as one JSON object")
    customers.set_defaults(handler=_cmd)
