"""`storepulse kpis`: the exact KPIs of a range of event-time buckets, read from Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from storepulse.cli.argtypes import duration_s, instant_s
from streams.settings import Settings

__all__ = ["register"]


async def _kpis(args: argparse.Namespace, settings: Settings) -> int:
    from streams.query.kpis import kpi_report, render_table
    from streams.query.window import range_ending_now
    from streams.store.client import connect
    from streams.store.funnel import FunnelStore

    client = connect(settings)
    try:
        store = FunnelStore(client, settings)
        if args.to is not None:
            from_s, to_s = args.to - args.last, args.to
        else:
            from_s, to_s = await range_ending_now(store, settings, args.last)
        if args.from_ is not None:
            from_s = args.from_
        report = await kpi_report(store, settings, from_s, to_s, args.by)
    finally:
        await client.aclose()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(render_table(report, settings.stages))
    return 0


def _cmd_kpis(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_kpis(args, settings))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kpis = sub.add_parser(
        "kpis",
        help="print the exact KPIs of a range of event-time buckets",
        description=(
            "Reads Redis and prints the KPIs of the buckets b with FROM <= b < TO (bucket starts, "
            "epoch aligned, STOREPULSE_BUCKET_SECONDS wide). Ratios are null (or '-') where the "
            "denominator is 0; money is exact and printed with 2 decimals. Without --to the range "
            "ends where the newest complete bucket ends: at the start of the bucket holding "
            "min(now, smallest watermark of the partitions not idle), the end of "
            "/api/kpis?window= and of the window gauges (docs/semantics.md, 'Now, in event "
            "time'). Without --from it is --last long, so --last 15m --json prints what "
            "/api/kpis?window=15m serves."
        ),
    )
    kpis.add_argument(
        "--from", dest="from_", type=instant_s, help="ISO 8601 with zone, or epoch ms"
    )
    kpis.add_argument("--to", type=instant_s, help="ISO 8601 with zone, or epoch ms (exclusive)")
    kpis.add_argument(
        "--last",
        type=duration_s,
        default=3600,
        help="range length when --from is omitted, ending at --to or the newest complete "
        "bucket (default 1h)",
    )
    kpis.add_argument("--by", choices=["channel", "device", "country"], help="break down by")
    kpis.add_argument("--json", action="store_true", help="JSON output (see docs/semantics.md)")
    kpis.set_defaults(handler=_cmd_kpis)
