"""The `storepulse` command: one entry point, one module per subcommand in this package."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from storepulse.cli import (
    accounts,
    backtest,
    bench,
    carts,
    customers,
    customers_worker,
    demo,
    exporter,
    generate,
    kpis,
    replay,
    rules,
    stack,
    worker,
)
from storepulse.cli.errors import describe
from storepulse.cli.signals import Stopped, exit_status, guard_output, stopping_on_signals
from streams.redact import install_log_redaction, redact_text
from streams.settings import Settings, SettingsError, load_settings

__all__ = ["COMMANDS", "build_parser", "command_names", "main"]

Handler = Callable[[argparse.Namespace, Settings], int]

_DESCRIPTION = """\
storepulse: real-time e-commerce KPIs. Storefront events flow from Kafka through a Faust
worker into exact, event-time funnel counters in Redis; an exporter serves them to Prometheus.

Every subcommand reads its configuration from STOREPULSE_* environment variables
(see README.md, "Configuration"); the defaults reach the local stack of `storepulse stack up`.
"""

# In the order `storepulse --help` lists them. Each module's register() adds its subcommand;
# it imports only argparse-level things, the work is imported by its handler.
COMMANDS = (
    stack,
    demo,
    worker,
    customers_worker,
    kpis,
    carts,
    customers,
    accounts,
    exporter,
    generate,
    replay,
    bench,
    backtest,
    rules,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storepulse",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def command_names() -> set[str]:
    """The subcommands this installation offers."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the exit statuses are in README.md, "Stopping and exit statuses"."""
    guard_output()  # first: `storepulse --help | head -1` writes through it too
    install_log_redaction()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _failed(args, exc, None)
    handler: Handler = args.handler
    with stopping_on_signals():
        try:
            return handler(args, settings)
        except Stopped as exc:
            return exit_status(exc.signum)
        except KeyboardInterrupt:  # SIGINT after asyncio or mode put Python's default back
            return 130
        except BrokenPipeError:
            # Data written to stdout itself (`generate --out - | head`) whose reader has gone.
            print(f"storepulse {args.command}: stdout closed by its reader", file=sys.stderr)
            return 1
        except Exception as exc:
            return _failed(args, exc, settings)


def _failed(args: argparse.Namespace, exc: Exception, settings: Settings | None) -> int:
    """One line for a failure we can explain (storepulse.cli.errors), a traceback for a bug;
    either redacted. -v adds the traceback to the line."""
    failure = describe(exc, settings)
    if failure is None or args.verbose:
        sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
    if failure is None:
        return 1  # what Python's own exit after an uncaught exception says
    print(f"storepulse {args.command}: {failure.text}", file=sys.stderr)
    return failure.status
