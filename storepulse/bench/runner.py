"""A bench run's private stack (broker, redis-server) and the child processes it starts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storepulse.bench.checks import Expected
from storepulse.bench.options import BenchError, BenchOptions
from storepulse.bench.sysinfo import Child
from storepulse.local.procs import ManagedProcess, free_port
from storepulse.local.stack import broker_spec, redis_spec
from streams.settings import Settings, child_environment

__all__ = ["Bench"]

# Seconds of event time the preloaded data spans (see generate_file).
EVENT_SPAN_S = 3_300

_POLL_S = 0.05


class Bench:
    """One benchmark run on a private broker and redis-server in a temporary directory."""

    def __init__(self, settings: Settings, opts: BenchOptions) -> None:
        self.opts = opts
        self.user_settings = settings
        self.run_id = uuid.uuid4().hex[:8]
        self.root = Path(tempfile.mkdtemp(prefix="storepulse-bench-", dir=opts.work_dir)).resolve()
        self.started = time.monotonic()
        self.broker: ManagedProcess | None = None
        self.redis: ManagedProcess | None = None
        self.children: list[Child] = []
        self.base: Settings | None = None
        self.redis_port = 0
        self.live_reports: dict[str, dict[str, Any]] = {}
        self.exporter_reports: dict[str, dict[str, Any]] = {}
        self.exporters: dict[str, Child] = {}  # URL -> the exporter process serving it
        self._db = 0

    # Stack ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.opts.progress is not None:
            self.opts.progress(f"[{time.monotonic() - self.started:5.0f}s] {text}")

    def start_stack(self) -> Settings:
        kafka_port, self.redis_port = free_port(), free_port()
        stack_dir = self.root / "stack"
        self.broker = ManagedProcess(broker_spec("127.0.0.1", kafka_port), stack_dir)
        # A database per variant (fresh()): the full run has 16 of them and the profiles come
        # last, so redis-server's default of 16 refused the last profile's ("DB index is out
        # of range", after 8 minutes of bench).
        self.redis = ManagedProcess(
            redis_spec("127.0.0.1", self.redis_port, stack_dir / "redis", databases=64), stack_dir
        )
        self.broker.start(30)
        self.redis.start(30)
        topic = f"bench-{self.run_id}"
        # Only the semantics and batching of the user's settings carry over; every address,
        # name and port points at the private stack (no web port: 0 disables it).
        self.base = self.user_settings.model_copy(
            update={
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "kafka_security_protocol": "PLAINTEXT",
                "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
                "redis_password": None,
                "topic": topic,
                "dlq_topic": f"{topic}.dlq",
                "partitions": self.opts.partitions or self.user_settings.partitions,
                "state_dir": self.root / "state",
                "worker_id": f"bench-{self.run_id}",
                "worker_web_port": 0,
                "customer_worker_web_port": 0,
            }
        )
        self.say(
            f"private stack: broker 127.0.0.1:{kafka_port}, redis 127.0.0.1:{self.redis_port}, "
            f"dir {self.root}"
        )
        return self.base

    def stop_all(self) -> None:
        """Stop every process this run started (variants first, then redis and the broker)."""
        for proc in reversed(self.children):
            with contextlib.suppress(Exception):
                proc.stop(timeout=20)
        self.children.clear()
        for service in (self.redis, self.broker):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop(timeout=10)

    def fresh(self, label: str, **update: Any) -> Settings:
        """Settings for one variant: its own consumer group and its own Redis database."""
        assert self.base is not None
        self._db += 1
        return self.base.model_copy(
            update={
                "worker_id": f"bench-{self.run_id}-{label}",
                "redis_url": f"redis://127.0.0.1:{self.redis_port}/{self._db}",
                **update,
            }
        )

    # Helpers -------------------------------------------------------------------------------

    async def run_cli(
        self, settings: Settings, args: Sequence[str], log: str, module: str = "storepulse.cli"
    ) -> str:
        """`storepulse <args>` (or `python -m module <args>`) as a child process; returns its
        stdout (stderr to a log file)."""
        log_path = self.root / "logs" / log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=child_environment(settings),
                # Like every child of the bench: Ctrl-C reaches only the bench, which stops it.
                start_new_session=True,
            )
            try:
                out, _ = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            command = "storepulse" if module == "storepulse.cli" else f"python -m {module}"
            raise BenchError(f"{command} {' '.join(args)} exited {proc.returncode}:\n{tail}")
        return out.decode()

    def spawn(self, name: str, settings: Settings, mode: str, result: Path, *extra: str) -> Child:
        argv = [sys.executable, "-m", "storepulse.bench.agents", mode, "--result", str(result)]
        proc = Child(
            name, [*argv, *extra], child_environment(settings), self.root / "logs" / f"{name}.log"
        )
        self.children.append(proc)
        return proc

    async def wait_for(
        self, what: str, done: Callable[[], Any], procs: Sequence[Child], limit_s: float
    ) -> None:
        """Poll done() (sync or async) until true; fail early when a process died."""
        deadline = time.monotonic() + limit_s
        while True:
            result = done()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            for proc in procs:
                if not proc.running():
                    raise BenchError(
                        f"{proc.name} {proc.exit_text()} while waiting for {what}; log "
                        f"{proc.log}:\n{proc.log_tail(40)}"
                    )
            if time.monotonic() > deadline:
                logs = "\n".join(f"{p.name}:\n{p.log_tail(20)}" for p in procs)
                raise BenchError(f"timed out after {limit_s:.0f}s waiting for {what}\n{logs}")
            await asyncio.sleep(_POLL_S)

    async def stop(self, procs: Sequence[Child]) -> None:
        for proc in procs:
            await asyncio.to_thread(proc.stop, 20)
            with contextlib.suppress(ValueError):
                self.children.remove(proc)

    def _variant_timeout(self, n: int) -> float:
        # Start-up and group join take ~10 s; allow 200 events/s: on the 2-core box shared with
        # other test suites (load 6-8) the naive agent made 700-980 events/s, under 1,000.
        return 60.0 + n / 200

    # Preload -------------------------------------------------------------------------------

    async def generate_file(self) -> tuple[Path, Expected]:
        assert self.base is not None
        opts = self.opts
        path = self.root / "events.jsonl"
        manifest = self.root / "events.manifest.json"
        # Event time: a steady stream that ended 5 minutes ago, so no event is "future",
        # spanning 55 minutes whatever the number of events (150,000: 45 lines/s of event
        # time): within the allowed lateness (1 h) of each other and longer than the session
        # timeout (30 min), so that the sessions of the first 25 minutes end during the run and
        # session end detection is measured with its closures, not only its bookkeeping.
        span_s = EVENT_SPAN_S
        start = datetime.now(UTC) - timedelta(seconds=span_s + 300)
        self.say(f"generating {opts.events:,} events (seed {opts.seed})")
        await self.run_cli(
            self.base,
            [
                "generate",
                "--out",
                str(path),
                "--events",
                str(opts.events),
                "--seed",
                str(opts.seed),
                "--rate",
                f"{opts.events / EVENT_SPAN_S:.6f}",
                "--start",
                start.isoformat().replace("+00:00", "Z"),
                "--duplicate-share",
                str(opts.duplicate_share),
                "--invalid-share",
                str(opts.invalid_share),
                "--manifest",
                str(manifest),
                "--json",
                "--progress",
                "never",
            ],
            "generate-file.log",
        )
        expected = Expected.from_manifest(json.loads(manifest.read_text()))
        if expected.lines != opts.events:
            raise BenchError(f"the generator wrote {expected.lines} lines, not {opts.events}")
        return path, expected

    async def preload(self, path: Path) -> float:
        assert self.base is not None
        topic, parts = self.base.topic, self.base.partitions
        self.say(f"preloading them into topic {topic} ({parts} partitions)")
        started = time.monotonic()
        out = await self.run_cli(
            self.base,
            [
                "replay",
                str(path),
                "--keep-time",
                "--speed",
                "max",
                "--create-topics",
                "--json",
                "--progress",
                "never",
            ],
            "preload.log",
        )
        report = json.loads(out.strip().splitlines()[-1])
        if int(report["published"]) != self.opts.events:
            raise BenchError(f"preload published {report['published']} of {self.opts.events}")
        return time.monotonic() - started
