"""Firing alerts for the board: from authenticated Alertmanager webhooks, or Alertmanager's API."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = [
    "ALERTMANAGER_TIMEOUT_SECONDS",
    "MAX_ALERTS",
    "AlertBook",
    "AlertmanagerClient",
    "AlertmanagerError",
    "WebhookError",
    "alerts_response",
    "fair_keep",
]

log = logging.getLogger("storepulse.exporter")

# A board shows a few alerts; a flood (a misrouted Alertmanager, a label explosion) must not
# grow memory without bound. 1,000 alerts of ~1 KB each is 1 MB.
MAX_ALERTS = 1_000
# GET /api/alerts answers within this even when Alertmanager hangs (the board polls every 3 s).
ALERTMANAGER_TIMEOUT_SECONDS = 2.0
# Alertmanager's answer is read up to this size: ~10,000 alerts of 1 KB.
MAX_ALERTMANAGER_BYTES = 10 << 20
_SEVERITY_RANK = {"critical": 0, "warning": 1}


class WebhookError(ValueError):
    """A POST body that is not an Alertmanager webhook payload."""


class AlertmanagerError(RuntimeError):
    """Alertmanager's API could not be read (unreachable, slow, or not its answer)."""


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


def _severity(view: Mapping[str, Any]) -> int:
    return _SEVERITY_RANK.get(str(view["severity"]), len(_SEVERITY_RANK))


def _sorted(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    def rank(a: dict[str, Any]) -> tuple[int, str, str]:
        return _severity(a), a["name"], json.dumps(a["labels"], sort_keys=True)

    return sorted(alerts, key=rank)


@dataclass
class _Entry:
    view: dict[str, Any]
    seq: int  # when it was last received: larger is more recent


def fair_keep(entries: Mapping[str, _Entry], limit: int) -> list[str]:
    """The keys to keep when more than `limit` alerts fire: fair per alert name, critical first.

    Each name's alerts are ranked (critical, then warning, then the rest; the most recently
    received first). Then every name's first alert is kept, then every name's second, and so
    on, critical before warning at each round. So 1,000 alerts of one name (a label explosion,
    a misrouted sender) cannot push out the one DeadLetterSurge: they keep what the limit leaves.
    """
    groups: dict[str, list[tuple[str, _Entry]]] = {}
    for key, entry in entries.items():
        groups.setdefault(str(entry.view["name"]), []).append((key, entry))
    ranked: list[tuple[int, int, int, str]] = []
    for members in groups.values():
        members.sort(key=lambda m: (_severity(m[1].view), -m[1].seq))
        for index, (key, entry) in enumerate(members):
            ranked.append((index, _severity(entry.view), -entry.seq, key))
    ranked.sort()
    return [key for *_, key in ranked[:limit]]


class AlertBook:
    """The firing alerts last reported by Alertmanager webhooks (thread safe, in memory).

    A webhook carries the alerts of one group: firing ones are stored or refreshed, resolved
    ones removed. Beyond `limit` alerts the book keeps a fair share per alert name, critical
    first (fair_keep) and counts the rest in `dropped`. Each exporter keeps its own book; with
    several exporters, point Alertmanager at each or pass --alertmanager-url so the board reads
    Alertmanager itself.
    """

    def __init__(self, limit: int = MAX_ALERTS) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[str, _Entry] = {}
        self._seq = 0
        self.limit = limit
        self.dropped = 0  # alerts not kept because the book was full, since the start

    def receive(self, payload: object) -> tuple[int, int]:
        """Apply one webhook payload; returns (firing alerts afterwards, alerts dropped by it)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise WebhookError("expected an Alertmanager webhook payload with an 'alerts' list")
        alerts = payload["alerts"]
        # Checked first: a payload that is refused changes nothing.
        if not all(isinstance(alert, dict) for alert in alerts):
            raise WebhookError("each alert must be a JSON object")
        with self._lock:
            for alert in alerts:
                view = _alert_view(alert)
                key = _key(view)
                if alert.get("status") == "firing":
                    self._seq += 1
                    self._alerts[key] = _Entry(view, self._seq)
                else:
                    self._alerts.pop(key, None)
            dropped = 0
            if len(self._alerts) > self.limit:
                keep = fair_keep(self._alerts, self.limit)
                dropped = len(self._alerts) - len(keep)
                self._alerts = {key: self._alerts[key] for key in keep}
                self.dropped += dropped
            firing = len(self._alerts)
        if dropped:
            log.warning(
                "alert book full (%d alerts): dropped %d, fairly per alert name (%d since start)",
                self.limit,
                dropped,
                self.dropped,
            )
        return firing, dropped

    def firing(self) -> list[dict[str, Any]]:
        with self._lock:
            return _sorted(entry.view for entry in self._alerts.values())


class AlertmanagerClient:
    """Alertmanager's v2 API, read with aiohttp on the exporter's loop (it never blocks it)."""

    def __init__(self, base_url: str, timeout: float = ALERTMANAGER_TIMEOUT_SECONDS) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def alerts(self) -> list[dict[str, Any]]:
        """Active, unsilenced, uninhibited alerts, critical first."""
        if self._session is None:
            # Created on first use, on the loop that uses it (aiohttp binds a session to one).
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json"},
            )
        params = {"active": "true", "silenced": "false", "inhibited": "false"}
        try:
            async with self._session.get(self.url, params=params) as resp:
                if resp.status != 200:
                    raise AlertmanagerError(f"{self.url} answered HTTP {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    body += chunk
                    if len(body) > MAX_ALERTMANAGER_BYTES:
                        raise AlertmanagerError(f"{self.url} answered over 10 MiB")
        except TimeoutError:
            raise AlertmanagerError(f"{self.url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise AlertmanagerError(f"{self.url}: {exc}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise AlertmanagerError(f"{self.url} did not answer JSON") from None
        if not isinstance(data, list):
            raise AlertmanagerError(f"{self.url} did not return a list")
        return _sorted(
            _alert_view(a)
            for a in data
            if isinstance(a, dict) and (a.get("status") or {}).get("state", "active") == "active"
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def alerts_response(
    book: AlertBook, alertmanager: AlertmanagerClient | None
) -> dict[str, Any]:
    """GET /api/alerts: Alertmanager's view when configured (and reachable), else the book."""
    if alertmanager is not None:
        try:
            return {"source": "alertmanager", "alerts": await alertmanager.alerts()}
        except AlertmanagerError as exc:
            return {"source": "webhook", "error": f"alertmanager: {exc}", "alerts": book.firing()}
    return {"source": "webhook", "alerts": book.firing()}
