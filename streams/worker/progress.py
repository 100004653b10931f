"""Whether the worker is moving: the time of its last applied batch, and data waiting for it."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """A stall is data waiting on an assigned partition and no batch applied since.

    Idle (nothing to read) is never a stall: the clock restarts, so that a burst after an hour
    of silence does not look an hour late.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def moved(self) -> None:
        """A batch was applied."""
        self._last = self._clock()

    def stalled_for(self, waiting: bool) -> float:
        """Seconds without progress while data waits (0 when nothing waits)."""
        now = self._clock()
        if not waiting:
            self._last = now
            return 0.0
        return now - self._last
