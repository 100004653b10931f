"""The harness's real services answer: broker round trip, Redis round trip, Prometheus ready."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import redis

from tests import harness


async def test_broker_round_trip(broker: harness.Service) -> None:
    topic = harness.unique("roundtrip")
    sent = [(f"s{i}".encode(), json.dumps({"n": i}).encode()) for i in range(50)]
    assert await harness.produce(broker.address, topic, sent) == 50
    got = await harness.consume_all(broker.address, topic, expected=50)
    assert sorted((k, v) for _, _, k, v in got) == sorted(sent)
    # Same key, same partition: the broker keeps per-key order.
    by_key: dict[bytes | None, set[int]] = {}
    for partition, _, key, _ in got:
        by_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_redis_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set("storepulse:test", "42")
        assert client.get("storepulse:test") == b"42"
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        client.close()


def test_prometheus_ready_and_scrapes_itself(tmp_path: Path) -> None:
    prom = harness.start_prometheus(tmp_path, exporter_targets=[])
    try:
        url = f"http://{prom.address}/api/v1/status/buildinfo"
        with urllib.request.urlopen(url, timeout=5) as resp:
            info = json.load(resp)
        assert info["status"] == "success"
        assert info["data"]["version"].startswith("2.")
    finally:
        prom.stop()
    assert prom.proc.pid() is None
