"""The exporter process: its Redis client on an asyncio loop, and the HTTP server in front."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from streams.exporter.alerts import AlertBook
from streams.exporter.cache import MAX_CACHE_SECONDS, SingleFlightCache
from streams.exporter.routes import Response, Routes
from streams.exporter.snapshot import SnapshotReader
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore

__all__ = ["Exporter"]

log = logging.getLogger("storepulse.exporter")

T = TypeVar("T")

# One Redis read must not hold an HTTP thread forever; Prometheus' default scrape timeout is 10 s.
REDIS_TIMEOUT_SECONDS = 8.0
# Webhook bodies are a few KB per alert; Alertmanager caps a group's alerts anyway.
MAX_BODY_BYTES = 1 << 20


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
        text = self.headers.get("Content-Length", "0").strip()
        # Not a number would raise here (no answer at all); a negative one would read until the
        # client closes the connection; an empty one is no length either.
        if not text.isascii() or not text.isdigit():
            self._reply(Response(400, "application/json", b'{"error": "bad Content-Length"}\n'))
            return
        # Over 7 digits is over 1 MiB (and int() refuses 4,300 digits with its own error).
        length = int(text) if len(text) <= 7 else MAX_BODY_BYTES + 1
        if length > MAX_BODY_BYTES:
            self._reply(Response(413, "application/json", b'{"error": "body too large"}\n'))
            return
        self._reply(self._handle("POST", None, self.rfile.read(length)))

    def _handle(self, method: str, accept: str | None, body: bytes) -> Response:
        try:
            return self.server.app.run(
                self.server.app.routes.handle(method, self.path, accept, body)
            )
        except TimeoutError:
            text = b"redis unavailable: no answer within the time limit\n"
            return Response(503, "text/plain; charset=utf-8", text)

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
    """The exporter: an HTTP server and a Redis client on its own asyncio loop.

    Stateless apart from the 1 s cache and the webhook alerts, so several exporters may serve
    the same Redis. start() and stop() are explicit; use it as a context manager.
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
        self.alerts = AlertBook()
        self._loop = _LoopThread()
        self._client = connect(settings)
        self.store = FunnelStore(self._client, settings)
        self.cache = SingleFlightCache(cache_seconds)
        self.routes = Routes(
            settings,
            self.store,
            SnapshotReader(self.store, settings, clock),
            self.cache,
            self.alerts,
            self._client.ping,
            alertmanager_url,
        )
        self._server: _Server | None = None
        self._serving: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = REDIS_TIMEOUT_SECONDS) -> T:
        """Run a coroutine on the exporter's loop (from any other thread) and wait for it."""
        return self._loop.run(coro, timeout)

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
