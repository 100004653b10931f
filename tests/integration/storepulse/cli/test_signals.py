"""Each long-running command stops what it started on SIGINT, SIGTERM and SIGHUP, also when
nobody reads its stdout and stderr; the exit statuses are those README.md documents."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from storepulse.local.procs import free_port, http_ready
from streams.kafka import ensure_topics
from streams.settings import Settings
from tests import harness

# Exit statuses after a stop by each signal (README.md, "Stopping and exit statuses").
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 0, signal.SIGHUP: 0}
# Each signal with stdout and stderr in files, then Ctrl-C with both on a pipe whose reader has
# gone (`storepulse demo | tee demo.log`, Ctrl-C: tee exits first).
STOPS = [
    pytest.param(signal.SIGINT, False, id="SIGINT"),
    pytest.param(signal.SIGTERM, False, id="SIGTERM"),
    pytest.param(signal.SIGHUP, False, id="SIGHUP"),
    pytest.param(signal.SIGINT, True, id="closed-stdout"),
]
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the state on (field 3), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(parents: set[int]) -> set[int]:
    """Processes whose parent is one of parents (this kernel has no /proc/*/task/*/children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) in parents:
                found.add(int(entry.name))
    return found


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = {pid}
    while todo:
        todo = _children(todo) - found
        found |= todo
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


class Command:
    """`storepulse ARGS` as a child of the test, every process it starts recorded as it runs."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        stdout: int | IO[Any],
        stderr: int | IO[Any],
        wrapper: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        self.ours = _children({os.getpid()})  # the session's own services, started before
        self.proc = subprocess.Popen(
            [*wrapper, *harness.STOREPULSE, *args],
            env=env,
            cwd=harness.PROJECT_DIR,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        # pid -> (start time, command line): a pid reused later is not mistaken for ours.
        self.seen: dict[int, tuple[str, str]] = {}
        self.reader: IO[bytes] | None = None

    def watch(self) -> None:
        for pid in _descendants(self.proc.pid):
            fields = _stat(pid)
            if fields is None:
                continue
            known = self.seen.get(pid)
            if known is None or known[0] == fields[19]:
                # The same process (same start time): its command line may have changed since
                # it was first seen between fork and exec, when it was still its parent's.
                self.seen[pid] = (fields[19], _cmdline(pid) or (known[1] if known else ""))

    def started(self, needle: str) -> bool:
        return any(needle in cmd for _, cmd in self.seen.values())

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.watch()
            assert self.proc.poll() is None, f"{self.args} exited {self.proc.returncode}: {what}"
            assert time.monotonic() < deadline, f"{self.args}: no {what} after {timeout:.0f}s"
            time.sleep(0.2)
        self.watch()

    def stop(self, sig: signal.Signals, timeout: float = 90, send: bool = True) -> int:
        """Send sig to the command alone (not its group), wait for its exit status."""
        self.watch()
        if send:
            self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.watch()  # children started while it stops count too
            assert time.monotonic() < deadline, (
                f"{self.args} still running {timeout:.0f}s after {sig.name}"
            )
            time.sleep(0.1)
        return self.proc.returncode

    def left_running(self) -> list[str]:
        """What it started that still runs: recorded descendants, and orphans handed to us."""
        alive = []
        for pid, (start, cmd) in self.seen.items():
            fields = _stat(pid)
            if fields is not None and fields[19] == start and fields[0] != "Z":
                alive.append(f"{pid} {cmd}")
        for pid in _children({os.getpid()}) - self.ours - {self.proc.pid}:
            fields = _stat(pid)
            if fields is not None and fields[0] != "Z":
                alive.append(f"{pid} {_cmdline(pid)} (orphan)")
        return alive

    def kill_everything(self) -> None:
        """After the test, whatever happened: no process of this command survives it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        handed = _children({os.getpid()}) - self.ours - {self.proc.pid}
        for pid in {*self.seen, *handed}:
            fields = _stat(pid)
            if fields is not None and (pid not in self.seen or fields[19] == self.seen[pid][0]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in handed:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # orphans handed to us: reaped, no zombie left


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Orphans of a command become children of this process, not of init, so they are found."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def run(subreaper: None, tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """Start a command; its stdout and stderr go to NAME.out and NAME.err in tmp_path, or with
    output="closed" to a pipe nobody reads, or with "pipe" to command.reader for the test."""
    commands: list[Command] = []
    files: list[IO[bytes]] = []

    def start(args: list[str], settings: Settings, output: str = "files") -> Command:
        env = harness.env_for(settings)
        if output == "files":
            out = (tmp_path / f"{args[0]}.out").open("wb")
            err = (tmp_path / f"{args[0]}.err").open("wb")
            files.extend((out, err))
            command = Command(args, env, out, err)
        else:
            read, write = os.pipe()
            if output == "closed":
                os.close(read)  # every write fails with EPIPE, from the first line on
            command = Command(args, env, write, write)
            os.close(write)
            if output == "pipe":
                command.reader = os.fdopen(read, "rb", buffering=0)
                files.append(command.reader)
        commands.append(command)
        return command

    try:
        yield start
    finally:
        for command in commands:
            command.kill_everything()
        for fh in files:
            fh.close()


def _output(tmp_path: Path, name: str) -> str:
    return "".join(
        (tmp_path / f"{name}.{kind}").read_text(errors="replace")
        for kind in ("out", "err")
        if (tmp_path / f"{name}.{kind}").exists()
    )


def _output_mode(closed: bool) -> str:
    return "closed" if closed else "files"


def _published(settings: Settings) -> bool:
    return bool(asyncio.run(harness.consume_all(settings.kafka_bootstrap, settings.topic, 1, 1)))


def _check_stop(command: Command, sig: signal.Signals, tmp_path: Path) -> None:
    status = command.stop(sig)
    log = _output(tmp_path, command.args[0])
    assert status == STATUS[sig], f"exit status {status} after {sig.name}\n{log[-3000:]}"
    assert command.left_running() == []
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize(("sig", "closed"), STOPS)
def test_worker(run, make_settings, tmp_path: Path, sig: signal.Signals, closed: bool) -> None:
    settings = make_settings()
    asyncio.run(ensure_topics(settings))
    asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, [(b"k", b"junk")]))
    command = run(["worker"], settings, _output_mode(closed))
    # Really running: it joined the group and counted the message (a reject) in Redis.
    command.wait_until("message counted", lambda: harness.accounted(settings)["accounted"] >= 1)
    _check_stop(command, sig, tmp_path)


@pytest.mark.parametrize(("sig", "closed"), STOPS)
def test_exporter(run, make_settings, tmp_path: Path, sig: signal.Signals, closed: bool) -> None:
    settings = make_settings()
    port = free_port()
    command = run(["exporter", "--port", str(port)], settings, _output_mode(closed))
    command.wait_until("/healthz", http_ready(f"http://127.0.0.1:{port}/healthz"))
    _check_stop(command, sig, tmp_path)
    if not closed:
        assert "storepulse exporter: stopped" in _output(tmp_path, "exporter")


@pytest.mark.parametrize(("sig", "closed"), STOPS)
def test_generate(run, make_settings, tmp_path: Path, sig: signal.Signals, closed: bool) -> None:
    settings = make_settings()
    asyncio.run(ensure_topics(settings))
    # Paced without an end, a progress line on stderr every second even off a terminal.
    args = ["generate", "--rate", "200", "--warmup", "0", "--progress", "always", "--json"]
    command = run(args, settings, _output_mode(closed))
    command.wait_until("events in the topic", lambda: _published(settings))
    _check_stop(command, sig, tmp_path)
    if not closed:
        # The summary of what was sent, after the stop.
        assert '"interrupted": true' in (tmp_path / "generate.out").read_text()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, broker: harness.Service) -> Path:
    """20,000 lines: at --rate 200 a replay of them lasts far longer than any test here."""
    path = tmp_path_factory.mktemp("recording") / "day.jsonl"
    settings = Settings(kafka_bootstrap=broker.address)
    harness.run_cli(
        [
            "generate",
            "--out",
            str(path),
            "--events",
            "20000",
            "--seed",
            "9",
            "--start",
            "2024-05-01T00:00:00Z",
        ],
        settings,
    )
    return path


@pytest.mark.parametrize(("sig", "closed"), STOPS)
def test_replay(
    run, make_settings, recording: Path, tmp_path: Path, sig: signal.Signals, closed: bool
) -> None:
    settings = make_settings()
    asyncio.run(ensure_topics(settings))
    args = ["replay", "--rate", "200", "--progress", "always", "--json", str(recording)]
    command = run(args, settings, _output_mode(closed))
    command.wait_until("events in the topic", lambda: _published(settings))
    _check_stop(command, sig, tmp_path)
    if not closed:
        assert '"interrupted": true' in (tmp_path / "replay.out").read_text()


def _demo_settings(tmp_path: Path) -> Settings:
    """A demo of its own: every service on a free port, its own state directory."""
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        exporter_port=free_port(),
        worker_web_port=free_port(),
        state_dir=tmp_path / "state",
    )


DEMO_SERVICES = {"broker", "redis", "prometheus", "alertmanager"}
DEMO_CHILDREN = {"demo-worker", "demo-customers-worker", "demo-exporter", "demo-generator"}


def _pid_files(settings: Settings) -> set[str]:
    return {p.stem for p in (settings.state_dir / "run").glob("*.pid")}


@pytest.mark.parametrize(("sig", "closed"), STOPS)
def test_demo(run, tmp_path: Path, sig: signal.Signals, closed: bool) -> None:
    settings = _demo_settings(tmp_path)
    command = run(
        ["demo", "--rate", "50", "--scenario", "steady"], settings, "pipe" if closed else "files"
    )
    if closed:
        # As in the issue: the reader goes away while the demo runs, then Ctrl-C.
        assert command.reader is not None
        seen = b""
        while b"storepulse demo is running" not in seen:
            chunk = command.reader.read(65536)
            assert chunk, f"the demo ended before it ran:\n{seen.decode(errors='replace')}"
            seen += chunk
            command.watch()
        command.reader.close()
    else:
        command.wait_until(
            "'is running'", lambda: "storepulse demo is running" in _output(tmp_path, "demo"), 120
        )
    assert _pid_files(settings) == DEMO_SERVICES | DEMO_CHILDREN
    command.watch()
    for name in (
        "broker --listener-url",
        "redis-server",
        "prometheus",
        "alertmanager",
        "cli worker",
    ):
        assert command.started(name), (name, command.seen)
    _check_stop(command, sig, tmp_path)
    assert _pid_files(settings) == set()
    if not closed:
        assert "storepulse demo: stopped" in _output(tmp_path, "demo")


# A session of its own with the terminal as its controlling terminal, then exec: the command
# keeps the pid, and closing the terminal's master side sends it SIGHUP, as closing a terminal
# window or dropping an ssh connection does.
ON_TERMINAL = """
import os, sys
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)  # a session leader opening a tty makes it its terminal
for std in (0, 1, 2):
    os.dup2(fd, std)
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_demo_stops_when_its_terminal_closes(subreaper: None, tmp_path: Path) -> None:
    settings = _demo_settings(tmp_path)
    master, slave = pty.openpty()
    wrapper = (sys.executable, "-c", ON_TERMINAL, os.ttyname(slave))
    args = ["demo", "--rate", "50", "--scenario", "steady"]
    command = Command(
        args, harness.env_for(settings), subprocess.DEVNULL, subprocess.DEVNULL, wrapper
    )
    try:
        seen = b""
        while b"storepulse demo is running" not in seen:
            # The test keeps its slave side open meanwhile: reads never fail with EIO.
            chunk = os.read(master, 65536)
            assert command.proc.poll() is None, seen.decode(errors="replace")
            seen += chunk
            command.watch()
        assert _pid_files(settings) == DEMO_SERVICES | DEMO_CHILDREN
        command.watch()
        os.close(slave)
        slave = -1
        os.close(master)  # the terminal hangs up: SIGHUP, and every later write fails (EIO)
        master = -1
        status = command.stop(signal.SIGHUP, send=False)
        assert status == STATUS[signal.SIGHUP]
        assert command.left_running() == []
        assert _pid_files(settings) == set()
    finally:
        for fd in (slave, master):
            if fd >= 0:
                os.close(fd)
        command.kill_everything()


BENCH_TINY = [
    "bench",
    "--events",
    "3000",
    "--latency-seconds",
    "3",
    "--latency-rate",
    "1000",
    "--no-trivial-batch",
    "--no-latency-baseline",
    "--no-latency-scale-out",
]


@pytest.mark.parametrize(("sig", "closed"), STOPS)
def test_bench(run, tmp_path: Path, sig: signal.Signals, closed: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    output = tmp_path / "bench.json"
    args = [*BENCH_TINY, "--work-dir", str(work), "--output", str(output)]
    command = run(args, Settings(state_dir=tmp_path / "state"), _output_mode(closed))
    # Mid-run: its private broker and redis-server up, a measured agent running.
    command.wait_until("an agent", lambda: command.started("storepulse.bench.agents"), 120)
    assert command.started("redis-server")
    assert command.started("broker --listener-url")
    _check_stop(command, sig, tmp_path)
    assert not output.exists()
    assert list(work.iterdir()) == []  # its temporary directory is gone too
    if not closed:
        assert "no results written" in _output(tmp_path, "bench")


def test_generate_to_a_closed_stdout_fails_cleanly(tmp_path: Path) -> None:
    """`storepulse generate --out - | head`: the data has no reader any more, a clear exit 1."""
    read, write = os.pipe()
    os.close(read)
    args = ["generate", "--out", "-", "--events", "100000", "--start", "2024-05-01T00:00:00Z"]
    with (tmp_path / "err").open("wb") as err:
        result = subprocess.run(
            [*harness.STOREPULSE, *args],
            env=harness.env_for(Settings(state_dir=tmp_path)),
            stdout=write,
            stderr=err,
            timeout=60,
        )
    os.close(write)
    assert result.returncode == 1
    text = (tmp_path / "err").read_text()
    assert "storepulse generate: stdout closed by its reader" in text
    assert "Traceback" not in text
