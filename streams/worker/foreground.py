"""Faust's worker running a stage in the foreground, stopped in order by every stop signal."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import faust

from streams.loop import use_event_loop
from streams.settings import Settings
from streams.worker.app import StorepulseApp, create_app
from streams.worker.customer_app import create_customer_app
from streams.worker.metrics import Endpoint, Stage

__all__ = ["StageWorker", "run_stage"]


class StageWorker(faust.Worker):
    """Faust's worker, stopped in order by SIGHUP too, and knowing which signal stopped it.

    mode's Worker stops on SIGINT and SIGTERM and leaves SIGHUP at its default, which kills the
    process on the spot: no last batch stored, no leaving the group (the partitions then wait a
    session timeout, 6 s, for a new owner).
    """

    def __init__(self, app: StorepulseApp, status_after: Callable[[int], int], **kw: Any) -> None:
        super().__init__(app, **kw)
        self.storepulse = app  # self.app is typed as faust's AppT
        self.status_after = status_after
        self.stop_signal: int | None = None

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.loop.add_signal_handler(sig, self._stop_by, sig)

    def _stop_by(self, sig: signal.Signals) -> None:
        if self.stop_signal is None:
            self.stop_signal = int(sig)
            self.storepulse.forced_exit_status = self.status_after(int(sig))
        # What faust's own SIGTERM handler does (private methods of faust's and mode's Worker):
        # a worker still starting stops as soon as it has started; the shutdown runs once.
        self._flag_as_shutdown_by_signal()
        self._schedule_shutdown(sig)


def run_stage(
    settings: Settings,
    endpoint: Endpoint,
    loglevel: str,
    status_after: Callable[[int], int],
    stage: Stage,
) -> int:
    """Build the stage's app on endpoint and run it until a stop signal; the exit status."""
    use_event_loop(settings.event_loop)
    if stage == "customers":
        app: StorepulseApp = create_customer_app(settings, endpoint=endpoint)
    else:
        app = create_app(settings, endpoint=endpoint)
    worker = StageWorker(app, status_after, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # mode always leaves through sys.exit: 0, or 1 on a crash
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    if code == 0 and worker.stop_signal is not None:
        return status_after(worker.stop_signal)
    return code
