"""The manifest's ground truth equals an independent recount of the emitted file."""

from __future__ import annotations

import contextlib
import gzip
import json
from decimal import Decimal
from pathlib import Path

from producers.generate import GenerateOptions, generate
from producers.manifest import read_manifest
from producers.scenarios import parse_scenario
from streams.contract.events import DEFAULT_CHECKOUT_STEPS, EventParser, Rejected
from streams.contract.times import format_ts
from streams.settings import Settings
from tests.unit.producers.conftest import START_MS, config, recount


async def test_manifest_equals_a_recount_of_the_emitted_file(tmp_path: Path) -> None:
    out = tmp_path / "traffic.jsonl.gz"
    manifest_path = tmp_path / "manifest.json"
    cfg = config(
        rate=100.0,
        cvr=0.1,
        abandonment=0.6,
        late_share=0.05,
        max_delay_s=90,
        duplicate_share=0.05,
        loss_share=0.05,
        invalid_share=0.05,
    )
    opts = GenerateOptions(
        config=cfg,
        scenarios=[
            parse_scenario("abandonment-spike:start=120,duration=120", DEFAULT_CHECKOUT_STEPS),
            parse_scenario("tracking-loss:start=300,duration=60", DEFAULT_CHECKOUT_STEPS),
        ],
        out=str(out),
        duration_s=600,
        start_ms=START_MS,
        seed=99,
        manifest=str(manifest_path),
        arguments={"note": "unit test"},
    )
    report = await generate(Settings(), opts)
    manifest = read_manifest(str(manifest_path))
    with gzip.open(out, "rb") as fh:
        lines = fh.read().splitlines()
    assert report.lines == len(lines) == manifest["totals"]["lines"] > 50_000

    counted = recount(lines)
    minutes = {row["minute"]: row for row in manifest["minutes"]}
    recounted = {ms: row for ms, row in counted["minutes"].items() if any(row["sessions"].values())}
    assert {format_ts(ms) for ms in recounted} == {
        m for m, row in minutes.items() if any(row["sessions"].values())
    }
    for ms, row in recounted.items():
        mine = minutes[format_ts(ms)]
        assert mine["sessions"] == row["sessions"], format_ts(ms)
        assert mine["orders"] == row["orders"]
        assert Decimal(mine["revenue"]) == row["revenue"]
    totals = manifest["totals"]
    assert totals["injected"]["invalid"] == counted["invalid"] > 0
    assert totals["injected"]["duplicates"] == counted["duplicates"] > 0
    assert totals["events"] == counted["events"]
    assert totals["injected"]["lost"] > 0
    assert totals["injected"]["late"] > 0
    assert sum(totals["invalid_by_kind"].values()) == counted["invalid"]
    assert totals["orders"] == sum(r["orders"] for r in counted["minutes"].values())

    # Ended sessions and carts by the minute of their end (tests/unit/producers/test_sessions.py
    # checks them against the reference): every session the manifest counts ends once.
    sessions = manifest["sessions"]
    assert (sessions["timeout_seconds"], sessions["recovery_window_seconds"]) == (1_800, 604_800)
    ended = sum(m["ended_sessions"] for m in sessions["minutes"])
    parser = EventParser()
    valid = set()
    for line in lines:
        with contextlib.suppress(Rejected):
            valid.add(parser.parse(line).session_id)
    assert ended == sessions["totals"]["ended_sessions"] == len(valid)

    # The manifest describes the run: seed, arguments, placed scenarios.
    assert manifest["seed"] == 99
    assert manifest["arguments"] == {"note": "unit test"}
    assert manifest["start"] == "2024-05-01T00:00:00.000Z"
    spike = manifest["scenarios"][0]
    assert (spike["name"], spike["start"], spike["end"], spike["step"]) == (
        "abandonment-spike",
        "2024-05-01T00:02:00.000Z",
        "2024-05-01T00:04:00.000Z",
        "payment",
    )
    assert manifest["stages"] == ["visit", "cart", "shipping", "payment", "review", "purchase"]
    assert json.loads(json.dumps(manifest)) == manifest


async def test_events_bound_and_plain_file(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    opts = GenerateOptions(config=config(), out=str(out), events=1_234, start_ms=START_MS, seed=1)
    report = await generate(Settings(), opts)
    assert report.lines == 1_234
    assert report.asked_rate is None
    assert len(out.read_bytes().splitlines()) == 1_234
    assert "1,234 lines" in report.summary()
