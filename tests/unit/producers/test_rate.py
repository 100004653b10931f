"""Rate control and progress: the pacer holds the asked rate and notices a slow sink."""

from __future__ import annotations

import io
import time

import pytest

from producers.rate import Pacer, Progress


@pytest.mark.parametrize("rate", [100.0, 2_000.0, 20_000.0])
async def test_pacer_holds_the_rate(rate: float) -> None:
    pacer = Pacer()
    start = pacer.start()
    sent = wakeups = 0
    while time.monotonic() - start < 1.0:
        sent += await pacer.acquire(rate)
        wakeups += 1
    elapsed = time.monotonic() - start
    assert sent / elapsed == pytest.approx(rate, rel=0.05)
    assert pacer.behind_seconds == 0
    # bursts, not a sleep per event: at most ~200 wake-ups a second
    assert wakeups <= rate * elapsed
    assert wakeups < 400


async def test_pacer_counts_time_it_could_not_keep() -> None:
    now = [100.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.start()
    now[0] += 2.0  # the sink stalled for 2 s
    # Half a second of backlog is caught up in one burst; the other 1.5 s are reported.
    assert await pacer.acquire(1_000.0) == 500
    assert pacer.behind_seconds == pytest.approx(1.5)
    now[0] += 0.01
    assert await pacer.acquire(1_000.0) == 10
    assert pacer.behind_seconds == pytest.approx(1.5)


def test_progress_prints_on_a_terminal_only() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress("generate", stream=out, enabled=True, clock=lambda: now[0])
    progress.update(10)
    assert out.getvalue() == ""
    now[0] = 1.0
    progress.update(2_000, errors=3)
    assert "generate: 2,000 sent, 2,000/s, 3 errors" in out.getvalue()
    progress.close()
    silent = io.StringIO()
    quiet = Progress("generate", stream=silent)  # a StringIO is not a TTY
    now[0] = 5.0
    quiet.update(1)
    assert silent.getvalue() == ""


async def test_a_stall_at_the_end_of_the_run_is_counted_too() -> None:
    """The run's duration passes during a slow send: no acquire() sees that backlog."""
    now = [100.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.start()
    now[0] += 0.01
    assert await pacer.acquire(1_000.0, limit=2_000) == 10
    now[0] += 1.3  # the send stalled; the duration is over
    assert pacer.behind_seconds == 0
    pacer.finish()
    assert pacer.behind_seconds == pytest.approx(1.3 - 0.5)
    finished = pacer.behind_seconds
    pacer.finish()  # once: the schedule has ended
    assert pacer.behind_seconds == finished


async def test_a_run_that_kept_up_ends_with_nothing_behind() -> None:
    now = [100.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.start()
    for _ in range(10):
        now[0] += 0.01
        await pacer.acquire(1_000.0)
    now[0] += 0.2  # less than the backlog the pacer keeps
    pacer.finish()
    assert pacer.behind_seconds == 0
