"""Prometheus and Alertmanager configs of local runs (the stack, the tests); compose has its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["render_alertmanager_config", "render_prometheus_config"]


def render_prometheus_config(
    exporter_targets: Sequence[str],
    alertmanager_targets: Sequence[str],
    rule_files: Sequence[str] = (),
    interval: str = "5s",
    worker_targets: Sequence[str] = (),
) -> str:
    """prometheus.yml for a local run (JSON is YAML); compose uses prometheus/prometheus.yml."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": list(rule_files),
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanager_targets)}]}]
        },
        "scrape_configs": [
            {"job_name": "storepulse", "static_configs": [{"targets": list(exporter_targets)}]},
            {
                "job_name": "storepulse-worker",
                "static_configs": [{"targets": list(worker_targets)}],
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def render_alertmanager_config(
    webhook_url: str | None,
    group_wait: str = "10s",
    credentials_file: str | None = None,
) -> str:
    """alertmanager.yml sending every alert to one webhook (the exporter's, or a test's).

    With credentials_file, Alertmanager sends `Authorization: Bearer <the file's content>`
    (the exporter's STOREPULSE_WEBHOOK_TOKEN); the token stays out of the config. Without a
    webhook_url the receiver sends nothing: the exporter reads Alertmanager's API instead
    (`storepulse exporter --alertmanager-url`).
    """
    receiver: dict[str, Any] = {"name": "storepulse-webhook"}
    if webhook_url is not None:
        webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
        if credentials_file is not None:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials_file": credentials_file}
            }
        receiver["webhook_configs"] = [webhook]
    config = {
        "route": {
            "receiver": "storepulse-webhook",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": "1m",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }
    return json.dumps(config, indent=2) + "\n"
