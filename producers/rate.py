"""Rate control on the monotonic clock (bursts, never a sleep per event) and progress reporting."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Pacer", "Progress", "format_count"]

# A wake-up every 5 ms: at 20,000 events/s a burst is 100 events, at 100/s it is one event.
_BURST_SECONDS = 0.005
# At most this much schedule is caught up after a stall; beyond it the run counts as behind.
_MAX_BACKLOG_SECONDS = 0.5


def format_count(n: float) -> str:
    return f"{n:,.0f}"


class Pacer:
    """A token schedule: `acquire(rate)` waits until events are due and says how many.

    The schedule position advances by n / rate for every n events granted, so the achieved
    rate equals the asked one as long as the caller keeps up; when it does not, the schedule
    keeps at most half a second of backlog and the time it could not recover is counted.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        burst_seconds: float = _BURST_SECONDS,
        max_backlog: float = _MAX_BACKLOG_SECONDS,
    ) -> None:
        self._clock = clock
        self._burst = burst_seconds
        self._max_backlog = max_backlog
        self._pos: float | None = None
        self.behind_seconds = 0.0  # schedule time skipped because the sink could not keep up
        self.granted = 0

    def start(self) -> float:
        """Start the schedule now; returns the start time on the pacer's clock."""
        self._pos = self._clock()
        return self._pos

    def finish(self) -> None:
        """End the schedule: backlog past max_backlog that no acquire() saw is counted too (a
        run whose last send stalled past its duration ends without asking for more)."""
        if self._pos is not None:
            self.behind_seconds += max(0.0, self._clock() - self._pos - self._max_backlog)
            self._pos = None

    async def acquire(self, rate: float, limit: int | None = None) -> int:
        """Wait until at least one event is due at `rate` events/s; returns how many (<= limit).

        Events not granted because of `limit` stay due: a caller that takes small chunks from a
        slow sink builds up backlog, and what exceeds the cap is counted in behind_seconds.
        """
        if self._pos is None:
            self.start()
        assert self._pos is not None
        want = max(1.0, rate * self._burst)
        while True:
            now = self._clock()
            backlog = now - self._pos
            if backlog > self._max_backlog:
                self.behind_seconds += backlog - self._max_backlog
                self._pos = now - self._max_backlog
                backlog = self._max_backlog
            due = int(backlog * rate)
            if due >= want or (due >= 1 and backlog >= self._burst):
                n = due if limit is None else max(1, min(due, limit))
                self._pos += n / rate
                self.granted += n
                return n
            await asyncio.sleep(max((want - backlog * rate) / rate, 0.0005))


class Progress:
    """One status line on a terminal, rewritten about once a second; silent otherwise."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.interval = interval
        self._clock = clock
        self._last_t = clock()
        self._last_n = 0
        self._shown = False

    def update(self, sent: int, errors: int = 0, note: str = "") -> None:
        """Cheap to call often; prints when the interval has passed."""
        if not self.enabled:
            return
        now = self._clock()
        elapsed = now - self._last_t
        if elapsed < self.interval:
            return
        rate = (sent - self._last_n) / elapsed
        self._last_t, self._last_n = now, sent
        text = (
            f"{self.label}: {format_count(sent)} sent, {format_count(rate)}/s, "
            f"{format_count(errors)} errors{'  ' + note if note else ''}"
        )
        self.stream.write(f"\r\x1b[2K{text}")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False
