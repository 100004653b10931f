"""Every command ends with one line naming the problem and what to do, never a traceback; the
exit statuses are those README.md documents (1 a dependency, 2 bad input)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storepulse.local.procs import ManagedProcess, ProcessSpec, free_port
from storepulse.local.stack import redis_spec
from streams.settings import Settings
from tests import harness
from tests.integration.streams.exporter.test_exporter import get


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stderr, which must be exactly one line, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_kpis_with_redis_unreachable(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(redis_url=f"redis://:pw-x1@127.0.0.1:{port}/0", state_dir=tmp_path)
    result = harness.run_cli(["kpis"], settings, check=False)
    assert result.returncode == 1
    line = _one_line(result)
    assert line.startswith(f"storepulse kpis: cannot reach Redis (redis://***@127.0.0.1:{port}/0)")
    assert "Connect" in line  # the reason, from the client
    assert line.endswith(
        "start it (`storepulse stack up` runs the local one) or fix STOREPULSE_REDIS_URL"
    )
    assert "pw-x1" not in result.stdout + result.stderr
    assert result.stdout == ""


def test_kpis_with_a_wrong_password(tmp_path: Path) -> None:
    port = free_port()
    redis = ManagedProcess(redis_spec("127.0.0.1", port, tmp_path / "redis", "right-x2"), tmp_path)
    redis.start(30)
    try:
        settings = Settings(redis_url=f"redis://:wrong-x2@127.0.0.1:{port}/0", state_dir=tmp_path)
        result = harness.run_cli(["kpis"], settings, check=False)
    finally:
        redis.stop()
    assert result.returncode == 1
    line = _one_line(result)
    assert line.startswith(
        f"storepulse kpis: Redis refused the credentials (redis://***@127.0.0.1:{port}/0)"
    )
    assert "STOREPULSE_REDIS_PASSWORD" in line and "x2" not in line


@pytest.mark.parametrize(
    "args", [["kpis"], ["worker"], ["exporter"], ["stack", "status"], ["rules"], ["demo"]]
)
def test_redis_url_with_a_bad_port(args: list[str], tmp_path: Path) -> None:
    env = harness.env_for(Settings(state_dir=tmp_path)) | {
        "STOREPULSE_REDIS_URL": "redis://:pw-x3@127.0.0.1:63a79/0"
    }
    result = subprocess.run(
        [*harness.STOREPULSE, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    line = _one_line(result)
    assert line == (
        f"storepulse {args[0]}: STOREPULSE_REDIS_URL: the port must be a number from 1 to 65535 "
        "(got 'redis://***@127.0.0.1:63a79/0'); fix it (README.md, \"Configuration\")"
    )
    assert not (tmp_path / "run").exists()  # nothing was started


def _head(args: list[str], env: dict[str, str], closed: bool) -> tuple[int, str, bytes]:
    """`storepulse ARGS | head -1`: the reader takes the first line and goes (or, closed, it
    went before the first write: EPIPE for sure). Exit status, stderr, what was read."""
    read, write = os.pipe()
    if closed:
        os.close(read)
    proc = subprocess.Popen(
        [*harness.STOREPULSE, *args], env=env, stdout=write, stderr=subprocess.PIPE
    )
    os.close(write)
    first = b""
    if not closed:
        with os.fdopen(read, "rb") as reader:
            first = reader.readline()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode(errors="replace"), first


@pytest.mark.parametrize("closed", [False, True], ids=["head", "closed"])
@pytest.mark.parametrize(
    ("args", "status", "first"),
    [
        (["--help"], 0, b"usage: storepulse"),
        (["generate", "--help"], 0, b"usage: storepulse generate"),
        (["rules"], 0, b"# "),
        (["stack", "status"], 3, b"service"),  # 3: nothing runs in this state dir
        (["kpis", "--help"], 0, b"usage: storepulse kpis"),
    ],
)
def test_output_to_a_closed_pipe_ends_quietly(
    args: list[str], status: int, first: bytes, closed: bool, tmp_path: Path
) -> None:
    env = harness.env_for(Settings(state_dir=tmp_path))
    code, err, line = _head(args, env, closed)
    assert (code, err) == (status, "")  # the status of the work, and nothing on stderr
    assert closed or line.startswith(first)


def test_stack_up_into_a_closed_pipe(tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        state_dir=tmp_path / "state",
    )
    env = harness.env_for(settings)
    try:
        code, err, _ = _head(["stack", "up"], env, closed=True)
        assert code == 0, err
        assert "Traceback" not in err and "BrokenPipe" not in err
        code, err, line = _head(["stack", "status"], env, closed=False)
        assert (code, err, line.split()) == (0, "", [b"service", b"state", b"pid", b"address"])
        code, err, line = _head(["stack", "up"], env, closed=False)  # already running
        assert (code, line) == (0, b"started: nothing (already running)\n"), err
    finally:
        harness.run_cli(["stack", "down"], settings)


def _wait_log(proc: ManagedProcess, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = proc.log_file.read_text() if proc.log_file.exists() else ""
        if text in log:
            return log
        # The child's own status, not pid(): right after exec, /proc/PID/cmdline can still be
        # empty for a moment, which pid() reads as "not our process" (seen once in CI).
        assert proc.returncode() is None, f"{proc.spec.name} exited:\n{log}"
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log of {proc.spec.name} after {timeout:.0f}s")


def test_worker_with_redis_unreachable_at_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(redis_url=f"redis://:pw-x4@127.0.0.1:{port}/0")
    worker = harness.Worker(settings, tmp_path).start()
    try:
        log = _wait_log(
            worker.proc,
            f"redis unreachable at start (redis://***@127.0.0.1:{port}/0: Error 111 connecting",
        )
        assert (
            "start it (`storepulse stack up` runs the local one) or fix STOREPULSE_REDIS_URL" in log
        )
        time.sleep(1)
        assert worker.alive()  # it waits for Redis, as the drills test
    finally:
        worker.stop()
    log = worker.proc.log_file.read_text()
    assert "Traceback" not in log and "pw-x4" not in log


def test_exporter_with_redis_unreachable_at_start(tmp_path: Path) -> None:
    port, web = free_port(), free_port()
    settings = Settings(redis_url=f"redis://:pw-x5@127.0.0.1:{port}/0", exporter_port=web)
    spec = ProcessSpec(
        "exporter", [*harness.STOREPULSE, "exporter"], lambda: True, "", harness.env_for(settings)
    )
    exporter = ManagedProcess(spec, tmp_path)
    exporter.start()
    try:
        log = _wait_log(
            exporter,
            f"storepulse exporter: cannot reach Redis (redis://***@127.0.0.1:{port}/0): Error 111",
        )
        assert "until then /metrics, /api/kpis and /healthz answer 503" in log
        # It serves all the same, and says 503 until Redis answers.
        for path in ("/healthz", "/metrics", "/api/kpis"):
            status, _, body = get(f"http://127.0.0.1:{web}{path}")
            assert status == 503, (path, body)
            assert b"redis unavailable" in body and b"pw-x5" not in body
    finally:
        exporter.stop()
    log = exporter.log_file.read_text()
    assert "Traceback" not in log and "pw-x5" not in log
