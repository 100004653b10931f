"""Every Grafana panel query returns data from a real Prometheus scraping the exporter and worker.

Fed by `storepulse generate` (paced, with 10 % invalid lines) through the broker and both stages
(`storepulse worker`, `storepulse customers-worker`), after two hours of earlier traffic replayed
with its own timestamps, so that the period before the current hour has ordering customers and
the retention panel has a ratio to show.
The recording rules are the production ones with short windows (see test_alerting_e2e): with
the production baseline, every `*:baseline` and `*:alert_threshold` panel would be
empty for the first half hour of any Prometheus, not only in a test. The invalid lines make
DeadLetterSurge fire (its `for:` shortened to 3 s), so the "Firing alerts" annotation
(ALERTS{alertstate="firing"}) has data too: no expression is exempt.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType

import pytest

from storepulse.local.procs import free_port
from storepulse.local.stack import prometheus_spec
from storepulse.monitoring.config import render_prometheus_config
from streams.contract.times import iso
from streams.exporter import Exporter
from tests import harness
from tests.harness import PROJECT_DIR as ROOT
from tests.integration.storepulse.monitoring.test_alerting_e2e import (
    generator,
    prom,
    write_short_rules,
)

# Minutes long: started first, so that the run does not end waiting for it (tests/conftest.py).
pytestmark = pytest.mark.slow


def grafana_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "storepulse_grafana_build", ROOT / "grafana" / "build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dashboard_expression_returns_data(make_settings, tmp_path: Path) -> None:
    # 5 s buckets: the event-time window gauges have complete buckets within seconds. Sessions
    # end a minute after their last event (the shortest timeout): the live traffic's bounces
    # end within the test, the sessions and carts rules get their samples. Rep labels on: the
    # dashboard has a panel by sales rep.
    s = make_settings(
        partitions=3, bucket_seconds=5, session_timeout_seconds=60, export_rep_labels=True
    )
    expressions = grafana_build().panel_expressions()
    assert len(expressions) > 30
    rules = write_short_rules(tmp_path)
    # The two hours before now (2 lines/s, conversion 15 %): ~100 ordering customers an hour.
    earlier = tmp_path / "earlier.jsonl"
    now_s = int(time.time())
    harness.run_cli(
        [
            *("generate", "--out", str(earlier), "--start", iso(now_s - 7_200), "--seed", "6"),
            *("--duration", "7080", "--rate", "2", "--cvr", "0.15", "--abandonment", "0.5"),
        ],
        s,
    )
    replayed = harness.run_cli(
        ["replay", str(earlier), "--keep-time", "--speed", "max", "--create-topics", "--json"], s
    )
    assert json.loads(replayed.stdout)["published"] > 10_000
    workers: list[harness.Worker] = []
    prometheus = None
    with Exporter(s, port=0) as exporter:
        try:
            config = tmp_path / "prometheus.yml"
            config.write_text(
                render_prometheus_config(
                    [exporter.url.removeprefix("http://")],
                    [],
                    [str(rules)],
                    interval="1s",
                    worker_targets=[f"{s.worker_web_host}:{s.worker_web_port}"],
                )
            )
            port = free_port()
            prometheus = harness.start(
                prometheus_spec(port, config, tmp_path / "prom-data"), tmp_path, "127.0.0.1", port
            )
            with generator(
                s, tmp_path, "--rate=500", "--duration=120", "--seed=5", "--invalid-share=0.1"
            ):
                workers = [
                    harness.Worker(s, tmp_path).start(),
                    harness.Worker(s, tmp_path, "customers", "customers-worker").start(),
                ]
                missing = dict(expressions)
                deadline = time.monotonic() + 100
                while missing and time.monotonic() < deadline:
                    time.sleep(2)
                    for where, expr in list(missing.items()):
                        if prom(prometheus.address, "query", query=expr)["result"]:
                            del missing[where]
                assert not missing, f"no data for: {missing}"
                # The replayed hours' valid lines dilute the dead-letter share for a while.
                alerts: set[str] = set()
                while "DeadLetterSurge" not in alerts and time.monotonic() < deadline + 30:
                    time.sleep(1)
                    firing = prom(prometheus.address, "query", query='ALERTS{alertstate="firing"}')
                    alerts = {r["metric"]["alertname"] for r in firing["result"]}
                assert "DeadLetterSurge" in alerts
        finally:
            for worker in workers:
                worker.stop()
            if prometheus is not None:
                prometheus.stop()
