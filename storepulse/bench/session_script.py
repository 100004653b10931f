"""`storepulse bench --session-script`: the batch script's Redis time per event with and without
session figures, alternated on the bench's redis-server, without the broker or the worker.

The worker's own rows (`worker`, `worker_no_sessions`) move with this VM's neighbours by
+-25 % from one run to the next; the script's time, read from `INFO commandstats` with nothing
else on the server, moves far less, and it is where session end detection spends (the worker's
CPU is the same with and without). The events are the bench's file, checked and batched by the
worker's own BatchBuilder (1,000 per partition and call, crc32 of the session id over the
partitions) and applied by FunnelStore.apply; each run's stored totals and ended sessions are
checked against the generator's, as the worker's are.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

from storepulse.bench.checks import worker_check
from storepulse.bench.options import BenchError
from storepulse.bench.runner import Bench
from streams.contract.events import EventParser
from streams.contract.funnel import StageMap
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore
from streams.store.keys import STATUS_OK
from streams.worker.batch import BatchBuilder, Record

__all__ = ["session_script_results"]

_BATCH = 1_000  # records per partition and call, as the worker's batches here


def _partitioned(lines: list[bytes], partitions: int) -> dict[int, list[Record]]:
    parts: dict[int, list[Record]] = {p: [] for p in range(partitions)}
    for line in lines:
        try:
            sid = str(json.loads(line).get("session_id", ""))
        except (ValueError, AttributeError):
            sid = ""  # an invalid line: the builder rejects it, counted like the worker's
        p = zlib.crc32(sid.encode()) % partitions
        parts[p].append(Record(p, len(parts[p]), sid.encode(), line))
    return parts


async def _apply_all(settings: Settings, parts: dict[int, list[Record]]) -> tuple[float, int, str]:
    """Apply every partition's records in batches, round robin: the script's seconds, its
    calls, and the server's version."""
    client = connect(settings)
    try:
        await client.config_resetstat()
        store = FunnelStore(client, settings)
        await store.register_partitions(parts)
        builder = BatchBuilder(
            settings,
            EventParser(settings.checkout_steps, settings.max_event_bytes),
            StageMap(settings.checkout_steps),
        )
        cursors = {p: await store.load_cursor(p) for p in parts}
        now_ms = int(time.time() * 1_000)
        done = dict.fromkeys(parts, 0)
        while any(done[p] < len(parts[p]) for p in parts):
            for p, records in parts.items():
                batch = records[done[p] : done[p] + _BATCH]
                if not batch:
                    continue
                done[p] += len(batch)
                prepared = builder.build(p, cursors[p], batch, now_ms, None, {})
                (result,) = await store.apply([prepared.call])
                if result.status != STATUS_OK:
                    raise BenchError(f"session script: partition {p} answered {result.status}")
        stats = await client.info("commandstats")
        version = str((await client.info("server")).get("redis_version"))
    finally:
        await client.aclose()
    script = stats.get("cmdstat_evalsha", {})
    return script.get("usec", 0) / 1e6, script.get("calls", 0), version


async def session_script_results(bench: Bench, reps: int) -> dict[str, Any]:
    """The script's time per event with and without session figures, the lowest of reps
    alternated runs each, and every run."""
    assert bench.base is not None
    path, expected = await bench.generate_file()
    lines = path.read_bytes().splitlines()
    parts = _partitioned(lines, bench.base.partitions)
    runs: list[dict[str, Any]] = []
    for rep in range(1, reps + 1):
        for on in (True, False):
            name = f"script_{'with' if on else 'without'}_{rep}"
            settings = bench.fresh(name, session_figures=on)
            bench.say(f"session script: {name}")
            seconds, calls, version = await _apply_all(settings, parts)
            exact, detail = await worker_check(expected)(settings, [])
            if not exact:
                raise BenchError(f"session script: {name} is not exact: {detail['mismatches']}")
            runs.append(
                {
                    "name": name,
                    "session_figures": on,
                    "script_seconds": round(seconds, 3),
                    "calls": calls,
                    "us_per_event": round(1e6 * seconds / len(lines), 2),
                }
            )
    best = {
        on: min(r["us_per_event"] for r in runs if r["session_figures"] is on)
        for on in (True, False)
    }
    return {
        "redis_version": version,
        "events": len(lines),
        "session_script_runs": runs,
        "session_script_us_per_event": best[True],
        "no_sessions_script_us_per_event": best[False],
        "session_end_script_us_per_event": round(best[True] - best[False], 2),
    }
