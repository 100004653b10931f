"""Child processes with pid files, logs and readiness probes (local stack, test harness)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "MissingBinary",
    "ProcessSpec",
    "ServiceError",
    "free_port",
    "http_ready",
    "redis_ready",
    "stat_fields",
    "tcp_ready",
]


class ServiceError(RuntimeError):
    """A service that did not start, with the tail of its log."""


class MissingBinary(ServiceError):
    """A binary the stack needs is not installed; the message says how to install it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    return probe


def _command(*parts: bytes) -> bytes:
    """One command in the Redis protocol (RESP): any bytes in its arguments, spaces too."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def redis_ready(host: str, port: int, password: str | None = None) -> Callable[[], bool]:
    """PING answered with PONG (after AUTH with a password); a redis-server still loading its
    AOF answers -LOADING, one that wants a password -NOAUTH."""
    request, expected = _command(b"PING"), b"+PONG\r\n"
    if password is not None:
        request = _command(b"AUTH", password.encode()) + request
        expected = b"+OK\r\n" + expected

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.sendall(request)
                answer = b""
                while expected.startswith(answer) and answer != expected:
                    if not (chunk := sock.recv(256)):
                        break
                    answer += chunk
                return answer.startswith(expected)
        except OSError:
            return False

    return probe


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one service: its command line, its readiness probe and where it listens."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool]
    address: str
    env: dict[str, str] = field(default_factory=dict)


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, or None if the process is gone: the command
    name before them may hold spaces and parentheses, so they start after its last ")"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not running.
    fields = stat_fields(pid)
    return not (fields and fields[0] == "Z")


def _start_time(pid: int) -> str | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22)."""
    fields = stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class ManagedProcess:
    """One service process: pid file and log under run_dir, detached in its own session."""

    def __init__(self, spec: ProcessSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.pid_file = run_dir / "run" / f"{spec.name}.pid"
        self.log_file = run_dir / "logs" / f"{spec.name}.log"
        self._child: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        """The pid of the running service, or None; a stale pid file is ignored."""
        # Our own child is its own authority: while unreaped its pid cannot be reused, and
        # /proc/PID/cmdline reads empty for a moment during its exec (a CI run once lost a
        # worker to that race).
        if self._child is not None and self._child.poll() is None:
            return self._child.pid
        try:
            pid_text, *started = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        # Guard against pid reuse (pid_max is 32768 here and a test run starts thousands of
        # processes): the process must have started when the file says and run our binary.
        if not _alive(pid) or (started and started != [_start_time(pid)]):
            return None
        if Path(self.spec.argv[0]).name[:15] not in " ".join(_cmdline(pid)):
            return None
        return pid

    def returncode(self) -> int | None:
        """The exit status of the child this object started, once it has exited."""
        return None if self._child is None else self._child.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 30.0) -> bool:
        """Start unless already running; wait until ready. True when this call started it."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return False
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._child = subprocess.Popen(
                list(self.spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.spec.env},
            )
        try:
            self.pid_file.write_text(f"{self._child.pid} {_start_time(self._child.pid)}\n")
            self.wait_ready(timeout)
        except BaseException:  # not ready, or a stop signal (Stopped) while waiting
            self.stop()
            raise
        return True

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spec.ready():
                return
            if self._child is not None and self._child.poll() is not None:
                raise ServiceError(
                    f"{self.spec.name} exited with code {self._child.returncode} while starting; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise ServiceError(
            f"{self.spec.name} not ready on {self.spec.address} after {timeout:.0f}s; "
            f"log {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after timeout. True when a process was stopped."""
        pid = self.pid()
        stopped = False
        if pid is not None:
            stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while _alive(pid) and time.monotonic() < deadline + 5:
                    self._reap()
                    time.sleep(0.05)
        self._reap()
        self._finish_child()
        self.pid_file.unlink(missing_ok=True)
        return stopped

    def kill(self) -> None:
        """SIGKILL at once, as a crash would (fault drills)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                self._reap()
                time.sleep(0.02)
        self._reap()
        self._finish_child()
        self.pid_file.unlink(missing_ok=True)

    def _reap(self) -> None:
        if self._child is not None:
            self._child.poll()

    def _finish_child(self) -> None:
        """Our own child must be gone after stop/kill, even if its pid file was lost."""
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait(10)
