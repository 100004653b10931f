"""How every storepulse command stops: SIGINT, SIGTERM or SIGHUP, and output nobody reads."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import signal
import stat
import sys
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn, TextIO

__all__ = [
    "STOP_SIGNALS",
    "StopRequest",
    "Stopped",
    "exit_status",
    "guard_output",
    "stop_request",
    "stopping_on_signals",
    "wait_for_stop",
]

# Ctrl-C, `kill` / a supervisor / the demo and bench stopping their children, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by the first stop signal: `finally` blocks stop the children.

    A KeyboardInterrupt, so that asyncio.run and everything else that unwinds cleanly on Ctrl-C
    does the same on SIGTERM and SIGHUP.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def exit_status(signum: int) -> int:
    """The exit status after a stop by signum (README, "Stopping and exit statuses").

    130 after SIGINT, as a shell reports Ctrl-C, so `storepulse ... && next` does not go on;
    0 after SIGTERM or SIGHUP: a stop that was asked for, which supervisors count as clean.
    """
    return 130 if signum == signal.SIGINT else 0


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """While inside, the first stop signal raises Stopped; later ones are ignored.

    Ignored, so that an impatient second Ctrl-C cannot cut short the stop of the children,
    which is bounded anyway (SIGKILL after each child's timeout).
    """
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait_for_stop() -> NoReturn:
    """Block the main thread until a stop signal raises Stopped."""
    while True:
        signal.pause()


class StopRequest:
    """Set by the first stop signal on an asyncio loop: the command ends its run cleanly."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum: int | None = None

    def set(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def status(self, otherwise: int = 0) -> int:
        """exit_status of the stop signal, or otherwise when none arrived."""
        return otherwise if self.signum is None else exit_status(self.signum)


@contextlib.contextmanager
def stop_request() -> Iterator[StopRequest]:
    """Inside a running loop: stop signals set the request instead of raising Stopped.

    On the way out the loop's handlers are removed and the previous ones (stopping_on_signals)
    are put back: asyncio itself would leave SIGTERM and SIGHUP at their fatal default.
    """
    loop = asyncio.get_running_loop()
    request = StopRequest()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, request.set, int(sig))
    try:
        yield request
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])


class _Dropping(io.TextIOWrapper):
    """sys.stdout or sys.stderr, which drops what it is given once nobody reads it any more.

    `storepulse demo | tee demo.log` and Ctrl-C: tee exits first, and the demo's next line would
    raise BrokenPipeError in the middle of stopping its children. Once the reader has gone
    (EPIPE; EIO from a terminal that hung up) the descriptor is pointed at /dev/null, as
    Python's documentation on SIGPIPE recommends, so every later write, from any thread or
    library and at interpreter exit, succeeds and the command carries on stopping.
    """

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as exc:
            self._drop(exc)
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            self._drop(exc)

    def _drop(self, exc: OSError) -> None:
        fd = self.fileno()
        # EIO only from a terminal (a character device: isatty() itself fails once it hung up);
        # from a file it is a disk error, not a reader that went away.
        hung_up = exc.errno == errno.EIO and stat.S_ISCHR(os.fstat(fd).st_mode)
        if exc.errno != errno.EPIPE and not hung_up:
            raise exc
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
        with contextlib.suppress(OSError):
            super().flush()  # what was still buffered goes to /dev/null


def _guarded(stream: TextIO) -> TextIO:
    if isinstance(stream, io.TextIOWrapper) and not isinstance(stream, _Dropping):
        return _Dropping(
            stream.buffer,
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
            write_through=stream.write_through,
        )
    return stream  # already guarded, or not a real file (a test's capture)


def guard_output() -> None:
    """Make sys.stdout and sys.stderr drop their output once their reader has gone."""
    sys.stdout = _guarded(sys.stdout)
    sys.stderr = _guarded(sys.stderr)
