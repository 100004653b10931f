"""`storepulse generate` against the real broker: paced rate, keys, ground truth, slow sink."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from streams.settings import Settings
from tests import harness
from tests.unit.producers.conftest import recount


def _generate(settings: Settings, *args: str) -> dict[str, object]:
    result = harness.run_cli(["generate", "--json", *args], settings, timeout=90)
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


async def test_paced_rate_is_held_and_events_are_keyed_by_session(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    summary = _generate(settings, "--rate", "2000", "--duration", "3", "--seed", "1")
    lines = summary["lines"]
    assert isinstance(lines, int)
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, expected=lines)
    # 2,000 lines/s for 3 s: the schedule itself is exact; the event-time nudge moves the rate
    # by at most 2% and the last burst by 10 lines, so 5% is a strict bound.
    assert abs(len(got) - 6_000) <= 300
    assert summary["lines"] == summary["acked"] == len(got)
    assert summary["kept_up"] is True
    assert summary["rate"] == pytest.approx(2_000, rel=0.05)
    partitions_by_key: dict[bytes | None, set[int]] = {}
    for partition, _, key, value in got:
        event = json.loads(value)
        assert key == event["session_id"].encode()
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert len({p for ps in partitions_by_key.values() for p in ps}) == settings.partitions


async def test_unpaced_run_matches_its_manifest_through_the_broker(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    manifest_path = tmp_path / "m.json"
    summary = _generate(
        settings,
        "--no-pace",
        "--events",
        "4000",
        "--start",
        "2024-05-01T00:00:00Z",
        "--seed",
        "3",
        "--duplicate-share",
        "0.05",
        "--invalid-share",
        "0.05",
        "--cvr",
        "0.1",
        "--abandonment",
        "0.6",
        "--manifest",
        str(manifest_path),
    )
    assert summary["lines"] == 4_000
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, expected=4_000)
    assert len(got) == 4_000
    manifest = json.loads(manifest_path.read_text())
    counted = recount(value for _, _, _, value in got)
    assert manifest["totals"]["injected"]["invalid"] == counted["invalid"]
    assert manifest["totals"]["injected"]["duplicates"] == counted["duplicates"]
    assert manifest["totals"]["events"] == counted["events"]
    total = dict.fromkeys(manifest["stages"], 0)
    revenue = Decimal(0)
    for row in counted["minutes"].values():
        for k, v in row["sessions"].items():
            total[k] += v
        revenue += row["revenue"]
    assert total == manifest["totals"]["sessions"]
    assert revenue == Decimal(manifest["totals"]["revenue"])
    assert manifest["seed"] == 3
    assert manifest["arguments"]["events"] == 4_000


def test_a_sink_that_cannot_keep_up_is_reported(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    summary = _generate(settings, "--rate", "400000", "--duration", "2", "--warmup", "0")
    assert summary["kept_up"] is False
    assert summary["rate"] < 300_000  # type: ignore[operator]
    text = harness.run_cli(
        ["generate", "--rate", "400000", "--duration", "1", "--warmup", "0"], settings
    ).stdout
    assert "could not keep up" in text


def test_unreachable_broker_is_a_clear_error(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{harness.free_port()}")
    result = harness.run_cli(["generate", "--duration", "1"], settings, check=False)
    assert result.returncode == 1
    assert "Kafka at 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
