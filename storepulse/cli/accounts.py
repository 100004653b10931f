"""`storepulse accounts load|report|show|reps`: the account directory, top accounts, one account,
sales reps."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from storepulse.cli.argtypes import count, instant_s
from storepulse.cli.errors import BAD_INPUT
from streams.contract.accounts import SORT_KEYS
from streams.settings import Settings

__all__ = ["register"]


def _emit(report: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(text)


async def _load(args: argparse.Namespace, settings: Settings) -> int:
    from streams.contract.directory import DirectoryError, parse_directory_bytes
    from streams.store.client import connect
    from streams.store.directory import DirectoryStore

    path = Path(args.file)
    jsonl = args.format == "jsonl" or (args.format is None and path.suffix in {".jsonl", ".json"})
    try:
        rows = parse_directory_bytes(await asyncio.to_thread(path.read_bytes), jsonl)
    except DirectoryError as exc:
        print(
            f"storepulse accounts load: {path} {exc}; nothing was loaded (fix the row, then "
            "load the file again)",
            file=sys.stderr,
        )
        return BAD_INPUT
    client = connect(settings)
    try:
        store = DirectoryStore(client, settings)
        if args.upsert:
            size = await store.upsert(rows)
        else:
            await store.replace(rows)
            size = len(rows)
    finally:
        await client.aclose()
    summary = {"file": str(path), "rows": len(rows), "upsert": args.upsert, "directory": size}
    if args.json:
        print(json.dumps(summary))
    else:
        how = "merged into" if args.upsert else "replaced"
        print(
            f"accounts load: {len(rows):,} rows of {path} {how} the directory ({size:,} accounts)"
        )
    return 0


async def _read(args: argparse.Namespace, settings: Settings) -> int:
    from streams.query.account_text import render_account, render_accounts, render_reps
    from streams.query.accounts import AccountQuery, Accounts, UnknownAccount, recent_range
    from streams.store.accounts import AccountStore
    from streams.store.client import connect
    from streams.store.directory import DirectoryStore
    from streams.store.funnel import FunnelStore

    client = connect(settings)
    try:
        accounts = Accounts(
            AccountStore(client, settings), DirectoryStore(client, settings), settings
        )
        try:
            if args.what == "report":
                query = AccountQuery(
                    args.from_,
                    args.to,
                    top=args.top,
                    sort=args.sort,
                    tier=args.tier,
                    rep=args.rep,
                    at_risk=args.at_risk,
                    search=args.search,
                )
                report = await accounts.report(query)
                _emit(report, args.json, render_accounts(report))
            elif args.what == "reps":
                report = await accounts.reps(args.from_, args.to)
                _emit(report, args.json, render_reps(report))
            else:
                if (args.from_ is None) != (args.to is None):
                    raise ValueError("give both --from and --to, or neither (the last 30 days)")
                if args.from_ is None:
                    from_s, to_s = await recent_range(FunnelStore(client, settings), settings)
                else:
                    from_s, to_s = args.from_, args.to
                detail = await accounts.show(args.account, from_s, to_s)
                _emit(detail, args.json, render_account(detail))
        except UnknownAccount:
            print(
                f"storepulse accounts show: no account {args.account!r}: no event, imported "
                "history or directory row names it",
                file=sys.stderr,
            )
            return BAD_INPUT
        except ValueError as exc:
            print(f"storepulse accounts {args.what}: {exc}", file=sys.stderr)
            return BAD_INPUT
    finally:
        await client.aclose()
    return 0


def _cmd(args: argparse.Namespace, settings: Settings) -> int:
    if args.what == "load":
        return asyncio.run(_load(args, settings))
    return asyncio.run(_read(args, settings))


def _range(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--from",
        dest="from_",
        type=instant_s,
        required=required,
        metavar="FROM",
        help="ISO 8601 with a zone, or epoch ms: the first whole hour starting at or after it",
    )
    p.add_argument(
        "--to",
        type=instant_s,
        required=required,
        help="ISO 8601 with a zone, or epoch ms: the hours starting before it are in the range",
    )
    p.add_argument("--json", action="store_true", help="JSON output (docs/semantics.md)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    accounts = sub.add_parser(
        "accounts",
        help="B2B accounts: the directory, top accounts, accounts at risk, sales reps",
        description=(
            "The account views of the customer stage (an account is the customer of every "
            "event with its account_id) and the account directory (name, tier, sales rep). "
            "Ranges are whole hours: the hours whose start is in [FROM, TO). docs/semantics.md, "
            "'Accounts', defines every figure."
        ),
    )
    what = accounts.add_subparsers(dest="what", required=True, metavar="ACTION")
    load = what.add_parser(
        "load",
        help="replace (or --upsert into) the account directory from a CSV or JSONL file",
        description=(
            "FILE is CSV with the header account_id,name,tier,sales_rep[,region], or JSONL "
            "(.jsonl) with those keys. account_id and tier are required; name, sales_rep and "
            "region may be empty. All or nothing: a bad row (missing or duplicate id, an "
            "over-long field) stops the load with its line number and reason (exit 2) and "
            "nothing changes. The directory is replaced at once: readers see the old one or "
            "the new one, never a mix; --upsert keeps the rows of other ids."
        ),
    )
    load.add_argument("file", help="the CSV or JSONL file")
    load.add_argument("--upsert", action="store_true", help="merge: keep the other rows")
    load.add_argument("--format", choices=("csv", "jsonl"), help="default: by the file's suffix")
    load.add_argument("--json", action="store_true", help="the summary as one JSON object")
    report = what.add_parser(
        "report",
        help="totals and the top accounts of a range (or the accounts at risk)",
        description=(
            "Totals over every account (unassigned ones included), then the accounts active "
            "in the range (with --at-risk: the accounts at risk at TO, active or not), "
            "descending by --sort (nulls last, ties by account_id), the first --top of them."
        ),
    )
    _range(report)
    report.add_argument("--top", type=count, default=20, help="accounts listed (default 20)")
    report.add_argument("--sort", choices=SORT_KEYS, default="revenue")
    report.add_argument("--tier", help="only accounts of this tier ('unassigned': not in it)")
    report.add_argument("--rep", help="only accounts of this sales rep")
    report.add_argument("--at-risk", action="store_true", help="list the accounts at risk")
    report.add_argument("--search", help="only accounts whose id or name contains this")
    show = what.add_parser(
        "show",
        help="one account: its figures, its users, its orders per day",
        description=(
            "The account's row of `report`, its users (sessions, orders, revenue, last seen "
            "in the range) and its orders per UTC day. Without --from/--to: the 30 days "
            "ending with the current hour (the one of the newest complete bucket)."
        ),
    )
    show.add_argument("account", help="the account_id")
    _range(show, required=False)
    reps = what.add_parser(
        "reps",
        help="one row per sales rep: accounts, active, ordering, new, at risk, revenue",
        description=(
            "One row for each sales_rep of the directory and one (sales_rep null) for the "
            "accounts without one, by revenue descending (ties by sales_rep, the null row "
            "last); revenue_growth is against the range of the same length before FROM."
        ),
    )
    _range(reps)
    accounts.set_defaults(handler=_cmd)
