"""The exporter under load: keep-alive HTTP clients on a real exporter while the worker runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from storepulse.bench.options import BenchError
from storepulse.bench.runner import Bench
from storepulse.bench.sysinfo import Child, process_cpu_seconds
from storepulse.local.procs import free_port
from streams.settings import Settings, child_environment
from streams.store.client import connect
from streams.store.funnel import FunnelStore

__all__ = [
    "CLIENT_WARM_UP_S",
    "CONTROL_S",
    "EXPORTER_PATHS",
    "LAG_SAMPLE_S",
    "WARM_S",
    "running_exporter",
    "serve_under_load",
]

# What Prometheus scrapes and what the board polls, under the names of the results.
EXPORTER_PATHS = {"metrics": "/metrics", "kpis": "/api/kpis?window=15m"}
# The feed runs this long before the clients start: the windows hold data, and the worker's
# lag in the last CONTROL_S of it is the control the lag under load is compared with.
WARM_S = 8.0
CONTROL_S = 5.0  # from 3 s into the feed: the generator's start (~1.5 s) is left out
# The clients' own warm-up, unmeasured (connections open, the exporter's answers prepared).
CLIENT_WARM_UP_S = 1.0
# How often the worker's consumer lag is read from Redis while the clients run.
LAG_SAMPLE_S = 0.25


async def _lag(store: FunnelStore) -> int:
    """Messages fetched but not applied yet, summed over partitions (as the exporter exports)."""
    metas = await store.metas(await store.partitions())
    return sum(max(0, m.highwater - (m.offset + 1)) for m in metas if m.highwater >= 0)


async def _ready(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session,
            session.get(url + "/healthz") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@contextlib.asynccontextmanager
async def running_exporter(bench: Bench, settings: Settings) -> AsyncIterator[str]:
    """`storepulse exporter` on the variant's Redis, ready; yields its URL, stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exporter = Child(
        "exporter",
        [sys.executable, "-m", "storepulse.cli", "exporter", "--port", str(port)],
        child_environment(settings),
        bench.root / "logs" / "exporter.log",
    )
    bench.children.append(exporter)  # stop_all stops it whatever happens
    bench.exporters[url] = exporter
    try:
        await bench.wait_for("exporter: /healthz", lambda: _ready(url), [exporter], 60)
        yield url
    finally:
        del bench.exporters[url]
        await bench.stop([exporter])


async def serve_under_load(bench: Bench, settings: Settings, url: str) -> dict[str, Any]:
    """Drive the exporter at url with storepulse.bench.load, the worker's feed running.

    Returns the clients' figures, the exporter's CPU per request and the worker's consumer
    lag sampled meanwhile.
    """
    opts = bench.opts
    exporter = bench.exporters[url]
    client = connect(settings)
    store = FunnelStore(client, settings)
    lags: list[tuple[float, int]] = []  # (monotonic time, lag)
    sampling = True

    async def sample() -> None:
        while sampling:
            lags.append((time.monotonic(), await _lag(store)))
            await asyncio.sleep(LAG_SAMPLE_S)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.sleep(WARM_S)
        pace = (
            f"each one request every {opts.exporter_interval:g}s"
            if opts.exporter_interval
            else "each as fast as answered"
        )
        clients = opts.exporter_clients
        bench.say(f"exporter: {clients} clients for {opts.exporter_seconds:g}s, {pace}")
        cpu0, wall0 = process_cpu_seconds(exporter.pid) or 0.0, time.monotonic()
        out = await bench.run_cli(
            settings,
            [
                url,
                "--clients",
                str(opts.exporter_clients),
                "--seconds",
                str(opts.exporter_seconds),
                "--interval",
                str(opts.exporter_interval),
                "--warm-up",
                str(CLIENT_WARM_UP_S),
                *(arg for path in EXPORTER_PATHS.values() for arg in ("--path", path)),
            ],
            "load.log",
            module="storepulse.bench.load",
        )
        cpu1, wall1 = process_cpu_seconds(exporter.pid) or 0.0, time.monotonic()
        if not exporter.running():
            raise BenchError(f"the exporter {exporter.exit_text()}:\n{exporter.log_tail(40)}")
    finally:
        sampling = False
        await asyncio.gather(sampler, return_exceptions=True)
        await client.aclose()
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    requests = max(1, int(figures["requests"]) + int(figures["errors"]))
    # The clients' warm-up ran on the exporter too: its CPU is charged per request of both.
    warm_share = (CLIENT_WARM_UP_S + opts.exporter_seconds) / opts.exporter_seconds
    figures["exporter_cpu_s"] = round(cpu1 - cpu0, 2)
    figures["exporter_cpu_us_per_request"] = round(1e6 * (cpu1 - cpu0) / (requests * warm_share), 1)
    figures["exporter_cpu_cores"] = round((cpu1 - cpu0) / max(wall1 - wall0, 1e-9), 2)
    figures["client_cpu_cores"] = round(
        float(figures["client_cpu_s"]) / max(wall1 - wall0, 1e-9), 2
    )
    # Under load: from the clients' warm-up to their end; the control: the seconds before.
    during = [lag for at, lag in lags if wall0 <= at <= wall1]
    before = [lag for at, lag in lags if wall0 - CONTROL_S <= at < wall0]
    figures["worker_lag_messages"] = {
        "samples": len(during),
        "max": max(during, default=0),
        "mean": round(sum(during) / len(during), 1) if during else 0.0,
        "before_max": max(before, default=0),
        "before_mean": round(sum(before) / len(before), 1) if before else 0.0,
    }
    bench.say(
        f"exporter: {figures['requests_per_s']:,.0f} requests/s, p99 {figures['p99_s']:.3f}s, "
        f"max {figures['max_s']:.3f}s, {figures['errors']} errors; worker lag at most "
        f"{figures['worker_lag_messages']['max']:,} messages"
    )
    return figures
