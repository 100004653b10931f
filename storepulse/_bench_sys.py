"""Process and machine figures for the benchmark, read from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSample", "cpu_model", "machine_cpu", "peak_rss_bytes", "process_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")  # 100 on Linux: /proc CPU times have 10 ms resolution


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    fields = stat.rsplit(")", 1)[1].split()
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
