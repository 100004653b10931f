"""Every Grafana panel query returns data from a real Prometheus scraping the exporter and worker.

Fed by `storepulse generate` (paced, with 10 % invalid lines) through the broker and the worker.
The recording rules are the production ones with short windows (see test_alerting_e2e): with
the production baseline, every `*:baseline` and `*:alert_threshold` panel would be
empty for the first half hour of any Prometheus, not only in a test. The invalid lines make
DeadLetterSurge fire (its `for:` shortened to 3 s), so the "Firing alerts" annotation
(ALERTS{alertstate="firing"}) has data too: no expression is exempt.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

from storepulse.local.procs import free_port
from storepulse.local.stack import prometheus_spec
from storepulse.monitoring.config import render_prometheus_config
from streams.exporter import Exporter
from tests import harness
from tests.harness import PROJECT_DIR as ROOT
from tests.integration.storepulse.monitoring.test_alerting_e2e import (
    generator,
    prom,
    write_short_rules,
)


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
    # 5 s buckets: the event-time window gauges have complete buckets within seconds.
    s = make_settings(partitions=3, bucket_seconds=5)
    expressions = grafana_build().panel_expressions()
    assert len(expressions) > 30
    rules = write_short_rules(tmp_path)
    worker = None
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
                worker = harness.Worker(s, tmp_path).start()
                missing = dict(expressions)
                deadline = time.monotonic() + 75
                while missing and time.monotonic() < deadline:
                    time.sleep(2)
                    for where, expr in list(missing.items()):
                        if prom(prometheus.address, "query", query=expr)["result"]:
                            del missing[where]
            assert not missing, f"no data for: {missing}"
            firing = prom(prometheus.address, "query", query='ALERTS{alertstate="firing"}')
            assert "DeadLetterSurge" in {r["metric"]["alertname"] for r in firing["result"]}
        finally:
            if worker is not None:
                worker.stop()
            if prometheus is not None:
                prometheus.stop()
