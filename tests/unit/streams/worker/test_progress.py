"""Progress: a stall is data waiting with nothing applied; idle time never counts."""

from __future__ import annotations

from streams.worker.progress import Progress


def test_a_stall_counts_only_while_data_waits() -> None:
    clock = [100.0]
    progress = Progress(lambda: clock[0])
    clock[0] += 50
    assert progress.stalled_for(waiting=False) == 0.0  # idle for 50 s: not a stall
    clock[0] += 7
    assert progress.stalled_for(waiting=True) == 7.0
    clock[0] += 5
    assert progress.stalled_for(waiting=True) == 12.0
    progress.moved()
    clock[0] += 1
    assert progress.stalled_for(waiting=True) == 1.0
