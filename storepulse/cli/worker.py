"""`storepulse worker`: the stream worker, Kafka events into exact funnel counters in Redis."""

from __future__ import annotations

import argparse

from streams.settings import Settings

__all__ = ["register"]


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from storepulse.cli.signals import exit_status
    from streams.worker.run import run_worker

    return run_worker(
        settings, loglevel=args.loglevel or settings.log_level.lower(), status_after=exit_status
    )


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
