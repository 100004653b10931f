"""Firing alerts for the live board: from Alertmanager webhooks, or Alertmanager's own API."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_ALERTS", "AlertBook", "WebhookError", "alerts_response", "fetch_alertmanager"]

# A board shows a few alerts; a flood (a misrouted Alertmanager) must not grow memory without
# bound. 1,000 alerts of ~1 KB each is 1 MB.
MAX_ALERTS = 1_000


class WebhookError(ValueError):
    """A POST body that is not an Alertmanager webhook payload."""


def _alert_view(alert: Mapping[str, Any]) -> dict[str, Any]:
    labels = {str(k): str(v) for k, v in dict(alert.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in dict(alert.get("annotations") or {}).items()}
    return {
        "name": labels.get("alertname", ""),
        "severity": labels.get("severity", ""),
        "labels": labels,
        "annotations": annotations,
        "startsAt": str(alert.get("startsAt", "")),
        "fingerprint": str(alert.get("fingerprint") or ""),
    }


def _key(view: Mapping[str, Any]) -> str:
    # Alertmanager sends a fingerprint of the label set; without one the labels identify it.
    return str(view["fingerprint"]) or json.dumps(view["labels"], sort_keys=True)


def _sorted(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {"critical": 0, "warning": 1}

    def rank(a: dict[str, Any]) -> tuple[int, str, str]:
        return order.get(a["severity"], 2), a["name"], json.dumps(a["labels"], sort_keys=True)

    return sorted(alerts, key=rank)


class AlertBook:
    """The firing alerts last reported by Alertmanager webhooks (thread safe, in memory).

    A webhook carries the alerts of one group: firing ones are stored or refreshed, resolved
    ones removed. Each exporter keeps its own book; with several exporters, point Alertmanager
    at each or pass --alertmanager-url so the board reads Alertmanager itself.
    """

    def __init__(self, limit: int = MAX_ALERTS) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[str, dict[str, Any]] = {}
        self.limit = limit

    def receive(self, payload: object) -> int:
        """Apply one webhook payload; returns the number of firing alerts afterwards."""
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise WebhookError("expected an Alertmanager webhook payload with an 'alerts' list")
        with self._lock:
            for alert in payload["alerts"]:
                if not isinstance(alert, dict):
                    raise WebhookError("each alert must be a JSON object")
                view = _alert_view(alert)
                key = _key(view)
                if alert.get("status") == "firing":
                    if key in self._alerts or len(self._alerts) < self.limit:
                        self._alerts[key] = view
                else:
                    self._alerts.pop(key, None)
            return len(self._alerts)

    def firing(self) -> list[dict[str, Any]]:
        with self._lock:
            return _sorted(list(self._alerts.values()))


def fetch_alertmanager(base_url: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Active, unsilenced, uninhibited alerts from Alertmanager's v2 API."""
    url = base_url.rstrip("/") + "/api/v2/alerts?active=true&silenced=false&inhibited=false"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data = json.load(resp)
    if not isinstance(data, list):
        raise ValueError(f"{url} did not return a list")
    views = [
        _alert_view(a)
        for a in data
        if isinstance(a, dict) and (a.get("status") or {}).get("state", "active") == "active"
    ]
    return _sorted(views)


def alerts_response(book: AlertBook, alertmanager_url: str | None) -> dict[str, Any]:
    """GET /api/alerts: Alertmanager's view when configured (and reachable), else the book."""
    if alertmanager_url:
        try:
            return {"source": "alertmanager", "alerts": fetch_alertmanager(alertmanager_url)}
        except (OSError, urllib.error.URLError, ValueError) as exc:
            return {"source": "webhook", "error": f"alertmanager: {exc}", "alerts": book.firing()}
    return {"source": "webhook", "alerts": book.firing()}
