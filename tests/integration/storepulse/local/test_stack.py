"""`storepulse stack up|status|down` on free ports: idempotent, ready, and no orphans left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from storepulse.local.procs import _alive
from storepulse.monitoring.rules import render_rules
from streams.settings import Settings
from tests import harness


def stack_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap": f"127.0.0.1:{harness.free_port()}",
        "redis_url": f"redis://127.0.0.1:{harness.free_port()}/0",
        "prometheus_port": harness.free_port(),
        "alertmanager_port": harness.free_port(),
        "exporter_port": harness.free_port(),
        "worker_web_port": harness.free_port(),
        "state_dir": tmp_path / "state",
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text().split()[0]) for p in (state / "run").glob("*.pid")}


def test_stack_up_status_down(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    try:
        up = harness.run_cli(["stack", "up"], settings)
        assert "started: broker, redis, prometheus, alertmanager" in up.stdout
        running = pids(settings.state_dir)
        assert set(running) == {"broker", "redis", "prometheus", "alertmanager"}
        assert all(_alive(pid) for pid in running.values())

        again = harness.run_cli(["stack", "up"], settings)
        assert "nothing (already running)" in again.stdout
        assert pids(settings.state_dir) == running

        status = harness.run_cli(["stack", "status"], settings)
        assert status.stdout.count(" ready ") == 4, status.stdout
        assert settings.kafka_bootstrap in status.stdout
        # Prometheus got the project's rules and a scrape config for the exporter.
        config = (settings.state_dir / "prometheus" / "prometheus.yml").read_text()
        assert f"127.0.0.1:{settings.exporter_port}" in config
        # ... rendered for the stack's checkout steps, and loaded.
        (rule_file,) = json.loads(config)["rule_files"]
        assert Path(rule_file).read_text() == render_rules(settings)
        url = f"http://127.0.0.1:{settings.prometheus_port}/api/v1/rules?type=record"
        with urllib.request.urlopen(url, timeout=10) as resp:
            groups = json.load(resp)["data"]["groups"]
        steps = {
            r["labels"]["step"]
            for g in groups
            for r in g["rules"]
            if r["name"] == "storepulse:checkout_dropoff_ratio:rate15m"
        }
        assert steps == {"cart", *settings.checkout_steps}
        assert (settings.state_dir / "logs" / "redis.log").exists()
    finally:
        down = harness.run_cli(["stack", "down"], settings)
    assert "stopped: " in down.stdout
    assert not any(_alive(pid) for pid in running.values())
    assert pids(settings.state_dir) == {}
    assert "nothing (not running)" in harness.run_cli(["stack", "down"], settings).stdout
    stopped = harness.run_cli(["stack", "status"], settings, check=False)
    assert stopped.returncode == 3
    assert stopped.stdout.count(" stopped ") == 4


async def _partitions(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topics = [settings.topic, settings.dlq_topic]
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def test_stack_up_creates_the_topics_so_replay_needs_no_worker(tmp_path: Path) -> None:
    # 2 partitions, not the default 6: the stack follows STOREPULSE_PARTITIONS.
    settings = stack_settings(tmp_path, partitions=2)
    lines = [
        json.dumps({"type": "visit", "session_id": f"s-{i}", "ts": "2024-05-01T00:00:00Z"})
        for i in range(6)
    ]
    recording = tmp_path / "small.jsonl"
    recording.write_text("\n".join(lines) + "\n")
    try:
        up = harness.run_cli(["stack", "up"], settings)
        assert f"topics created: {settings.topic}, {settings.dlq_topic}" in up.stdout
        assert await _partitions(settings) == {settings.topic: 2, settings.dlq_topic: 1}
        again = harness.run_cli(["stack", "up"], settings)
        assert "topics created: nothing (already there)" in again.stdout
        # No worker ran and no --create-topics: the topic is there all the same.
        replayed = harness.run_cli(
            ["replay", "--json", "--keep-time", "--speed", "max", str(recording)], settings
        )
        summary = json.loads(replayed.stdout)
        assert summary["published"] == len(lines)
        assert summary["failed"] == 0
        messages = await harness.consume_all(settings.kafka_bootstrap, settings.topic, len(lines))
        assert sorted(value.decode() for _, _, _, value in messages) == sorted(lines)
    finally:
        harness.run_cli(["stack", "down"], settings)
    assert pids(settings.state_dir) == {}


def test_missing_binary_is_named_with_its_install_command(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    bare = tmp_path / "bin"
    bare.mkdir()
    # A PATH with python but without redis-server, prometheus and alertmanager.
    os.symlink(shutil.which("true") or "/bin/true", bare / "true")
    env = harness.env_for(settings) | {"PATH": str(bare)}
    result = subprocess.run(
        [*harness.STOREPULSE, "stack", "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "redis-server not found on PATH" in result.stderr
    assert "apt-get install -y redis-server" in result.stderr
    assert "Traceback" not in result.stderr
    assert pids(settings.state_dir) == {}


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    env = harness.env_for(stack_settings(tmp_path)) | {"STOREPULSE_PARTITIONS": "six"}
    result = subprocess.run(
        [*harness.STOREPULSE, "stack", "status"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "STOREPULSE_PARTITIONS" in result.stderr
    assert "'six'" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_subcommand_explains_itself() -> None:
    from storepulse.cli import command_names

    names = command_names()
    assert {"stack", "demo", "worker", "kpis"} <= names
    for name in sorted(names):
        result = subprocess.run(
            [*harness.STOREPULSE, name, "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, name
        assert len(result.stdout.splitlines()) > 5, name
