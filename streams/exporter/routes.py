"""The exporter's routes: a request in, a Response out, whatever HTTP server carries them."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from streams.contract.kpis import Dimension
from streams.contract.times import parse_instant_ms, whole_seconds
from streams.exporter.account_metrics import AccountReader, AccountSnapshot, account_families
from streams.exporter.accounts import ACCOUNT_PREFIX, AccountRoutes
from streams.exporter.alerts import AlertBook, AlertmanagerClient, WebhookError, alerts_response
from streams.exporter.cache import SingleFlightCache
from streams.exporter.customer_metrics import (
    CustomerCollector,
    CustomerReader,
    CustomerSnapshot,
)
from streams.exporter.customers import CustomerRoutes
from streams.exporter.history import (
    RANGES,
    PrometheusClient,
    PrometheusError,
    history,
    prometheus_history,
)
from streams.exporter.metrics import ExporterStats, create, stats_families
from streams.exporter.responses import (
    BodyReader,
    Offload,
    RequestError,
    Response,
    json_response,
    media_type,
    run_here,
)
from streams.exporter.snapshot import Snapshot, SnapshotReader, SnapshotUnavailable
from streams.query.accounts import Accounts
from streams.query.kpis import kpi_report
from streams.query.window import range_ending_now
from streams.settings import Settings
from streams.store.accounts import AccountStore
from streams.store.customers import CustomerStore
from streams.store.directory import DirectoryStore
from streams.store.funnel import FunnelStore

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_RANGE_BUCKETS",
    "BodyReader",
    "RequestError",
    "Response",
    "Routes",
]

log = logging.getLogger("storepulse.exporter")

T = TypeVar("T")

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
    "/chart.js": ("chart.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/customers.js": ("customers.js", "text/javascript; charset=utf-8"),
    "/carts.js": ("carts.js", "text/javascript; charset=utf-8"),
    "/accounts.js": ("accounts.js", "text/javascript; charset=utf-8"),
}


_Encoder = Callable[[CollectorRegistry], bytes]
# A /metrics format not asked for this long is no longer rendered with each read.
_FORMAT_SECONDS = 60.0


@dataclass
class _Scrape:
    """One snapshot, and the /metrics answers rendered from it."""

    snapshot: Snapshot
    customers: CustomerSnapshot
    answers: dict[str, Response]
    number: int = 0  # the how-manyth read this is
    accounts: AccountSnapshot = field(default_factory=AccountSnapshot)


class _StatsCollector(Collector):
    def __init__(self, stats: ExporterStats, book: AlertBook) -> None:
        self._stats = stats
        self._book = book

    def collect(self) -> Iterable[Metric]:
        return stats_families(self._stats, self._book.dropped)


def _epoch_s(text: str) -> int:
    return parse_instant_ms(text) // 1_000


class Routes:
    """Every route of the exporter, on one asyncio loop; Redis is read through `offload`."""

    def __init__(
        self,
        settings: Settings,
        store: FunnelStore,
        reader: SnapshotReader,
        cache: SingleFlightCache,
        alerts: AlertBook,
        ping: Callable[[], Awaitable[object]],
        alertmanager_url: str | None = None,
        stats: ExporterStats | None = None,
        offload: Offload = run_here,
        customers: CustomerStore | None = None,
        accounts: Accounts | None = None,
        prometheus_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.reader = reader
        self.cache = cache
        self.alerts = alerts
        self.ping = ping
        self.alertmanager_url = alertmanager_url
        self.alertmanager = AlertmanagerClient(alertmanager_url) if alertmanager_url else None
        # The board's history: Prometheus' series when given, else the exporter's own buckets.
        self.prometheus = PrometheusClient(prometheus_url) if prometheus_url else None
        self.stats = ExporterStats() if stats is None else stats
        self.offload = offload
        self._reads = 0  # snapshots read: the number a rendering is keyed by
        # content type -> (its encoder, when it was last asked for)
        self._formats: dict[str, tuple[_Encoder, float]] = {}
        token = settings.webhook_token
        self._token = None if token is None else token.get_secret_value().encode()
        customers = customers or CustomerStore(store.client, settings)
        self.customer_store = customers
        self.customers = CustomerRoutes(settings, customers, store, reader.clock)
        self.customer_reader = CustomerReader(customers)
        views = accounts or Accounts(
            AccountStore(store.client, settings), DirectoryStore(store.client, settings), settings
        )
        self.accounts = AccountRoutes(settings, views, store, reader.clock)
        self.account_reader = AccountReader(views, settings)

    async def aclose(self) -> None:
        """Close the Alertmanager client (on the loop that used it)."""
        if self.alertmanager is not None:
            await self.alertmanager.aclose()
        if self.prometheus is not None:
            await self.prometheus.aclose()

    async def handle(
        self,
        method: str,
        target: str,
        accept: str | None = None,
        body: bytes | BodyReader = b"",
        *,
        content_type: str | None = None,
        authorization: str | None = None,
    ) -> Response:
        """Route one request; a failure becomes a 4xx or 5xx answer, never an exception.

        `body` is the request body, or a coroutine function that reads it: then it is read
        only by the route that needs it, after the webhook's authentication.
        """
        try:
            try:
                parts = urlsplit(target)
            except ValueError as exc:  # e.g. "http://[::1" as an absolute target
                return json_response(400, {"error": f"bad request target: {exc}"})
            if parts.path == "/api/alerts" and method == "POST":
                return await self._post_alerts(body, content_type, authorization)
            return await self._route(method, parts.path, parts.query, accept)
        except RequestError as exc:
            return json_response(exc.status, {"error": exc.message})
        except (SnapshotUnavailable, RedisError, OSError, TimeoutError) as exc:
            text = f"redis unavailable: {exc}\n".encode()
            return Response(503, "text/plain; charset=utf-8", text)
        except Exception as exc:
            # One bad request must not kill the server; the log has the traceback.
            log.exception("%s %s failed", method, target)
            return json_response(500, {"error": f"{type(exc).__name__}: {exc}"})

    async def _route(self, method: str, path: str, query: str, accept: str | None) -> Response:
        if method != "GET":
            return json_response(405, {"error": f"{method} not allowed on {path}"})
        if path == "/metrics":
            return await self._metrics(accept)
        if path == "/api/kpis":
            return await self._kpis(query)
        if path in {"/api/customers", "/api/cohorts"}:
            return await self._view(self.customers, path, query)
        if path in {"/api/accounts", "/api/reps"} or path.startswith(ACCOUNT_PREFIX):
            return await self._view(self.accounts, path, query)
        if path == "/api/alerts":
            return await self._get_alerts()
        if path == "/api/history":
            return await self._history(query)
        if path == "/healthz":
            await asyncio.wait_for(self.offload(self._ping()), HEALTH_TIMEOUT_SECONDS)
            return json_response(200, {"status": "ok"})
        if path in _ASSETS:
            name, content_type = _ASSETS[path]
            data = resources.files("streams.exporter").joinpath("board", name).read_bytes()
            return Response(200, content_type, data)
        return json_response(404, {"error": f"no route {path}"})

    async def _ping(self) -> None:
        await self.ping()

    # /metrics ---------------------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The scrape's Redis snapshot, at most the cache's age old (one read for all callers)."""
        return (await self._scrape()).snapshot

    async def _scrape(self) -> _Scrape:
        return await self.cache.get(("snapshot",), self._read)

    async def _read(self) -> _Scrape:
        # The formats scraped lately are rendered with the read, where Redis is read: a
        # scrape then finds its answer ready, and the HTTP loop never renders.
        now = time.monotonic()
        for old in [f for f, (_, at) in self._formats.items() if now - at > _FORMAT_SECONDS]:
            del self._formats[old]
        formats = {content_type: encoder for content_type, (encoder, _) in self._formats.items()}
        try:
            scrape = await self.offload(self._read_and_render(formats))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cannot read Redis at %s: %s", self.settings.redis_url_shown, exc)
            raise SnapshotUnavailable(f"cannot read Redis: {exc}") from exc
        self._reads += 1
        scrape.number = self._reads
        return scrape

    async def _read_and_render(self, formats: Mapping[str, _Encoder]) -> _Scrape:
        snapshot = await self.reader.read()
        customers = await self.customer_reader.read(
            snapshot.end_s, [m.partition for m in snapshot.metas]
        )
        accounts = await self.account_reader.read(snapshot.end_s)
        scrape = _Scrape(snapshot, customers, {}, accounts=accounts)
        for ct, enc in formats.items():
            scrape.answers[ct] = await self._render(scrape, ct, enc)
        return scrape

    async def _render(self, scrape: _Scrape, content_type: str, encoder: _Encoder) -> Response:
        # A collector per scrape over that snapshot, and the process's own metrics.
        registry = CollectorRegistry()
        snapshot = scrape.snapshot
        create(registry, lambda: snapshot, self.settings)
        CustomerCollector.register(registry, scrape.customers, snapshot.totals, self.settings)
        accounts = scrape.accounts
        registry.register(CustomerCollector(lambda: account_families(accounts, self.settings)))
        registry.register(_StatsCollector(self.stats, self.alerts))
        ProcessCollector(registry=registry)
        return Response(200, content_type, encoder(registry))

    async def _metrics(self, accept: str | None) -> Response:
        encoder, content_type = choose_encoder(accept or "")
        self._formats[content_type] = (encoder, time.monotonic())
        scrape = await self._scrape()
        ready = scrape.answers.get(content_type)
        if ready is not None:
            return ready
        # A format the last read did not render: once per snapshot (keyed by its number, so an
        # answer is never of another snapshot), and from the next read on with the read.
        return await self.cache.get(
            ("metrics", content_type, scrape.number),
            lambda: self.offload(self._render(scrape, content_type, encoder)),
        )

    # /api/alerts ------------------------------------------------------------------------------

    async def _get_alerts(self) -> Response:
        if self.alertmanager is None:
            return json_response(200, await alerts_response(self.alerts, None))
        # Many board viewers, one Alertmanager request per second (each waits 2 s at most).
        return await self.cache.get(("alerts",), self._alertmanager_alerts)

    async def _alertmanager_alerts(self) -> Response:
        return json_response(200, await alerts_response(self.alerts, self.alertmanager))

    async def _post_alerts(
        self, body: bytes | BodyReader, content_type: str | None, authorization: str | None
    ) -> Response:
        """The Alertmanager webhook: a bearer token, then application/json, then the body."""
        if self._token is None:
            self.stats.webhook_refused["disabled"] += 1
            return json_response(
                404,
                {
                    "error": "the webhook is off: this exporter has no STOREPULSE_WEBHOOK_TOKEN "
                    "(the board reads Alertmanager with --alertmanager-url)"
                },
            )
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        given = credentials.strip().encode()
        # compare_digest: the time taken does not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._token):
            self.stats.webhook_refused["unauthorized"] += 1
            problem = "wrong bearer token" if authorization else "no bearer token"
            return json_response(
                401,
                {"error": f"{problem}: Authorization: Bearer <STOREPULSE_WEBHOOK_TOKEN> needed"},
                (("WWW-Authenticate", 'Bearer realm="storepulse-webhook"'),),
            )
        # A browser posts text/plain, form or multipart bodies to another origin without
        # asking it first (no CORS preflight); only application/json is taken.
        if media_type(content_type) != "application/json":
            self.stats.webhook_refused["content_type"] += 1
            shown = (content_type or "none")[:64]
            return json_response(
                415, {"error": f"Content-Type must be application/json, got {shown!r}"}
            )
        try:
            data = body if isinstance(body, bytes) else await body()
        except RequestError as exc:
            refused = self.stats.webhook_refused
            refused[exc.reason] = refused.get(exc.reason, 0) + 1
            raise
        try:
            firing, dropped = self.alerts.receive(json.loads(data or b"null"))
        except (ValueError, WebhookError) as exc:
            self.stats.webhook_refused["malformed"] += 1
            return json_response(400, {"error": str(exc)})
        return json_response(200, {"status": "ok", "firing": firing, "dropped": dropped})

    # /api/customers, /api/cohorts, /api/accounts, /api/accounts/ID, /api/reps ---------------

    async def _view(
        self, routes: CustomerRoutes | AccountRoutes, path: str, raw_query: str
    ) -> Response:
        # The board polls them every few seconds per viewer: identical queries share one read.
        status, body = await self.cache.get(
            (path, raw_query), lambda: self.offload(routes.answer(path, raw_query))
        )
        return json_response(status, body)

    # /api/history ----------------------------------------------------------------------------

    async def _history(self, raw_query: str) -> Response:
        # Every viewer of the board asks every 10 s: one answer per range and second for all.
        return await self.cache.get(
            ("history", raw_query), lambda: self._compute_history(raw_query)
        )

    async def _compute_history(self, raw_query: str) -> Response:
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        unknown = set(query) - {"range"}
        if unknown:
            listed = ", ".join(sorted(unknown))
            return json_response(400, {"error": f"unknown parameters: {listed}"})
        name = query.get("range", "1h")
        if name not in RANGES:
            return json_response(400, {"error": f"range must be one of {', '.join(RANGES)}"})
        lines, error = None, None
        if self.prometheus is not None:
            # On this loop, like the Alertmanager client; Redis is read on its own below.
            try:
                lines = await prometheus_history(
                    self.prometheus, self.settings, RANGES[name], self.reader.clock
                )
            except PrometheusError as exc:
                error = f"prometheus: {exc}"
        answer = await self.offload(self._stored_history(RANGES[name], lines))
        answer["range"] = name
        if error is not None:
            answer["error"] = error  # degraded to the buckets' lines
        return json_response(200, answer)

    async def _stored_history(self, range_s: int, lines: dict[str, Any] | None) -> dict[str, Any]:
        end_s = (await self._now_range(0))[1]
        return await history(self.store, self.settings, range_s, end_s, lines)

    # /api/kpis --------------------------------------------------------------------------------

    async def _kpis(self, raw_query: str) -> Response:
        # The board polls every few seconds per viewer: identical queries share one result.
        return await self.cache.get(
            ("kpis", raw_query), lambda: self.offload(self._compute_kpis(raw_query))
        )

    async def _compute_kpis(self, raw_query: str) -> Response:
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        try:
            from_s, to_s, by = await self._kpi_range(query)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        report = await kpi_report(
            self.store, self.settings, from_s, to_s, by, recoveries=self.customer_store
        )
        return json_response(200, report)

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
