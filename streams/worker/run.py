"""Running a stage in the foreground: Faust's worker, stopped in order by every stop signal."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any, Literal

import faust

from streams.loop import use_event_loop
from streams.settings import Settings
from streams.worker.app import StorepulseApp, create_app
from streams.worker.customer_app import create_customer_app

__all__ = ["Stage", "run_worker"]

# The session worker (`storepulse worker`) or the customer stage (`storepulse customers-worker`).
Stage = Literal["sessions", "customers"]


class _Worker(faust.Worker):
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
    use_event_loop(settings.event_loop)
    app = create_customer_app(settings) if stage == "customers" else create_app(settings)
    worker = _Worker(app, status_after, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # mode always leaves through sys.exit: 0, or 1 on a crash
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    if code == 0 and worker.stop_signal is not None:
        return status_after(worker.stop_signal)
    return code
