"""Same question, same answer: `storepulse kpis --last` and `/api/kpis?window=` on replayed traffic.

A day-old trace is generated, replayed with its own timestamps (`--keep-time`) and counted by
a real worker; the CLI and the exporter's API must then end "the last N minutes" at the same
newest complete bucket, the watermark's, a day in the past, and print the same JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.contract.times import iso, parse_instant_ms
from streams.exporter import Exporter
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore, PartitionMeta
from streams.store.keys import parse_totals
from tests import harness
from tests.integration.streams.exporter.test_exporter import get

LINES = 3_000
# 3 lines per second of event time: the 3,000 lines span about 17 minutes, so a 15 min window
# holds most of the trace and a 1 h window all of it.
RATE = 3


async def stored(settings: Settings) -> tuple[int, list[PartitionMeta]]:
    """Messages accounted for (accepted + duplicate + rejected), and the partition metas."""
    client = connect(settings)
    try:
        store = FunnelStore(client, settings)
        parts = await store.partitions()
        totals = parse_totals(await store.totals(parts))
        return totals.accounted, await store.metas(parts)
    finally:
        await client.aclose()


def wait_applied(settings: Settings, worker: harness.Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (done := asyncio.run(stored(settings))[0]) < LINES:
        assert worker.alive(), worker.proc.log_tail(40)
        assert time.monotonic() < deadline, f"{done} of {LINES} lines accounted for"
        time.sleep(0.2)
    assert done == LINES


def cli_kpis(settings: Settings, window: str, by: str | None) -> Any:
    extra = ["--by", by] if by else []
    return json.loads(
        harness.run_cli(["kpis", "--json", "--last", window, *extra], settings).stdout
    )


def api_kpis(url: str, window: str, by: str | None) -> Any:
    status, content_type, body = get(
        f"{url}/api/kpis?window={window}" + (f"&by={by}" if by else "")
    )
    assert (status, content_type) == (200, "application/json"), body
    return json.loads(body)


def test_cli_and_api_answer_the_last_minutes_of_a_replayed_day_identically(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings()
    start_s = (int(time.time()) - 86_400) // 60 * 60  # a day ago, on a bucket boundary
    trace = tmp_path / "yesterday.jsonl"
    harness.run_cli(
        [
            "generate",
            "--out",
            str(trace),
            "--start",
            iso(start_s),
            "--events",
            str(LINES),
            "--seed",
            "9",
            "--rate",
            str(RATE),
            "--duplicate-share",
            "0.02",
            "--invalid-share",
            "0.01",
        ],
        settings,
    )
    replay = harness.run_cli(
        ["replay", str(trace), "--keep-time", "--speed", "max", "--create-topics", "--json"],
        settings,
    )
    assert json.loads(replay.stdout)["published"] == LINES
    worker = harness.Worker(settings, tmp_path).start()
    try:
        wait_applied(settings, worker)
    finally:
        worker.stop()
    _, metas = asyncio.run(stored(settings))
    assert len(metas) == 3
    # Every partition was applied within seconds of the others (none idle): the window end is
    # the bucket of the slowest watermark, computed here from the metas themselves.
    newest = max(m.applied_ms or 0 for m in metas)
    assert all(newest - (m.applied_ms or 0) < 60_000 for m in metas)
    slowest_s = min(m.watermark_ms or 0 for m in metas) // 1_000
    expected_end = slowest_s // 60 * 60
    assert start_s + 600 < expected_end < start_s + 1_800  # the trace's, not the wall clock's

    with Exporter(settings, port=0) as exporter:
        answers = {}
        for window, by in [("15m", None), ("1h", None), ("15m", "channel"), ("1h", "device")]:
            api = api_kpis(exporter.url, window, by)
            cli = cli_kpis(settings, window, by)
            assert cli == api, (window, by)
            answers[window, by] = api
        status, _, body = get(exporter.url + "/metrics")
    assert status == 200

    seconds = {"15m": 900, "1h": 3_600}
    for (window, by), report in answers.items():
        assert report["to"] == iso(expected_end), (window, by)
        assert parse_instant_ms(report["from"]) // 1_000 == expected_end - seconds[window]
        groups = report["groups"] if by else {"all": report}
        assert sum(g["sessions"]["visit"] for g in groups.values()) > 0
        if by:
            assert len(groups) > 1  # a real breakdown, not one "unknown" group
            total = answers[window, None]["sessions"]["visit"]
            assert sum(g["sessions"]["visit"] for g in groups.values()) == total
    # The hour holds the whole trace, the quarter most of it.
    quarter, hour = answers["15m", None], answers["1h", None]
    assert 0 < quarter["sessions"]["visit"] < hour["sessions"]["visit"]
    assert hour["orders"] > 0
    # The window gauges end at the same bucket and count the same sessions.
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (end,) = families["storepulse_window_end_timestamp_seconds"].samples
    assert end.value == expected_end
    overall = {"channel": "all", "device": "all", "stage": "visit"}
    (gauge,) = [
        s
        for s in families["storepulse_window_sessions"].samples
        if s.labels == overall | {"window": "15m"}
    ]
    assert gauge.value == quarter["sessions"]["visit"]
