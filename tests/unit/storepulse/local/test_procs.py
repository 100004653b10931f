"""ManagedProcess's pid file: a reused pid is never taken for the service that wrote it."""

from __future__ import annotations

import sys
from pathlib import Path

from storepulse.local.procs import ManagedProcess, ProcessSpec


def sleeper(name: str) -> ProcessSpec:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    return ProcessSpec(name, argv, lambda: True, "")


def test_the_pid_file_names_the_process_and_when_it_started(tmp_path: Path) -> None:
    proc = ManagedProcess(sleeper("s"), tmp_path)
    assert proc.start(timeout=5)
    try:
        pid = proc.pid()
        assert pid is not None
        # Another invocation (no child of its own) finds it from the file alone.
        reader = ManagedProcess(sleeper("s"), tmp_path)
        assert reader.pid() == pid
        pid_text, started = proc.pid_file.read_text().split()
        assert int(pid_text) == pid and started.isdigit()
        # The same pid with another start time is a different process: a reused pid, which
        # `stop` must not signal (our pytest process runs python too, so the name alone passes).
        proc.pid_file.write_text(f"{pid} {int(started) + 1}\n")
        assert reader.pid() is None
        assert not reader.stop()
        assert proc.pid() == pid, "the child that started it still knows it"
    finally:
        assert proc.stop()
    assert proc.pid() is None and proc.returncode() is not None


def test_a_pid_file_of_an_older_version_is_still_read(tmp_path: Path) -> None:
    proc = ManagedProcess(sleeper("old"), tmp_path)
    proc.start(timeout=5)
    try:
        pid = proc.pid()
        proc.pid_file.write_text(f"{pid}\n")
        assert ManagedProcess(sleeper("old"), tmp_path).pid() == pid
    finally:
        proc.stop()
