"""`storepulse stack up|down|status`: the local stack as plain child processes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from streams.settings import Settings

if TYPE_CHECKING:
    from storepulse.local.stack import LocalStack

__all__ = ["register"]


def _cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.local.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        started = stack.up()
        print(f"started: {', '.join(started) or 'nothing (already running)'}")
        created = stack.create_topics()
        print(f"topics created: {', '.join(created) or 'nothing (already there)'}")
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stack = sub.add_parser(
        "stack",
        help="start, stop or inspect the local stack (broker, redis, prometheus, alertmanager)",
        description=(
            "Runs the local stack as plain child processes on 127.0.0.1: the Tansu broker "
            "(in-memory storage), redis-server (AOF on), prometheus and prometheus-alertmanager. "
            "Pid files and logs live under STOREPULSE_STATE_DIR (default .storepulse/). "
            "up also creates the events and dead-letter topics (STOREPULSE_TOPIC with "
            "STOREPULSE_PARTITIONS partitions, STOREPULSE_DLQ_TOPIC) when missing, so that "
            "`storepulse replay` works before any worker ran. "
            "up and down are idempotent; status exits 3 when a service is not ready."
        ),
    )
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(handler=_cmd_stack)
