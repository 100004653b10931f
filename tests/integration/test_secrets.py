"""A Redis password in STOREPULSE_REDIS_URL and the Kafka SASL password: in no output, no log."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from storepulse.local.procs import ManagedProcess, ProcessSpec, free_port, http_ready, redis_ready
from storepulse.local.stack import redis_spec
from streams.kafka import ensure_topics
from streams.settings import Settings
from tests import harness
from tests.integration.streams.exporter.test_exporter import get
from tests.integration.streams.worker.test_worker import make_trace

# Minutes long: started first, so that the run does not end waiting for it (tests/conftest.py).
pytestmark = pytest.mark.slow

# Unique per run, so a hit can only come from this test. The Redis one holds an @ and a : as
# people paste them into URLs, unencoded.
MARK = uuid.uuid4().hex
REDIS_SECRET = f"r3d@:{MARK}"
KAFKA_SECRET = f"kafka-{MARK[::-1]}"


def _wait_for(what: str, done, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f}s"
        time.sleep(0.2)


def _log(proc: ManagedProcess) -> str:
    return proc.log_file.read_text(errors="replace") if proc.log_file.exists() else ""


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*harness.STOREPULSE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=harness.PROJECT_DIR,
    )


def test_no_secret_in_any_output_or_log(broker: harness.Service, tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    topic = harness.unique("secrets")
    settings = Settings(
        kafka_bootstrap=broker.address,
        # PLAINTEXT: the password is not sent (Tansu has no SASL), but every process has it.
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr(KAFKA_SECRET),
        redis_url=f"redis://:{REDIS_SECRET}@127.0.0.1:{port}/0",
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        partitions=2,
        state_dir=state,
        worker_id=harness.unique("worker"),
        exporter_port=free_port(),
        worker_web_port=free_port(),
    )
    shown = f"redis://***@127.0.0.1:{port}/0"
    env = harness.env_for(settings)
    # In the state dir, as `storepulse stack up` would run it: `stack status` probes it.
    redis = ManagedProcess(redis_spec("127.0.0.1", port, state / "redis", REDIS_SECRET), state)
    url = settings.exporter_url
    exporter = ManagedProcess(
        ProcessSpec(
            "exporter", [*harness.STOREPULSE, "exporter"], http_ready(f"{url}/healthz"), url, env
        ),
        state,
    )
    worker = harness.Worker(settings, state)
    trace = [*make_trace(20, int(time.time() * 1000)), (b"k", b"junk")]
    outputs: dict[str, str] = {}

    def run(name: str, args: list[str], status: int, environ: dict[str, str] = env) -> str:
        result = _cli(args, environ)
        outputs[name] = text = result.stdout + result.stderr
        assert result.returncode == status, f"{name}: exit {result.returncode}\n{text}"
        return text

    try:
        asyncio.run(ensure_topics(settings))
        asyncio.run(harness.produce(broker.address, topic, trace))
        # The worker starts before its Redis: it says so, with the address redacted.
        worker.start()
        _wait_for("warning", lambda: "redis unreachable at start" in _log(worker.proc))
        redis.start(30)  # ready means AUTH with the password, then PONG
        assert not redis_ready("127.0.0.1", port)()  # without it: -NOAUTH
        harness.wait_accounted(settings, len(trace), worker=worker)
        exporter.start(30)
        status, _, body = get(f"{url}/metrics")
        assert status == 200 and b"storepulse_" in body
        kpis = run("kpis", ["kpis", "--last", "2h", "--json"], 0)
        assert '"sessions"' in kpis
        run("kpis verbose", ["-v", "kpis", "--last", "2h"], 0)
        stack = run("stack status", ["stack", "status"], 3)  # only its redis runs
        assert any(line.split()[:2] == ["redis", "ready"] for line in stack.splitlines()), stack
        worker.stop()
        # Redis goes away: the exporter answers 503 and logs a warning per read that failed.
        redis.stop()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert get(f"{url}/metrics")[0] == 503
            time.sleep(0.5)
        assert _log(exporter).count(f"cannot read Redis at {shown}") >= 3
        down = run("kpis, redis down", ["kpis"], 1)
        assert f"cannot reach Redis ({shown})" in down
        run("kpis verbose, redis down", ["-v", "kpis"], 1)
    finally:
        exporter.stop()
        worker.stop()
        redis.stop()
    bad = f"http://:{REDIS_SECRET}@127.0.0.1:{port}/0"
    scheme = run("bad scheme", ["kpis"], 2, env | {"STOREPULSE_REDIS_URL": bad})
    assert f"(got 'http://***@127.0.0.1:{port}/0')" in scheme
    bad_port = env | {"STOREPULSE_REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:x/0"}
    run("bad port", ["stack", "status"], 2, bad_port)

    # The grep: every output above, every file under the test's directory (the logs of the
    # worker, exporter and redis-server, Faust's data, the pid files, redis' AOF and config).
    for secret in (MARK, MARK[::-1]):
        for name, text in outputs.items():
            assert secret not in text, f"{name}:\n{text}"
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(files) > 5
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
    # The start lines say where Redis is, redacted.
    assert f"-> redis {shown}, dead letters to" in _log(worker.proc)
    assert f"redis unreachable at start ({shown}: " in _log(worker.proc)
    assert f"(topic {topic}, redis {shown})" in _log(exporter)
