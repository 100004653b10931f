"""`storepulse exporter`: /metrics, /api/kpis, /api/alerts and the live board over one Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from redis.exceptions import RedisError

from streams._exporter_alerts import AlertBook, WebhookError, alerts_response
from streams._exporter_metrics import (
    IDLE_PARTITION_SECONDS,
    MAX_CACHE_SECONDS,
    WINDOWS,
    CachedSnapshots,
    ExporterCollector,
    Snapshot,
    SnapshotReader,
    SnapshotUnavailable,
    create,
    families,
    window_end,
    windows_for,
)
from streams.events import parse_ts
from streams.kpis import Dimension
from streams.report import kpi_report
from streams.settings import Settings
from streams.store import FunnelStore, connect

__all__ = [
    "IDLE_PARTITION_SECONDS",
    "MAX_CACHE_SECONDS",
    "MAX_RANGE_BUCKETS",
    "WINDOWS",
    "CachedSnapshots",
    "Exporter",
    "ExporterCollector",
    "Response",
    "Snapshot",
    "SnapshotReader",
    "SnapshotUnavailable",
    "create",
    "families",
    "parse_duration",
    "window_end",
    "windows_for",
]

log = logging.getLogger("storepulse.exporter")

T = TypeVar("T")

# /api/kpis reads every bucket of the range in one pipeline: 7 days of 60 s buckets on 6
# partitions is 60k hashes, the most one request may cost (about the retention, 7 days).
MAX_RANGE_BUCKETS = 10_080
# One Redis read must not hold an HTTP thread forever; Prometheus' default scrape timeout is 10 s.
REDIS_TIMEOUT_SECONDS = 8.0
# Webhook bodies are a few KB per alert; Alertmanager caps a group's alerts anyway.
MAX_BODY_BYTES = 1 << 20
_DIMENSIONS: tuple[Dimension, ...] = ("channel", "device", "country")
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


def parse_duration(text: str) -> int:
    """Seconds from '900', '15m', '1h' or '7d'."""
    value = text.strip()
    factor = _UNITS.get(value[-1:], 1)
    digits = value[:-1] if value[-1:] in _UNITS else value
    if not digits.isdigit() or int(digits) * factor <= 0:
        raise ValueError(f"expected a positive duration like 15m, 1h, 7d, got {text!r}")
    return int(digits) * factor


def _epoch_s(text: str) -> int:
    return parse_ts(int(text) if text.lstrip("-").isdigit() else text) // 1_000


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, data: object) -> Response:
    return Response(status, "application/json", json.dumps(data).encode() + b"\n")


class _LoopThread:
    """An asyncio loop in its own thread: the redis.asyncio client lives and is used there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="exporter-redis", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = REDIS_TIMEOUT_SECONDS) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: Exporter


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "storepulse-exporter"

    def do_GET(self) -> None:
        self._reply(self._handle("GET", self.headers.get("Accept"), b""))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(_json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"}))
            return
        self._reply(self._handle("POST", None, self.rfile.read(length)))

    def _handle(self, method: str, accept: str | None, body: bytes) -> Response:
        try:
            return self.server.app.handle(method, self.path, accept, body)
        except Exception as exc:
            # One bad request must not kill the server; the log has the traceback.
            log.exception("%s %s failed", method, self.path)
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _reply(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a scrape timeout, a closed tab); nothing to tell it.
            log.debug("client %s went away before the response", self.address_string())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class Exporter:
    """The exporter: an HTTP server (threads) and a Redis client on its own asyncio loop.

    Stateless apart from a 1 s snapshot cache and the webhook alerts, so several exporters may
    serve the same Redis. start() and stop() are explicit; use it as a context manager.
    """

    def __init__(
        self,
        settings: Settings,
        host: str | None = None,
        port: int | None = None,
        alertmanager_url: str | None = None,
        cache_seconds: float = MAX_CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.host = settings.exporter_host if host is None else host
        self.port = settings.exporter_port if port is None else port
        self.alertmanager_url = alertmanager_url
        self.clock = clock
        self.alerts = AlertBook()
        self.registry = CollectorRegistry()
        self._loop = _LoopThread()
        self._client = connect(settings)
        self.store = FunnelStore(self._client, settings)
        self.reader = SnapshotReader(self.store, settings, clock)
        self.snapshots = CachedSnapshots(self._read, cache_seconds)
        create(self.registry, self.snapshots.get, settings)
        ProcessCollector(registry=self.registry)
        self._kpi_cache: dict[str, tuple[float, Response]] = {}
        self._kpi_lock = threading.Lock()
        self._server: _Server | None = None
        self._serving: threading.Thread | None = None

    # Lifecycle ---------------------------------------------------------------------------

    def start(self) -> Exporter:
        self._loop.start()
        try:
            server = _Server((self.host, self.port), _Handler)
        except OSError:
            self._close_redis()
            raise
        server.app = self
        self._server = server
        self.port = int(server.server_address[1])  # port 0: the one the OS picked
        self._serving = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="exporter-http"
        )
        self._serving.start()
        log.info("exporter serving %s (metrics /metrics, board /, API /api/kpis)", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._serving is not None:
            self._serving.join()
            self._serving = None
        self._close_redis()

    def _close_redis(self) -> None:
        if self._loop.thread.is_alive():
            self._loop.run(self._client.aclose())
        self._loop.stop()

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Redis ---------------------------------------------------------------------------------

    def _read(self) -> Snapshot:
        try:
            return self._loop.run(self.reader.read())
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cannot read Redis at %s: %s", self.settings.redis_url, exc)
            raise SnapshotUnavailable(f"cannot read Redis: {exc}") from exc

    async def _ping(self) -> None:
        await self._client.ping()

    # Routes --------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, accept: str | None = None, body: bytes = b""
    ) -> Response:
        """Route one request (the HTTP layer only moves bytes)."""
        parts = urlsplit(target)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if path == "/api/alerts":
            if method == "POST":
                return self._post_alerts(body)
            return _json(200, alerts_response(self.alerts, self.alertmanager_url))
        if method != "GET":
            return _json(405, {"error": f"{method} not allowed on {path}"})
        try:
            if path == "/metrics":
                return self._metrics(accept)
            if path == "/api/kpis":
                return self._kpis(parts.query, query)
            if path == "/healthz":
                self._loop.run(self._ping(), timeout=2.0)
                return _json(200, {"status": "ok"})
        except (SnapshotUnavailable, RedisError, OSError, TimeoutError) as exc:
            text = f"redis unavailable: {exc}\n".encode()
            return Response(503, "text/plain; charset=utf-8", text)
        if path in _ASSETS:
            name, content_type = _ASSETS[path]
            data = resources.files("streams").joinpath("board", name).read_bytes()
            return Response(200, content_type, data)
        return _json(404, {"error": f"no route {path}"})

    def _metrics(self, accept: str | None) -> Response:
        encoder, content_type = choose_encoder(accept or "")
        return Response(200, content_type, encoder(self.registry))

    def _post_alerts(self, body: bytes) -> Response:
        try:
            firing = self.alerts.receive(json.loads(body or b"null"))
        except (ValueError, WebhookError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"status": "ok", "firing": firing})

    def _kpis(self, raw_query: str, query: Mapping[str, str]) -> Response:
        # The board polls every few seconds per viewer: identical queries share a 1 s result.
        now = time.monotonic()
        with self._kpi_lock:
            for key in [k for k, (at, _) in self._kpi_cache.items() if now - at > 1.0]:
                del self._kpi_cache[key]
            cached = self._kpi_cache.get(raw_query)
        if cached is not None:
            return cached[1]
        try:
            from_s, to_s, by = self._kpi_range(query)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        report = self._loop.run(kpi_report(self.store, self.settings, from_s, to_s, by))
        response = _json(200, report)
        with self._kpi_lock:
            self._kpi_cache[raw_query] = (now, response)
        return response

    def _kpi_range(self, query: Mapping[str, str]) -> tuple[int, int, Dimension | None]:
        """[from, to) and the breakdown of /api/kpis; `to` defaults to the window end."""
        unknown = set(query) - {"from", "to", "window", "by"}
        if unknown:
            raise ValueError(f"unknown parameters: {', '.join(sorted(unknown))}")
        by = query.get("by") or None
        if by is not None and by not in _DIMENSIONS:
            raise ValueError(f"by must be one of {', '.join(_DIMENSIONS)}")
        if "from" in query and "window" in query:
            raise ValueError("give either from (with an optional to) or window, not both")
        to_s = _epoch_s(query["to"]) if "to" in query else self._loop.run(self.reader.window_end())
        if "from" in query:
            from_s = _epoch_s(query["from"])
        else:
            from_s = to_s - parse_duration(query.get("window", "15m"))
        if to_s <= from_s:
            raise ValueError("to must be after from")
        if (to_s - from_s) // self.settings.bucket_seconds > MAX_RANGE_BUCKETS:
            raise ValueError(f"range over {MAX_RANGE_BUCKETS} buckets; ask for a shorter one")
        known: Dimension | None = next((d for d in _DIMENSIONS if d == by), None)
        return from_s, to_s, known
