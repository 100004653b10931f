"""The bench's HTTP load driver: keep-alive clients against an exporter, every request timed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# Not from storepulse.bench.agents: importing Faust costs ~1 s of CPU, taken from the worker.
from storepulse.bench.quantiles import quantile

__all__ = ["DEFAULT_PATHS", "PathLoad", "drive", "main"]

# What Prometheus and the board ask for.
DEFAULT_PATHS = ("/metrics", "/api/kpis?window=15m")
# A request slower than this counts as an error (Prometheus' default scrape timeout is 10 s).
REQUEST_TIMEOUT_S = 5.0


@dataclass
class PathLoad:
    """Every request to one path: its latency (s), or the error it ended with."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered),
            "errors": self.errors,
            "requests_per_s": round(len(ordered) / seconds, 1),
            "p50_s": round(quantile(ordered, 0.50), 4),
            "p99_s": round(quantile(ordered, 0.99), 4),
            "max_s": round(ordered[-1], 4) if ordered else 0.0,
            "statuses": dict(sorted(self.statuses.items())),
        }


async def drive(
    base_url: str,
    paths: Sequence[str] = DEFAULT_PATHS,
    clients: int = 50,
    seconds: float = 15.0,
    interval: float = 0.0,
    warm_up: float = 1.0,
) -> dict[str, Any]:
    """`clients` concurrent clients, each on its own keep-alive connection, for `seconds`.

    The first `warm_up` seconds run the same load unmeasured: connections open, and the
    exporter learns which answers to prepare (as it has long done in production).

    Each client asks for the paths in turn. With interval 0 it sends its next request as soon
    as the previous answer is read (closed loop: the server's capacity); with an interval it
    sends one every `interval` seconds, and a request's latency counts from when it was due,
    so a server that falls behind is not hidden by clients that wait for it. Only a 200 with
    its whole body counts as a success.
    """
    cpu0 = time.process_time()
    loads = {path: PathLoad() for path in paths}
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warming = loop.time()
        started = warming + warm_up
        deadline = started + seconds

        async def client(index: int) -> None:
            # Spread the first requests over one interval, so the clients do not move in step.
            due = warming + (interval * index / clients if interval else 0.0)
            turn = index
            while True:
                now = loop.time()
                if due > now:
                    await asyncio.sleep(due - now)
                if loop.time() >= deadline:
                    return
                sent = due if interval else loop.time()
                path = paths[turn % len(paths)]
                turn += 1
                load = loads[path] if sent >= started else PathLoad()  # warming: not kept
                try:
                    async with session.get(base_url + path) as resp:
                        await resp.read()
                        load.statuses[str(resp.status)] += 1
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.statuses[type(exc).__name__] += 1
                    ok = False
                if ok:
                    load.latencies.append(loop.time() - sent)
                else:
                    load.errors += 1
                due = due + interval if interval else loop.time()

        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = max(loop.time() - started, 1e-9)
    per_path = {path: load.summary(elapsed) for path, load in loads.items()}
    every = sorted(x for load in loads.values() for x in load.latencies)
    return {
        "url": base_url,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "interval_s": interval,
        "warm_up_s": warm_up,
        "requests": len(every),
        "errors": sum(load.errors for load in loads.values()),
        "requests_per_s": round(len(every) / elapsed, 1),
        "p50_s": round(quantile(every, 0.50), 4),
        "p99_s": round(quantile(every, 0.99), 4),
        "max_s": round(every[-1], 4) if every else 0.0,
        "paths": per_path,
        "client_cpu_s": round(time.process_time() - cpu0, 2),  # this driver's own cost
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storepulse.bench.load",
        description="Drive an exporter with keep-alive HTTP clients; print JSON figures.",
    )
    parser.add_argument("url", help="the exporter, e.g. http://127.0.0.1:19100")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between a client's requests (0: none)"
    )
    parser.add_argument(
        "--warm-up", type=float, default=1.0, help="seconds of load before measuring"
    )
    parser.add_argument("--path", action="append", help="paths to ask for (default: both)")
    args = parser.parse_args(argv)
    figures = asyncio.run(
        drive(
            args.url.rstrip("/"),
            tuple(args.path or DEFAULT_PATHS),
            args.clients,
            args.seconds,
            args.interval,
            args.warm_up,
        )
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
