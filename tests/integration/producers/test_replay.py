"""`storepulse replay` against the real broker: verbatim bytes, keys, timing, Ctrl-C, errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from streams.contract.events import parse_ts
from streams.contract.times import format_ts
from streams.settings import Settings
from tests import harness

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z

# Every kind of line a recording may hold; each must come out byte for byte.
ODD_LINES = [
    b'{"event_id":"e1","type":"visit","ts":"2024-05-01T00:00:00.000Z","session_id":"s-a"}',
    b'{ "session_id" : "s-b",  "ts" : "2024-05-01T02:00:00.100+02:00", "x": {"ts": "nested"} }',
    b'{"ts":1714521600200,"session_id":"s-c","note":"int ts"}',
    '{"session_id":"s-\u00e9","ts":"2024-05-01T00:00:00.300Z","page":"/caf\u00e9"}'.encode(),
    b'{"session_id":"s-d","ts":"2024-05-01T00:00:00"}',  # naive: left as is
    b'{"session_id":"s-e","event_id":"e2"',  # truncated
    b'["visit","s-f"]',
    b'{"session_id":42,"ts":"2024-05-01T00:00:00.400Z"}',  # non-string session_id: no key
    b"\xff\xfe not utf-8 at all",
    b"",
    b"   ",
    b'{"no_ts":true,"session_id":"s-g"}',
]


def _key(line: bytes) -> bytes | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    sid = obj.get("session_id") if isinstance(obj, dict) else None
    return sid.encode() if isinstance(sid, str) else None


def _replay(settings: Settings, *args: str, check: bool = True) -> dict[str, object]:
    result = harness.run_cli(["replay", "--json", *args], settings, timeout=90, check=check)
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


async def test_keep_time_publishes_every_line_verbatim_with_keys(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    path = tmp_path / "odd.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"\n".join(ODD_LINES))  # no newline after the last line
    summary = _replay(settings, str(path), "--keep-time", "--speed", "max", "--create-topics")
    assert summary["read"] == summary["published"] == len(ODD_LINES)
    assert summary["failed"] == 0
    assert summary["bytes"] == sum(len(line) for line in ODD_LINES)
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, len(ODD_LINES))
    assert Counter((key, value) for _, _, key, value in got) == Counter(
        (_key(line), line) for line in ODD_LINES
    )


async def test_retiming_moves_only_ts_and_keeps_gaps(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    path = tmp_path / "timed.jsonl"
    gaps_ms = [0, 150, 400, 400, 900, 300]  # the 300 is late: out of order
    lines = [
        json.dumps({"session_id": f"s{i}", "ts": format_ts(T0 + g), "i": i}).encode()
        if i % 2 == 0
        else json.dumps({"ts": T0 + g, "session_id": f"s{i}", "i": i}).encode()
        for i, g in enumerate(gaps_ms)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    await_topic = _replay(settings, str(path), "--create-topics", "--speed", "max")
    assert await_topic["published"] == len(lines)
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, len(lines))
    first = _by_index(got[-len(lines) :] if len(got) > len(lines) else got)
    started = time.time()
    summary = _replay(settings, str(path), "--speed", "2")
    elapsed = time.time() - started
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, 2 * len(lines))
    second = _by_index([g for g in got if (g[0], g[1]) not in first["positions"]])
    now_ms = summary["now_ms"]
    assert isinstance(now_ms, int)
    assert summary["first_ts_ms"] == T0
    assert abs(now_ms - started * 1_000) < 10_000
    for run, speed in ((first, 1.0), (second, 2.0)):
        base = run["now"]
        for i, gap in enumerate(gaps_ms):
            obj = json.loads(run["values"][i])
            # ts = now + gap / speed (speed max keeps the gaps); the type of ts is kept
            assert parse_ts(obj["ts"]) - base == round(gap / speed)
            assert isinstance(obj["ts"], int) == (i % 2 == 1)
            original = lines[i].decode()
            replaced = run["values"][i].decode()
            assert original.split('"ts"')[0] == replaced.split('"ts"')[0]
            assert original.split(", ")[-1] == replaced.split(", ")[-1]
    # --speed 2 over a 900 ms recording: ~0.45 s of pacing on top of start-up
    assert elapsed >= 0.45


def _by_index(got: list[tuple[int, int, bytes | None, bytes]]) -> dict[str, object]:
    values = {json.loads(v)["i"]: v for _, _, _, v in got}
    return {
        "values": values,
        "now": parse_ts(json.loads(values[0])["ts"]),
        "positions": {(p, o) for p, o, _, _ in got},
    }


def test_unreachable_broker_and_missing_topic_are_clear_errors(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(ODD_LINES[0] + b"\n")
    dead = make_settings(kafka_bootstrap=f"127.0.0.1:{harness.free_port()}")
    result = harness.run_cli(["replay", str(path)], dead, check=False)
    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    result = harness.run_cli(["replay", str(path)], make_settings(), check=False)
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    result = harness.run_cli(["replay", str(tmp_path / "nope.jsonl")], make_settings(), check=False)
    assert result.returncode == 1
    assert "no such file" in result.stderr


def test_ctrl_c_flushes_and_reports_exactly_what_was_acknowledged(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    path = tmp_path / "big.jsonl.gz"
    harness.run_cli(
        [
            "generate",
            "--out",
            str(path),
            "--events",
            "40000",
            "--seed",
            "5",
            "--start",
            "2024-05-01T00:00:00Z",
        ],
        settings,
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    harness.run_cli(["replay", "--create-topics", str(empty)], settings)  # topics only
    proc = subprocess.Popen(
        [*harness.STOREPULSE, "replay", "--json", "--rate", "3000", str(path)],
        env=harness.env_for(settings),
        cwd=harness.PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    read, published = summary["read"], summary["published"]
    assert 0 < published == read < 40_000
    got = asyncio.run(harness.consume_all(settings.kafka_bootstrap, settings.topic, published))
    assert len(got) == published
    with gzip.open(path, "rb") as fh:
        head = [fh.readline().rstrip(b"\n") for _ in range(read)]
    # Exactly the lines read, each once; ts was re-timed, so compare everything else.
    strip = [json.loads(v) for _, _, _, v in got]
    originals = [json.loads(line) for line in head]
    for obj in (*strip, *originals):
        obj.pop("ts", None)
    assert sorted(map(json.dumps, strip)) == sorted(map(json.dumps, originals))


async def test_speed_max_loses_nothing_and_reports_a_rate(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    path = tmp_path / "day.jsonl.gz"
    harness.run_cli(
        [
            "generate",
            "--out",
            str(path),
            "--events",
            "20000",
            "--seed",
            "6",
            "--invalid-share",
            "0.02",
        ],
        settings,
    )
    summary = _replay(settings, str(path), "--speed", "max", "--create-topics")
    assert summary["read"] == summary["published"] == 20_000
    assert summary["rate"] > 1_000  # type: ignore[operator]
    got = await harness.consume_all(settings.kafka_bootstrap, settings.topic, 20_000)
    assert len(got) == 20_000
