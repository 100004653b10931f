"""Subcommands of the stream side: `worker` and `kpis` (and `exporter` once it lands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from streams.events import parse_ts
from streams.funnel import bucket_of
from streams.settings import Settings

__all__ = ["register"]


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run_worker

    return run_worker(settings, loglevel=args.loglevel or settings.log_level.lower())


def _epoch_s(text: str) -> int:
    try:
        return parse_ts(int(text) if text.lstrip("-").isdigit() else text) // 1000
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration_s(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(
            f"expected a duration like 15m, 1h, 7d: {text!r}"
        ) from None


def _range(args: argparse.Namespace, settings: Settings) -> tuple[int, int]:
    """[from, to) in epoch seconds; defaults end at the newest complete bucket."""
    current = bucket_of(int(time.time() * 1000), settings.bucket_seconds)
    to_s = args.to if args.to is not None else current  # the current bucket is still open
    from_s = args.from_ if args.from_ is not None else to_s - args.last
    return from_s, to_s


async def _kpis(args: argparse.Namespace, settings: Settings) -> int:
    from streams.report import kpi_report, render_table
    from streams.store import FunnelStore, connect

    from_s, to_s = _range(args, settings)
    client = connect(settings)
    try:
        report = await kpi_report(FunnelStore(client, settings), settings, from_s, to_s, args.by)
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
    worker = sub.add_parser(
        "worker",
        help="run the stream worker: Kafka events -> exact funnel counters in Redis",
        description=(
            "Consumes STOREPULSE_TOPIC with Faust (at least once), validates every message, "
            "sends rejects with their reason to STOREPULSE_DLQ_TOPIC and applies each batch to "
            "Redis atomically with the partition's offset, so counters are exact after crashes "
            "and redeliveries. Serves its own metrics on 127.0.0.1:STOREPULSE_WORKER_WEB_PORT "
            "(0 disables; two workers on one host need distinct ports). Run more worker "
            "processes with the same STOREPULSE_WORKER_ID to share the partitions."
        ),
    )
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(handler=_cmd_worker)

    kpis = sub.add_parser(
        "kpis",
        help="print the exact KPIs of a range of event-time buckets",
        description=(
            "Reads Redis and prints the KPIs of the buckets b with FROM <= b < TO (bucket starts, "
            "epoch aligned, STOREPULSE_BUCKET_SECONDS wide). Ratios are null (or '-') where the "
            "denominator is 0; money is exact and printed with 2 decimals. Without --from/--to "
            "the range is the --last duration ending at the newest complete bucket."
        ),
    )
    kpis.add_argument("--from", dest="from_", type=_epoch_s, help="ISO 8601 with zone, or epoch ms")
    kpis.add_argument("--to", type=_epoch_s, help="ISO 8601 with zone, or epoch ms (exclusive)")
    kpis.add_argument(
        "--last", type=_duration_s, default=3600, help="range length when --from is omitted (1h)"
    )
    kpis.add_argument("--by", choices=["channel", "device", "country"], help="break down by")
    kpis.add_argument("--json", action="store_true", help="JSON output (see docs/semantics.md)")
    kpis.set_defaults(handler=_cmd_kpis)
