"""Running a stage in the foreground: its metrics served first, then Faust's worker."""

from __future__ import annotations

from collections.abc import Callable

from streams.settings import Settings
from streams.worker.metrics import Endpoint, Stage, web_port

__all__ = ["Stage", "run_worker"]


def run_worker(
    settings: Settings,
    loglevel: str = "info",
    status_after: Callable[[int], int] = lambda signum: 0,
    stage: Stage = "sessions",
) -> int:
    """Run the worker in the foreground until SIGINT, SIGTERM or SIGHUP.

    Returns the exit status: status_after(signal) after a stop by a signal, 1 when Faust
    crashed, 0 when it ended by itself.
    """
    endpoint = Endpoint()
    # Before Faust, aiokafka and the app are imported and built (1.2 s on an idle 2-core box,
    # ~5 s while other work keeps both cores busy): a starting worker answers, with up 0.
    endpoint.serve(settings.worker_web_host, web_port(settings, stage))
    try:
        from streams.worker.foreground import run_stage

        return run_stage(settings, endpoint, loglevel, status_after, stage)
    finally:
        endpoint.stop()
