"""One measured variant: its processes run to the end; their CPU, memory, Redis, latency figures."""

from __future__ import annotations

import json
import os
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storepulse.bench.agents import by_second, latency_summary, read_raw_latencies
from storepulse.bench.checks import Check, observed
from storepulse.bench.options import BenchError
from storepulse.bench.profile import PySpy
from storepulse.bench.render import fmt_rate
from storepulse.bench.runner import Bench
from storepulse.bench.sysinfo import Child, machine_cpu, peak_rss_bytes, process_cpu_seconds
from storepulse.local.procs import ManagedProcess
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore

__all__ = ["Variant", "measure"]

# Commands the bench itself sends (setup, polling, checks): not charged to the variant.
_BENCH_COMMANDS = frozenset(
    {"info", "config", "hgetall", "smembers", "flushdb", "ping", "client", "select", "hello"}
)
_SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro")


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

    def cores_used(self) -> dict[str, float]:
        """Cores busy while the variant processed: its processes (CPU between their first and
        last event), redis-server and the broker (their CPU over the variant, join included:
        they idle then), and anything else on the machine."""
        s = self.seconds
        used = {
            "agents": self.cpu_s / s,
            "redis": self.redis_cpu_s / s,
            "broker": self.broker_cpu_s / s,
            "other": self.other_load_cores,
        }
        used["total"] = sum(used.values())
        return {k: round(v, 2) for k, v in used.items()}

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
            "cores_used": self.cores_used(),
            "exact": self.exact,
            "check": self.check,
            "per_process": self.per_process,
        }
        if self.latency is not None:
            out["latency"] = self.latency
            out["latency_by_second"] = self.latency_by_second
        return out


async def measure(
    bench: Bench,
    name: str,
    mode: str,
    settings: Settings,
    n: int,
    check: Check,
    processes: int = 1,
    latency: bool = False,
    feed: Callable[[Sequence[Child], Sequence[Path]], Awaitable[int]] | None = None,
    profile: Path | None = None,
    stages: Sequence[tuple[str, int]] | None = None,
) -> Variant:
    """Run one variant to completion and collect its figures.

    With one process the sensor knows when it saw n messages (told up front, or through a
    file once a live feed has published them); with several the bench waits until Redis
    accounts for n messages and then tells the sensors to report through a finish file.
    `stages` runs one process per (mode, messages it will see) instead, each told its own
    count: both stages of the pipeline at once, n events in, the last fact out.
    """
    if stages is not None:
        processes = len(stages)
    client = connect(settings)
    store = FunnelStore(client, settings)
    spy: PySpy | None = None
    procs: list[Child] = []
    try:
        await client.flushdb()
        await client.config_resetstat()
        vdir = bench.root / "variants" / name
        vdir.mkdir(parents=True, exist_ok=True)
        finish = vdir / "finish"
        results = [vdir / f"result-{i}.json" for i in range(processes)]
        # One process is told how many messages to expect (at once, or through a file once
        # the live feed is done); several share them, so Redis accounting decides.
        by_finish = processes > 1 and stages is None
        expect_file = vdir / "expect"
        extra = ["--latency"] if latency else []
        if by_finish:
            extra += ["--finish-file", str(finish)]
        elif feed is not None:
            extra += ["--expect-file", str(expect_file)]
        elif stages is None:
            extra += ["--expect", str(n)]
        plan = stages or [(mode, n)] * processes
        spawned = time.time()
        for i, (result, (how, count)) in enumerate(zip(results, plan, strict=True)):
            told = ["--expect", str(count)] if stages is not None else []
            procs.append(bench.spawn(f"{name}-{i}", settings, how, result, *extra, *told))
        pids = [p.pid for p in procs]
        if profile is not None:
            # Attach once the group is joined: the profile shows processing, not imports.
            marker = results[0].with_suffix(".assigned")
            await bench.wait_for(f"{name}: group join", marker.exists, procs, 120)
            spy = PySpy(pids[0], profile, vdir / "py-spy.log")
        redis_pid, broker_pid = _pid(bench.redis), _pid(bench.broker)
        before = _cpu_snapshot([*pids, redis_pid, broker_pid, os.getpid()])
        machine0 = machine_cpu()
        t0 = time.monotonic()
        timeout = bench._variant_timeout(n)
        if feed is not None:
            n = await feed(procs, [r.with_suffix(".assigned") for r in results])
            timeout = bench._variant_timeout(n)
            tmp = expect_file.with_suffix(".tmp")
            tmp.write_text(str(n))
            tmp.replace(expect_file)  # atomic: the sensor never reads half a number
        if by_finish:

            async def accounted() -> bool:
                parts = await store.partitions()
                got = observed(await store.totals(parts), settings.stages)
                return bool(got["accepted"] + got["duplicates"] + got["rejected"] >= n)

            await bench.wait_for(f"{name}: {n:,} messages in Redis", accounted, procs, timeout)
            finish.touch()
        await bench.wait_for(
            f"{name}: result", lambda: all(r.exists() for r in results), procs, timeout
        )
        elapsed = time.monotonic() - t0
        machine1 = machine_cpu()
        after = _cpu_snapshot([*pids, redis_pid, broker_pid, os.getpid()])
        rss = [peak_rss_bytes(p) or 0 for p in pids if p is not None]
        stats = await client.info("commandstats")
        if spy is not None:
            spy.stop()
            spy = None
        stopping = time.monotonic()
        await bench.stop(procs)
        stop_s = time.monotonic() - stopping
        procs = []
        bodies = [json.loads(r.read_text()) for r in results]
        ok, detail = await check(settings, bodies)
    finally:
        if spy is not None:
            spy.stop()
        await bench.stop(procs)
        await client.aclose()
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in before}
    ours = sum(delta.values())
    script_us = sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in _SCRIPT_COMMANDS)
    charged = {
        k: v
        for k, v in stats.items()
        if k.startswith("cmdstat_") and k[len("cmdstat_") :].split("|")[0] not in _BENCH_COMMANDS
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
    bench.say(
        f"{name}: {fmt_rate(variant.events_per_s)} events/s over {variant.seconds:.1f}s, "
        f"exact={variant.exact}"
    )
    return variant


def _pid(proc: ManagedProcess | None) -> int | None:
    return None if proc is None else proc.pid()


def _cpu_snapshot(pids: Sequence[int | None]) -> dict[int, float]:
    return {p: process_cpu_seconds(p) or 0.0 for p in pids if p is not None}
