"""Benchmark child processes, and process and machine figures read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storepulse.local.procs import stat_fields

__all__ = [
    "Child",
    "CpuSample",
    "cpu_model",
    "machine_cpu",
    "peak_rss_bytes",
    "process_cpu_seconds",
]

_TICK = os.sysconf("SC_CLK_TCK")  # 100 on Linux: /proc CPU times have 10 ms resolution


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat; None if gone."""
    fields = stat_fields(pid)  # from field 3 (state) on: utime is field 14, stime 15
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM, the peak resident set size of a process, from /proc/<pid>/status."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide CPU seconds from /proc/stat: busy (user..softirq) and stolen by the host."""

    busy: float
    steal: float


def machine_cpu() -> CpuSample:
    """Busy and steal CPU seconds of the whole machine since boot (all cores)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            busy = v[0] + v[1] + v[2] + v[5] + v[6]
            steal = v[7] if len(v) > 7 else 0
            return CpuSample(busy / _TICK, steal / _TICK)
    return CpuSample(0.0, 0.0)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


class Child:
    """One variant process in its own session (Ctrl-C reaches only the bench), logging to a file.

    Liveness and exit codes come from the Popen object itself, never from pid files.
    """

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pid = self._popen.pid

    def running(self) -> bool:
        return self._popen.poll() is None

    def exit_text(self) -> str:
        code = self._popen.poll()
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its process group (Faust shuts down cleanly), SIGKILL after timeout."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
        self._popen.wait()
