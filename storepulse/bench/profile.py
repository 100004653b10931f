"""Profiling the worker with py-spy and summarising where its time goes."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ProfileSummary", "PySpy", "py_spy_binary", "summarise"]

# "function (path/to/file.py:123)": the frame format of py-spy's raw (collapsed) output.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Self time is charged to the layer whose file the sampled frame is in (first match wins).
_AREAS: tuple[tuple[str, str], ...] = (
    ("/streams/", "storepulse worker (streams/)"),
    ("/storepulse/", "storepulse bench sensor"),
    ("/faust/", "faust"),
    ("/mode/", "mode (faust's service layer)"),
    ("/aiokafka/", "aiokafka (fetch, decode)"),
    ("/pydantic", "pydantic validation"),
    ("/redis/", "redis-py client"),
    ("selectors.py", "waiting for I/O (epoll)"),
    ("asyncio/", "asyncio event loop"),
    ("json/", "json"),
)


# uvloop runs in C: py-spy charges its own time to the Python frame that entered the loop, the
# worker's `run_forever` (main thread) and mode's `_start_thread` (aiokafka's consumer thread).
_C_LOOP_FRAMES = ("Worker.execute_from_commandline (", "ServiceThread._start_thread (")
_C_LOOP = "event loop in C (uvloop: main and consumer thread)"


def py_spy_binary() -> str | None:
    """py-spy next to this interpreter (venv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


class PySpy:
    """py-spy attached to a running process; stop() makes it write the collapsed stacks."""

    def __init__(self, pid: int, output: Path, log: Path, rate: int = 250) -> None:
        binary = py_spy_binary()
        if binary is None:
            raise RuntimeError(
                "--profile needs py-spy: `.venv/bin/pip install py-spy` (dev tool, not a runtime "
                "dependency)"
            )
        self.output = output
        self._log = log.open("wb")
        # --nonblocking: sample without pausing the target, so the profile does not slow it.
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--full-filenames",
                "--output",
                str(output),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT (py-spy then writes its output), SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


@dataclass
class ProfileSummary:
    samples: int = 0
    by_area: list[tuple[str, float]] = field(default_factory=list)
    top_self: list[tuple[str, float]] = field(default_factory=list)
    worker_inclusive: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "self_time_by_area_pct": dict(self.by_area),
            "top_self_pct": dict(self.top_self),
            "worker_code_inclusive_pct": dict(self.worker_inclusive),
        }

    def render(self, what: str = "worker") -> str:
        lines = [f"profile of the {what} ({self.samples:,} samples, % of all samples):"]
        lines.append("  self time by layer:")
        lines += [f"    {pct:5.1f}%  {area}" for area, pct in self.by_area]
        lines.append("  hottest functions (self):")
        lines += [f"    {pct:5.1f}%  {name}" for name, pct in self.top_self]
        if self.worker_inclusive:
            lines.append("  worker code (streams/), inclusive:")
            lines += [f"    {pct:5.1f}%  {name}" for name, pct in self.worker_inclusive]
        return "\n".join(lines)


def _key(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame or "(unknown)", ""
    path = match["file"]
    short = "/".join(path.split("/")[-2:])
    return f"{match['func']} ({short})", path


def summarise(raw: Path, top: int = 12) -> ProfileSummary:
    """Self time by layer, the hottest functions and the worker's own inclusive times."""
    self_time: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_key(f) for f in stack.split(";")]
        name, path = frames[-1]
        self_time[name] += n
        if name.startswith(_C_LOOP_FRAMES):
            areas[_C_LOOP] += n
        else:
            areas[next((area for marker, area in _AREAS if marker in path), "other")] += n
        for worker_frame in {f for f, p in frames if "/streams/" in p}:
            inclusive[worker_frame] += n
    if total == 0:
        return ProfileSummary()

    def pct(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(limit)]

    return ProfileSummary(total, pct(areas, len(areas)), pct(self_time, top), pct(inclusive, top))
