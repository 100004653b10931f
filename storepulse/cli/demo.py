"""`storepulse demo`: the local stack, worker, exporter and synthetic traffic in the foreground."""

from __future__ import annotations

import argparse

from streams.settings import Settings

__all__ = ["register"]


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.local.demo import run_demo

    return run_demo(settings, args.rate, args.scenario, args.duration, args.history)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run everything in the foreground: stack, worker, exporter and synthetic traffic",
        description=(
            "Starts the local stack (if it is not running), the worker, the exporter and a "
            "synthetic traffic generator, prints where to look, when its incident begins and when "
            "the page is expected, and runs until Ctrl-C (exit 130), "
            "SIGTERM or SIGHUP (exit 0), which stop everything it started, also with its output "
            "on a pipe nobody reads any more."
        ),
    )
    demo.add_argument("--rate", type=float, default=200.0, help="synthetic events per second")
    demo.add_argument(
        "--scenario",
        action="append",
        default=None,
        help="traffic scenario (repeatable), see `storepulse generate --help`",
    )
    demo.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: run)"
    )
    demo.add_argument(
        "--history",
        type=float,
        default=3.0,
        metavar="HOURS",
        help="hours of normal traffic backfilled into Prometheus before live traffic starts, as "
        "`storepulse backtest` does, so the alerts have a baseline at once (default 3; 0: none; "
        "skipped when Prometheus already holds storepulse data of that period)",
    )
    demo.set_defaults(handler=_cmd_demo)
