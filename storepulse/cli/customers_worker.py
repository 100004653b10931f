"""`storepulse customers-worker`: the customer stage, customer facts into exact KPIs in Redis."""

from __future__ import annotations

import argparse

from streams.settings import Settings

__all__ = ["register"]


def _cmd(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.cli.signals import exit_status
    from streams.worker.run import run_worker

    return run_worker(
        settings,
        loglevel=args.loglevel or settings.log_level.lower(),
        status_after=exit_status,
        stage="customers",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "customers-worker",
        help="run the customer stage: customer facts -> exact customer KPIs in Redis",
        description=(
            "Consumes STOREPULSE_CUSTOMER_TOPIC (the facts `storepulse worker` publishes, keyed "
            "by customer, and `storepulse customers import`'s history rows) with Faust, and "
            "applies each partition's batch to Redis atomically with its offset, like the "
            "worker: kill -9 and rebalances change no number. Consumer group "
            "STOREPULSE_WORKER_ID-customers; metrics on 127.0.0.1:"
            "STOREPULSE_CUSTOMER_WORKER_WEB_PORT (0 disables). Run several to share the "
            "partitions."
        ),
    )
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(handler=_cmd)
