"""The exporter's routes: a request in, a Response out, whatever HTTP server carries them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from redis.exceptions import RedisError

from streams.contract.kpis import Dimension
from streams.contract.times import parse_instant_ms, whole_seconds
from streams.exporter.alerts import AlertBook, WebhookError, alerts_response
from streams.exporter.cache import SingleFlightCache
from streams.exporter.customer_metrics import CustomerCollector, CustomerReader
from streams.exporter.customers import CustomerRoutes
from streams.exporter.metrics import create
from streams.exporter.snapshot import Snapshot, SnapshotReader, SnapshotUnavailable
from streams.query.kpis import kpi_report
from streams.query.window import range_ending_now
from streams.settings import Settings
from streams.store.customers import CustomerStore
from streams.store.funnel import FunnelStore

__all__ = ["DEFAULT_WINDOW", "MAX_RANGE_BUCKETS", "Response", "Routes"]

log = logging.getLogger("storepulse.exporter")

# /api/kpis reads every bucket of the range in one pipeline: 7 days of 60 s buckets on 6
# partitions is 60k hashes, the most one request may cost (about the retention, 7 days).
MAX_RANGE_BUCKETS = 10_080
DEFAULT_WINDOW = "15m"
# A health probe answers fast or not at all.
HEALTH_TIMEOUT_SECONDS = 2.0
_DIMENSIONS: tuple[Dimension, ...] = ("channel", "device", "country")
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/customers.js": ("customers.js", "text/javascript; charset=utf-8"),
}


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, data: object) -> Response:
    return Response(status, "application/json", json.dumps(data).encode() + b"\n")


def _epoch_s(text: str) -> int:
    return parse_instant_ms(text) // 1_000


class Routes:
    """Every route of the exporter, on the asyncio loop that owns the Redis client."""

    def __init__(
        self,
        settings: Settings,
        store: FunnelStore,
        reader: SnapshotReader,
        cache: SingleFlightCache,
        alerts: AlertBook,
        ping: Callable[[], Awaitable[object]],
        alertmanager_url: str | None = None,
        customers: CustomerStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.reader = reader
        self.cache = cache
        self.alerts = alerts
        self.ping = ping
        self.alertmanager_url = alertmanager_url
        customers = customers or CustomerStore(store.client, settings)
        self.customers = CustomerRoutes(settings, customers, store, cache, reader.clock)
        self.customer_reader = CustomerReader(customers)

    async def handle(
        self, method: str, target: str, accept: str | None = None, body: bytes = b""
    ) -> Response:
        """Route one request; a failure becomes a 5xx answer, never an exception."""
        try:
            return await self._route(method, target, accept, body)
        except (SnapshotUnavailable, RedisError, OSError, TimeoutError) as exc:
            text = f"redis unavailable: {exc}\n".encode()
            return Response(503, "text/plain; charset=utf-8", text)
        except Exception as exc:
            # One bad request must not kill the server; the log has the traceback.
            log.exception("%s %s failed", method, target)
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})

    async def _route(self, method: str, target: str, accept: str | None, body: bytes) -> Response:
        parts = urlsplit(target)
        path = parts.path
        if path == "/api/alerts" and method == "POST":
            return self._post_alerts(body)
        if method != "GET":
            return _json(405, {"error": f"{method} not allowed on {path}"})
        if path == "/metrics":
            return await self._metrics(accept)
        if path == "/api/kpis":
            return await self._kpis(parts.query)
        if path in {"/api/customers", "/api/cohorts"}:
            answer = self.customers.report if path == "/api/customers" else self.customers.cohorts
            return _json(*await answer(parts.query))
        if path == "/api/alerts":
            return _json(200, alerts_response(self.alerts, self.alertmanager_url))
        if path == "/healthz":
            await asyncio.wait_for(self.ping(), HEALTH_TIMEOUT_SECONDS)
            return _json(200, {"status": "ok"})
        if path in _ASSETS:
            name, content_type = _ASSETS[path]
            data = resources.files("streams.exporter").joinpath("board", name).read_bytes()
            return Response(200, content_type, data)
        return _json(404, {"error": f"no route {path}"})

    # /metrics ---------------------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The scrape's Redis snapshot, at most the cache's age old (one read for all callers)."""
        return await self.cache.get(("snapshot",), self._read)

    async def _read(self) -> Snapshot:
        try:
            return await self.reader.read()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cannot read Redis at %s: %s", self.settings.redis_url_shown, exc)
            raise SnapshotUnavailable(f"cannot read Redis: {exc}") from exc

    async def _metrics(self, accept: str | None) -> Response:
        encoder, content_type = choose_encoder(accept or "")

        async def render() -> Response:
            snapshot = await self.snapshot()
            customers = await self.customer_reader.read(
                snapshot.end_s, [m.partition for m in snapshot.metas]
            )
            # A collector per scrape over that snapshot, and the process's own metrics.
            registry = CollectorRegistry()
            create(registry, lambda: snapshot, self.settings)
            CustomerCollector.register(registry, customers, snapshot.totals, self.settings)
            ProcessCollector(registry=registry)
            return Response(200, content_type, encoder(registry))

        return await self.cache.get(("metrics", content_type), render)

    # /api/alerts ------------------------------------------------------------------------------

    def _post_alerts(self, body: bytes) -> Response:
        try:
            firing = self.alerts.receive(json.loads(body or b"null"))
        except (ValueError, WebhookError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"status": "ok", "firing": firing})

    # /api/kpis --------------------------------------------------------------------------------

    async def _kpis(self, raw_query: str) -> Response:
        # The board polls every few seconds per viewer: identical queries share one result.
        return await self.cache.get(("kpis", raw_query), lambda: self._compute_kpis(raw_query))

    async def _compute_kpis(self, raw_query: str) -> Response:
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        try:
            from_s, to_s, by = await self._kpi_range(query)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, await kpi_report(self.store, self.settings, from_s, to_s, by))

    async def _kpi_range(self, query: Mapping[str, str]) -> tuple[int, int, Dimension | None]:
        """[from, to) and the breakdown of /api/kpis; `to` defaults to the window end."""
        unknown = set(query) - {"from", "to", "window", "by"}
        if unknown:
            raise ValueError(f"unknown parameters: {', '.join(sorted(unknown))}")
        by = query.get("by") or None
        if by is not None and by not in _DIMENSIONS:
            raise ValueError(f"by must be one of {', '.join(_DIMENSIONS)}")
        if "from" in query and "window" in query:
            raise ValueError("give either from (with an optional to) or window, not both")
        if "from" in query:
            from_s = _epoch_s(query["from"])
            to_s = _epoch_s(query["to"]) if "to" in query else (await self._now_range(0))[1]
        elif "to" in query:
            to_s = _epoch_s(query["to"])
            from_s = to_s - whole_seconds(query.get("window", DEFAULT_WINDOW))
        else:
            from_s, to_s = await self._now_range(whole_seconds(query.get("window", DEFAULT_WINDOW)))
        if to_s <= from_s:
            raise ValueError("to must be after from")
        if (to_s - from_s) // self.settings.bucket_seconds > MAX_RANGE_BUCKETS:
            raise ValueError(f"range over {MAX_RANGE_BUCKETS} buckets; ask for a shorter one")
        known: Dimension | None = next((d for d in _DIMENSIONS if d == by), None)
        return from_s, to_s, known

    async def _now_range(self, length_s: int) -> tuple[int, int]:
        return await range_ending_now(self.store, self.settings, length_s, self.reader.clock)
