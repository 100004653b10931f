"""The `storepulse` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from storepulse._procs import ServiceError
from streams.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from storepulse.stack import LocalStack

__all__ = ["build_parser", "command_names", "main"]

Handler = Callable[[argparse.Namespace, Settings], int]

_DESCRIPTION = """\
storepulse: real-time e-commerce KPIs. Storefront events flow from Kafka through a Faust
worker into exact, event-time funnel counters in Redis; an exporter serves them to Prometheus.

Every subcommand reads its configuration from STOREPULSE_* environment variables
(see README.md, "Configuration"); the defaults reach the local stack of `storepulse stack up`.
"""


def _cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        started = stack.up()
        print(f"started: {', '.join(started) or 'nothing (already running)'}")
        _print_status(stack)
    elif args.action == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped) or 'nothing (not running)'}")
    else:
        _print_status(stack)
        return 0 if all(s.ready for s in stack.status()) else 3
    return 0


def _print_status(stack: LocalStack) -> None:
    print(f"{'service':<14}{'state':<10}{'pid':<9}address")
    for s in stack.status():
        state = "ready" if s.ready else ("starting" if s.pid else "stopped")
        print(f"{s.name:<14}{state:<10}{s.pid or '-'!s:<9}{s.address}")
    print(f"state dir: {stack.state_dir.resolve()}")


def _cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.rules import render_rules

    text = render_rules(settings.checkout_steps)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output} for checkout steps {', '.join(settings.checkout_steps)}")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.demo import run_demo

    result: int = run_demo(settings, args)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storepulse",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = sub.add_parser(
        "stack",
        help="start, stop or inspect the local stack (broker, redis, prometheus, alertmanager)",
        description=(
            "Runs the local stack as plain child processes on 127.0.0.1: the Tansu broker "
            "(in-memory storage), redis-server (AOF on), prometheus and prometheus-alertmanager. "
            "Pid files and logs live under STOREPULSE_STATE_DIR (default .storepulse/). "
            "up and down are idempotent; status exits 3 when a service is not ready."
        ),
    )
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(handler=_cmd_stack)

    demo = sub.add_parser(
        "demo",
        help="run everything in the foreground: stack, worker, exporter and synthetic traffic",
        description=(
            "Starts the local stack (if it is not running), the worker, the exporter and a "
            "synthetic traffic generator, prints where to look, and runs until Ctrl-C, which "
            "stops everything it started."
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
    demo.set_defaults(handler=_cmd_demo)

    rules = sub.add_parser(
        "rules",
        help="print the Prometheus rules for the configured checkout steps",
        description=(
            "Renders prometheus/rules/storepulse.yml with its drop-off rules (one pair per "
            "checkout step) for STOREPULSE_CHECKOUT_STEPS. The committed file is the rendering "
            "for the default steps; `storepulse stack up` renders its own copy. A compose "
            "deployment with other steps writes the file it mounts: "
            "`STOREPULSE_CHECKOUT_STEPS=address,payment storepulse rules --output "
            "prometheus/rules/storepulse.yml`."
        ),
    )
    rules.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write FILE (default: stdout)"
    )
    rules.set_defaults(handler=_cmd_rules)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands defined next to their code (worker, kpis, exporter, generate, replay, bench)."""
    from storepulse import commands

    commands.register(sub)


def command_names() -> set[str]:
    """The subcommands this installation offers."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"storepulse: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ServiceError as exc:
        print(f"storepulse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
