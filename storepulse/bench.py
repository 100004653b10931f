"""`storepulse bench`: the worker's throughput, latency and cost against Faust's own ceiling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from storepulse._bench_agents import by_second, latency_summary, naive_key, read_raw_latencies
from storepulse._bench_profile import PySpy, summarise
from storepulse._bench_sys import (
    Child,
    cpu_model,
    machine_cpu,
    peak_rss_bytes,
    process_cpu_seconds,
)
from storepulse._procs import ManagedProcess, free_port
from storepulse.stack import broker_spec, redis_spec
from streams.kafka import ensure_topics
from streams.settings import Settings, child_environment
from streams.store import FunnelStore, connect

__all__ = [
    "REQUIRED_KEYS",
    "TARGETS",
    "BenchError",
    "BenchOptions",
    "render_table",
    "run_bench",
]

# The keys bench-results.json always has (issue 6), on top of the detail.
REQUIRED_KEYS = (
    "cores",
    "events",
    "trivial_events_per_s",
    "naive_events_per_s",
    "worker_events_per_s",
    "ratio_vs_trivial",
    "ratio_vs_naive",
    "two_workers_events_per_s",
    "p50_latency_s",
    "p99_latency_s",
    "exact",
)

# Targets on the 2-core reference machine: (comparison, threshold).
TARGETS: dict[str, tuple[str, float]] = {
    "ratio_vs_trivial": (">=", 0.9),
    "ratio_vs_naive": (">=", 2.0),
    "p99_latency_s": ("<", 1.0),
}

LATENCY_METHOD = (
    "every event of the paced run: acknowledgement time in the worker (Faust acks a take_events "
    "batch right after the loop body, i.e. after the batch's Lua call returned) minus the Kafka "
    "record timestamp (set by the generator's producer when the event is appended, before its "
    "10 ms linger); exact nearest-rank quantiles over all events, 1 ms resolution"
)

# Commands the bench itself sends (setup, polling, checks): not charged to the variant.
_BENCH_COMMANDS = frozenset(
    {"info", "config", "hgetall", "smembers", "flushdb", "ping", "client", "select", "hello"}
)
_SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro")
_POLL_S = 0.05

# An exactness check: (settings of the variant, its sensors' results) -> (exact, detail).
Check = Callable[[Settings, list[dict[str, Any]]], Awaitable[tuple[bool, dict[str, Any]]]]


class BenchError(RuntimeError):
    """A benchmark step failed; the message names it and shows the process log."""


@dataclass
class BenchOptions:
    events: int = 150_000
    partitions: int | None = None  # None: the settings' (STOREPULSE_PARTITIONS, default 6)
    latency_rate: float = 5_000.0
    latency_seconds: float = 20.0
    seed: int = 7
    duplicate_share: float = 0.01
    invalid_share: float = 0.001
    output: Path = Path("bench-results.json")
    profile: bool = False
    profile_output: Path = Path("bench-profile.txt")
    keep_dir: bool = False
    work_dir: Path | None = None
    trivial_batch: bool = True
    latency_baseline: bool = True
    latency_scale_out: bool = True
    progress: Callable[[str], None] | None = None


@dataclass
class Expected:
    """Ground truth of a generated run, from the generator's manifest."""

    lines: int
    accepted: int
    duplicates: int
    rejected: int
    sessions: dict[str, int]
    orders: int
    revenue_units: int  # ten-thousandths, as the worker stores money

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Expected:
        t = manifest["totals"]
        return cls(
            lines=int(t["lines"]),
            accepted=int(t["events"]),
            duplicates=int(t["injected"]["duplicates"]),
            rejected=int(t["injected"]["invalid"]),
            sessions={k: int(v) for k, v in t["sessions"].items()},
            orders=int(t["orders"]),
            revenue_units=int(Decimal(t["revenue"]) * 10_000),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "sessions": self.sessions,
            "orders": self.orders,
            "revenue_units": self.revenue_units,
        }


def observed(totals: dict[str, int], stages: Sequence[str]) -> dict[str, Any]:
    """The worker's stored counters in the shape of Expected.as_dict()."""

    def total(prefix: str) -> int:
        return sum(v for k, v in totals.items() if k.startswith(prefix))

    return {
        "accepted": total("ev|"),
        "duplicates": totals.get("dup", 0),
        "rejected": total("rej|"),
        "sessions": {s: total(f"f|{s}|") for s in stages},
        "orders": total("o|"),
        "revenue_units": total("r|"),
    }


@dataclass
class Variant:
    """One measured run: its processes' sensor results and the machine figures around it."""

    name: str
    mode: str
    processes: int
    events: int
    first_in: float
    last_out: float
    cpu_s: float  # CPU of the variant's processes between first event in and last out
    process_cpu_s: float  # whole-process CPU (start-up, join, run) from /proc/<pid>/stat
    peak_rss_bytes: int
    redis_us: int  # usec of EVALSHA/EVAL (inner commands included), else of every command
    redis_commands: int  # commands run, those inside scripts included
    redis_cpu_s: float
    broker_cpu_s: float
    other_load_cores: float
    exact: bool
    check: dict[str, Any] = field(default_factory=dict)
    per_process: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, float] | None = None
    latency_by_second: list[list[float]] | None = None
    start_to_first_s: float = 0.0  # process start, imports, group join, first fetch
    stop_s: float = 0.0  # graceful shutdown (SIGTERM) of the variant's processes

    @property
    def seconds(self) -> float:
        return max(self.last_out - self.first_in, 1e-9)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def as_dict(self) -> dict[str, Any]:
        n = max(self.events, 1)
        out: dict[str, Any] = {
            "mode": self.mode,
            "processes": self.processes,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_us_per_event": round(1e6 * self.cpu_s / n, 1),
            "process_cpu_s": round(self.process_cpu_s, 2),
            "peak_rss_bytes": self.peak_rss_bytes,
            "redis_us_per_event": round(self.redis_us / n, 2),
            "redis_commands_per_event": round(self.redis_commands / n, 2),
            "redis_cpu_us_per_event": round(1e6 * self.redis_cpu_s / n, 2),
            "redis_cpu_s": round(self.redis_cpu_s, 2),
            "broker_cpu_s": round(self.broker_cpu_s, 2),
            "other_load_cores": round(self.other_load_cores, 2),
            "start_to_first_event_s": round(self.start_to_first_s, 2),
            "stop_s": round(self.stop_s, 2),
            "exact": self.exact,
            "check": self.check,
            "per_process": self.per_process,
        }
        if self.latency is not None:
            out["latency"] = self.latency
            out["latency_by_second"] = self.latency_by_second
        return out


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


class _Bench:
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
        self._db = 0

    # Stack ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.opts.progress is not None:
            self.opts.progress(f"[{time.monotonic() - self.started:5.0f}s] {text}")

    def start_stack(self) -> Settings:
        kafka_port, self.redis_port = free_port(), free_port()
        stack_dir = self.root / "stack"
        self.broker = ManagedProcess(broker_spec("127.0.0.1", kafka_port), stack_dir)
        self.redis = ManagedProcess(
            redis_spec("127.0.0.1", self.redis_port, stack_dir / "redis"), stack_dir
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

    async def run_cli(self, settings: Settings, args: Sequence[str], log: str) -> str:
        """`storepulse <args>` as a child process; returns its stdout (stderr to a log file)."""
        log_path = self.root / "logs" / log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "storepulse.cli",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=child_environment(settings),
            )
            try:
                out, _ = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"storepulse {' '.join(args)} exited {proc.returncode}:\n{tail}")
        return out.decode()

    def spawn(self, name: str, settings: Settings, mode: str, result: Path, *extra: str) -> Child:
        argv = [sys.executable, "-m", "storepulse._bench_agents", mode, "--result", str(result)]
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
        # Start-up and group join take ~10 s; allow 1,000 events/s, a tenth of the ceiling.
        return 60.0 + n / 1_000

    # Preload -------------------------------------------------------------------------------

    async def generate_file(self) -> tuple[Path, Expected]:
        assert self.base is not None
        opts = self.opts
        path = self.root / "events.jsonl"
        manifest = self.root / "events.manifest.json"
        # Event time: a steady stream that ended 5 minutes ago (2,000 lines/s of event time), so
        # no event is "future" and all are within the allowed lateness of each other.
        span_s = opts.events / 2_000
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
                "2000",
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

    # Measurement ---------------------------------------------------------------------------

    async def measure(
        self,
        name: str,
        mode: str,
        settings: Settings,
        n: int,
        check: Check,
        processes: int = 1,
        latency: bool = False,
        feed: Callable[[Sequence[Child], Sequence[Path]], Awaitable[int]] | None = None,
        profile: Path | None = None,
    ) -> Variant:
        """Run one variant to completion and collect its figures.

        With one process the sensor knows when it saw n messages (told up front, or through a
        file once a live feed has published them); with several the bench waits until Redis
        accounts for n messages and then tells the sensors to report through a finish file.
        """
        client = connect(settings)
        store = FunnelStore(client, settings)
        spy: PySpy | None = None
        procs: list[Child] = []
        try:
            await client.flushdb()
            await client.config_resetstat()
            vdir = self.root / "variants" / name
            vdir.mkdir(parents=True, exist_ok=True)
            finish = vdir / "finish"
            results = [vdir / f"result-{i}.json" for i in range(processes)]
            # One process is told how many messages to expect (at once, or through a file once
            # the live feed is done); several share them, so Redis accounting decides.
            by_finish = processes > 1
            expect_file = vdir / "expect"
            extra = ["--latency"] if latency else []
            if by_finish:
                extra += ["--finish-file", str(finish)]
            elif feed is not None:
                extra += ["--expect-file", str(expect_file)]
            else:
                extra += ["--expect", str(n)]
            spawned = time.time()
            for i, result in enumerate(results):
                procs.append(self.spawn(f"{name}-{i}", settings, mode, result, *extra))
            pids = [p.pid for p in procs]
            if profile is not None:
                # Attach once the group is joined: the profile shows processing, not imports.
                marker = results[0].with_suffix(".assigned")
                await self.wait_for(f"{name}: group join", marker.exists, procs, 120)
                spy = PySpy(pids[0], profile, vdir / "py-spy.log")
            redis_pid, broker_pid = self._pid(self.redis), self._pid(self.broker)
            before = self._cpu_snapshot([*pids, redis_pid, broker_pid, os.getpid()])
            machine0 = machine_cpu()
            t0 = time.monotonic()
            timeout = self._variant_timeout(n)
            if feed is not None:
                n = await feed(procs, [r.with_suffix(".assigned") for r in results])
                timeout = self._variant_timeout(n)
                tmp = expect_file.with_suffix(".tmp")
                tmp.write_text(str(n))
                tmp.replace(expect_file)  # atomic: the sensor never reads half a number
            if by_finish:

                async def accounted() -> bool:
                    parts = await store.partitions()
                    got = observed(await store.totals(parts), settings.stages)
                    return bool(got["accepted"] + got["duplicates"] + got["rejected"] >= n)

                await self.wait_for(f"{name}: {n:,} messages in Redis", accounted, procs, timeout)
                finish.touch()
            await self.wait_for(
                f"{name}: result", lambda: all(r.exists() for r in results), procs, timeout
            )
            elapsed = time.monotonic() - t0
            machine1 = machine_cpu()
            after = self._cpu_snapshot([*pids, redis_pid, broker_pid, os.getpid()])
            rss = [peak_rss_bytes(p) or 0 for p in pids if p is not None]
            stats = await client.info("commandstats")
            if spy is not None:
                spy.stop()
                spy = None
            stopping = time.monotonic()
            await self.stop(procs)
            stop_s = time.monotonic() - stopping
            procs = []
            bodies = [json.loads(r.read_text()) for r in results]
            ok, detail = await check(settings, bodies)
        finally:
            if spy is not None:
                spy.stop()
            await self.stop(procs)
            await client.aclose()
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in before}
        ours = sum(delta.values())
        script_us = sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in _SCRIPT_COMMANDS)
        charged = {
            k: v
            for k, v in stats.items()
            if k.startswith("cmdstat_")
            and k[len("cmdstat_") :].split("|")[0] not in _BENCH_COMMANDS
        }
        latency_figures: dict[str, Any] = {"latency": None, "latency_by_second": None}
        if latency and processes == 1:
            latency_figures = {k: bodies[0].get(k) for k in latency_figures}
        elif latency:
            # Several processes: every event's latency, from each sensor's raw arrays.
            acked, values = array("d"), array("d")
            for result in results:
                more_acked, more_values = read_raw_latencies(result)
                acked.extend(more_acked)
                values.extend(more_values)
            latency_figures = {
                "latency": latency_summary(values),
                "latency_by_second": by_second(acked, values),
            }
        firsts = [b["first_in"] for b in bodies if b["first_in"] is not None]
        lasts = [b["last_out"] for b in bodies if b["last_out"] is not None]
        if not firsts or not lasts:
            raise BenchError(f"{name}: no message reached the agent")
        variant = Variant(
            name=name,
            mode=mode,
            processes=processes,
            events=n,
            first_in=min(firsts),
            last_out=max(lasts),
            cpu_s=sum(
                (b["cpu_last"] or 0.0) - (b["cpu_first"] or 0.0) for b in bodies if b["cpu_first"]
            ),
            process_cpu_s=sum(after.get(p, 0.0) for p in pids if p is not None),
            peak_rss_bytes=max(rss, default=0),
            # commandstats also lists the commands a script ran, inside the script's own usec.
            redis_us=script_us or sum(int(v.get("usec", 0)) for v in charged.values()),
            redis_commands=sum(int(v.get("calls", 0)) for v in charged.values()),
            redis_cpu_s=delta.get(redis_pid, 0.0) if redis_pid else 0.0,
            broker_cpu_s=delta.get(broker_pid, 0.0) if broker_pid else 0.0,
            # CPU used on the machine by anything but this run, in cores: other users' load.
            other_load_cores=max(0.0, (machine1.busy - machine0.busy - ours) / max(elapsed, 1e-9)),
            start_to_first_s=min(firsts) - spawned,
            stop_s=stop_s,
            exact=ok,
            check=detail,
            per_process=[
                {
                    "count": b["count"],
                    "partitions": b["partitions"],
                    "seconds": round((b["last_out"] or 0) - (b["first_in"] or 0), 3),
                }
                for b in bodies
            ],
            latency=latency_figures["latency"],
            latency_by_second=latency_figures["latency_by_second"],
        )
        self.say(
            f"{name}: {_fmt_rate(variant.events_per_s)} events/s over {variant.seconds:.1f}s, "
            f"exact={variant.exact}"
        )
        return variant

    @staticmethod
    def _pid(proc: ManagedProcess | None) -> int | None:
        return None if proc is None else proc.pid()

    @staticmethod
    def _cpu_snapshot(pids: Sequence[int | None]) -> dict[int, float]:
        return {p: process_cpu_seconds(p) or 0.0 for p in pids if p is not None}


# Exactness checks ---------------------------------------------------------------------------


def _count_check(n: int) -> Check:
    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        seen = sum(int(b["count"]) for b in bodies)
        agent = sum(int(b.get("agent_count", 0)) for b in bodies)
        return seen == n and agent == n, {"expected": n, "acked": seen, "decoded": agent}

    return check


def _naive_check(n: int) -> Check:
    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        client = connect(settings)
        try:
            stored = 0
            for p in range(settings.partitions):
                values = await client.hgetall(naive_key(settings.topic, p))
                stored += sum(int(v) for v in values.values())
        finally:
            await client.aclose()
        return stored == n, {"expected": n, "stored": stored}

    return check


def _worker_check(expected: Expected) -> Check:
    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        client = connect(settings)
        try:
            store = FunnelStore(client, settings)
            totals = await store.totals(await store.partitions())
        finally:
            await client.aclose()
        got = observed(totals, settings.stages)
        want = expected.as_dict()
        diff = {k: {"expected": want[k], "stored": got[k]} for k in want if want[k] != got[k]}
        return not diff, {"expected": want, "mismatches": diff}

    return check


# The run ------------------------------------------------------------------------------------


async def _run(bench: _Bench) -> dict[str, Any]:
    opts = bench.opts
    bench.start_stack()
    path, expected = await bench.generate_file()
    preload_s = await bench.preload(path)
    n = opts.events
    variants: dict[str, Variant] = {}

    async def run(name: str, mode: str, check: Check, **kw: Any) -> Variant:
        variants[name] = await bench.measure(name, mode, bench.fresh(name), n, check, **kw)
        return variants[name]

    await run("trivial", "trivial", _count_check(n))
    if opts.trivial_batch:
        await run("trivial_batch", "trivial-batch", _count_check(n))
    await run("naive", "naive", _naive_check(n))
    await run("worker", "worker", _worker_check(expected))
    await run("two_workers", "worker", _worker_check(expected), processes=2)

    # Latency at a fixed offered load, fed live by the generator into a fresh topic: the
    # worker, then (as the floor the framework and broker set) the trivial take_events agent.
    variants["latency"] = await _live(bench, "latency", "worker")
    if opts.latency_baseline:
        variants["latency_trivial"] = await _live(bench, "latency_trivial", "trivial-batch")
    if opts.latency_scale_out:
        # The same load on two worker processes sharing the partitions: scaling out.
        variants["latency_two_workers"] = await _live(
            bench, "latency_two_workers", "worker", processes=2
        )

    profile: dict[str, Any] | None = None
    if opts.profile:
        raw = bench.root / "profile.txt"
        prof = await bench.measure(
            "profile", "worker", bench.fresh("profile"), n, _worker_check(expected), profile=raw
        )
        summary = summarise(raw)
        shutil.copyfile(raw, opts.profile_output)
        profile = {
            "tool": "py-spy record --nonblocking --rate 250 (attached to the worker)",
            "raw_stacks": str(opts.profile_output),
            "events_per_s_under_profiler": round(prof.events_per_s, 1),
            **summary.as_dict(),
            "text": summary.render(),
        }
    return _results(bench, variants, preload_s, profile)


async def _live(bench: _Bench, name: str, mode: str, processes: int = 1) -> Variant:
    """One variant on its own topic fed by `storepulse generate` at the offered rate."""
    assert bench.base is not None
    opts = bench.opts
    topic = f"{bench.base.topic}.{name}"
    settings = bench.fresh(name, topic=topic, dlq_topic=f"{topic}.dlq")
    manifest = bench.root / f"{name}.manifest.json"
    await ensure_topics(settings)
    fed: dict[str, Any] = {}

    async def feed(procs: Sequence[Child], markers: Sequence[Path]) -> int:
        what = f"{name}: group join and assignment"
        await bench.wait_for(what, lambda: all(m.exists() for m in markers), procs, 120)
        await asyncio.sleep(1.0)  # the first fetch after the assignment
        bench.say(
            f"{name}: offering {opts.latency_rate:,.0f} events/s for {opts.latency_seconds:g}s"
        )
        out = await bench.run_cli(
            settings,
            [
                "generate",
                "--rate",
                str(opts.latency_rate),
                "--duration",
                str(opts.latency_seconds),
                "--seed",
                str(opts.seed + 1),
                "--manifest",
                str(manifest),
                "--no-create-topics",
                "--json",
                "--progress",
                "never",
            ],
            f"generate-{name}.log",
        )
        fed["report"] = report = json.loads(out.strip().splitlines()[-1])
        fed["expected"] = Expected.from_manifest(json.loads(manifest.read_text()))
        bench.live_reports[name] = report
        return int(report["lines"])

    async def check(
        settings: Settings, bodies: list[dict[str, Any]]
    ) -> tuple[bool, dict[str, Any]]:
        if mode == "worker":
            return await _worker_check(fed["expected"])(settings, bodies)
        return await _count_check(int(fed["report"]["lines"]))(settings, bodies)

    return await bench.measure(
        name, mode, settings, 0, check, processes=processes, latency=True, feed=feed
    )


def _target(key: str, value: float) -> dict[str, Any]:
    op, threshold = TARGETS[key]
    met = value >= threshold if op == ">=" else value < threshold
    out: dict[str, Any] = {"target": f"{op} {threshold:g}", "value": round(value, 4), "met": met}
    if not met:
        gap = threshold - value if op == ">=" else value - threshold
        out["missed_by"] = round(gap, 4)
        out["missed_by_pct"] = round(100 * gap / threshold, 1)
    return out


def _results(
    bench: _Bench,
    variants: dict[str, Variant],
    preload_s: float,
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    assert bench.base is not None
    w, t, nv, two = (variants[k] for k in ("worker", "trivial", "naive", "two_workers"))
    lat = variants["latency"]
    q = lat.latency or {}
    report = bench.live_reports.get("latency", {})
    ratio_t = w.events_per_s / t.events_per_s
    ratio_n = w.events_per_s / nv.events_per_s
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "events": bench.opts.events,
        "partitions": bench.base.partitions,
        "batch_size": bench.base.batch_size,
        "batch_seconds": bench.base.batch_seconds,
        "event_loop": bench.base.event_loop,
        "trivial_events_per_s": round(t.events_per_s, 1),
        "naive_events_per_s": round(nv.events_per_s, 1),
        "worker_events_per_s": round(w.events_per_s, 1),
        "ratio_vs_trivial": round(ratio_t, 4),
        "ratio_vs_naive": round(ratio_n, 4),
        "two_workers_events_per_s": round(two.events_per_s, 1),
        "two_workers_speedup": round(two.events_per_s / w.events_per_s, 4),
        "p50_latency_s": q.get("p50"),
        "p99_latency_s": q.get("p99"),
        "p999_latency_s": q.get("p999"),
        "max_latency_s": q.get("max"),
        "latency_events": lat.events,
        "latency_offered_events_per_s": report.get("rate"),
        "latency_target_events_per_s": bench.opts.latency_rate,
        "latency_generator_kept_up": report.get("kept_up"),
        "latency_method": LATENCY_METHOD,
        "latency_by_second": lat.latency_by_second,
        "worker_cpu_s": round(w.cpu_s, 3),
        "worker_cpu_us_per_event": round(1e6 * w.cpu_s / w.events, 1),
        "trivial_cpu_us_per_event": round(1e6 * t.cpu_s / t.events, 1),
        "worker_process_cpu_s": round(w.process_cpu_s, 2),
        "worker_peak_rss_bytes": w.peak_rss_bytes,
        "worker_peak_rss_mb": round(w.peak_rss_bytes / 2**20, 1),
        "redis_us_per_event": round(w.redis_us / w.events, 2),
        "redis_commands_per_event": round(w.redis_commands / w.events, 2),
        "redis_cpu_us_per_event": round(1e6 * w.redis_cpu_s / w.events, 2),
        "redis_cpu_s": round(w.redis_cpu_s, 2),
        "exact": all(v.exact for v in variants.values()),
        "other_load_cores_max": round(max(v.other_load_cores for v in variants.values()), 2),
        "preload_seconds": round(preload_s, 1),
        "bench_seconds": round(time.monotonic() - bench.started, 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if "latency_trivial" in variants:
        base_q = variants["latency_trivial"].latency or {}
        results["trivial_p50_latency_s"] = base_q.get("p50")
        results["trivial_p99_latency_s"] = base_q.get("p99")
    if "latency_two_workers" in variants:
        two_q = variants["latency_two_workers"].latency or {}
        results["two_workers_p50_latency_s"] = two_q.get("p50")
        results["two_workers_p99_latency_s"] = two_q.get("p99")
    if "trivial_batch" in variants:
        tb = variants["trivial_batch"]
        results["trivial_batch_events_per_s"] = round(tb.events_per_s, 1)
        results["ratio_vs_trivial_batch"] = round(w.events_per_s / tb.events_per_s, 4)
    results["targets"] = {
        "ratio_vs_trivial": _target("ratio_vs_trivial", ratio_t),
        "ratio_vs_naive": _target("ratio_vs_naive", ratio_n),
        "p99_latency_s": _target("p99_latency_s", float(q.get("p99") or 0.0)),
        "exact": {"target": "true", "value": results["exact"], "met": results["exact"]},
    }
    results["variants"] = {k: v.as_dict() for k, v in variants.items()}
    results["profile"] = profile
    return results


_LABELS = {
    "trivial": "trivial agent (async for, json)",
    "trivial_batch": "trivial agent (take_events)",
    "naive": "naive (1 awaited HINCRBY/event)",
    "worker": "worker (exact)",
    "two_workers": "2 workers (exact)",
    "latency": "worker at fixed load",
    "latency_trivial": "trivial take_events at fixed load",
    "latency_two_workers": "2 workers at fixed load",
    "profile": "worker under py-spy",
}


def render_table(results: dict[str, Any]) -> str:
    """The human-readable summary printed by `storepulse bench`."""
    lines = [
        f"storepulse bench: {results['events']:,} preloaded events, {results['partitions']} "
        f"partitions, {results['cores']} cores ({results['cpu_model']}), batch "
        f"{results['batch_size']:,} / {results['batch_seconds'] * 1000:g} ms, "
        f"{results.get('event_loop', 'asyncio')} event loop",
        "",
        f"{'variant':<34}{'events/s':>10}{'seconds':>9}{'CPU µs/ev':>11}"
        f"{'peak RSS':>10}{'Redis µs/ev':>13}{'exact':>7}",
    ]
    for name, v in results["variants"].items():
        rss = f"{v['peak_rss_bytes'] / 2**20:.0f} MB"
        redis_us = f"{v['redis_us_per_event']:.1f}" if v["redis_us_per_event"] else "-"
        lines.append(
            f"{_LABELS.get(name, name):<34}{_fmt_rate(v['events_per_s']):>10}"
            f"{v['seconds']:>9.2f}{v['cpu_us_per_event']:>11.1f}{rss:>10}{redis_us:>13}"
            f"{'yes' if v['exact'] else 'NO':>7}"
        )
    lines.append("")
    line = f"worker / trivial          {results['ratio_vs_trivial']:.2f}"
    if "ratio_vs_trivial_batch" in results:
        line += f"   (worker / trivial take_events {results['ratio_vs_trivial_batch']:.2f})"
    lines.append(line)
    lines.append(f"worker / naive            {results['ratio_vs_naive']:.2f}")
    lines.append(f"2 workers / 1 worker      {results['two_workers_speedup']:.2f}")
    lines.append(
        f"latency at {results['latency_offered_events_per_s'] or 0:,.0f} events/s offered "
        f"({results['latency_events']:,} events): p50 {results['p50_latency_s'] or 0:.3f} s, "
        f"p99 {results['p99_latency_s'] or 0:.3f} s, p99.9 {results['p999_latency_s'] or 0:.3f} s, "
        f"max {results['max_latency_s'] or 0:.3f} s"
    )
    if results.get("two_workers_p99_latency_s") is not None:
        lines.append(
            "  two worker processes at the same load: "
            f"p50 {results['two_workers_p50_latency_s']:.3f} s, "
            f"p99 {results['two_workers_p99_latency_s']:.3f} s"
        )
    if results.get("trivial_p99_latency_s") is not None:
        lines.append(
            "  floor set by Faust and the broker (trivial take_events agent, same load): "
            f"p50 {results['trivial_p50_latency_s']:.3f} s, "
            f"p99 {results['trivial_p99_latency_s']:.3f} s"
        )
    lines.append(
        f"worker cost: {results['worker_cpu_s']:.1f} CPU s for {results['events']:,} events "
        f"({results['worker_cpu_us_per_event']:.0f} µs/event; trivial agent "
        f"{results['trivial_cpu_us_per_event']:.0f}), peak RSS {results['worker_peak_rss_mb']:.0f} "
        f"MB, Redis script time {results['redis_us_per_event']:.1f} µs/event "
        f"({results['redis_commands_per_event']:.1f} commands/event; redis-server CPU "
        f"{results['redis_cpu_us_per_event']:.1f} µs/event)"
    )
    if results["other_load_cores_max"] >= 0.2:
        lines.append(
            f"warning: other processes used up to {results['other_load_cores_max']:.1f} cores "
            "during the run; rates are lower than on an idle machine"
        )
    lines.append("")
    lines.append("targets:")
    for key, t in results["targets"].items():
        status = "met" if t["met"] else "MISSED"
        miss = ""
        if not t["met"] and "missed_by" in t:
            miss = f" by {t['missed_by']:g} ({t['missed_by_pct']:g}%)"
        lines.append(f"  {key:<18} {t['target']:<8} value {t['value']!s:<10} {status}{miss}")
    if results.get("profile"):
        lines.append("")
        lines.append(results["profile"]["text"])
    lines.append(f"\nbench took {results['bench_seconds']:.0f} s")
    return "\n".join(lines)


def run_bench(settings: Settings, opts: BenchOptions) -> dict[str, Any]:
    """Run the whole benchmark on a private stack; writes opts.output and returns the results."""
    bench = _Bench(settings, opts)
    try:
        results = asyncio.run(_run(bench))
    finally:
        bench.stop_all()
        if opts.keep_dir:
            bench.say(f"kept {bench.root}")
        else:
            shutil.rmtree(bench.root, ignore_errors=True)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(results, indent=2) + "\n")
    return results
