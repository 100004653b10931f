"""The exporter process: an aiohttp server and the Redis client on one asyncio loop thread."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from streams.exporter.alerts import AlertBook
from streams.exporter.cache import MAX_CACHE_SECONDS, SingleFlightCache
from streams.exporter.metrics import ExporterStats
from streams.exporter.routes import BodyReader, RequestError, Response, Routes
from streams.exporter.snapshot import SnapshotReader
from streams.settings import Settings
from streams.store.client import connect
from streams.store.funnel import FunnelStore

__all__ = ["Exporter", "Limits"]

log = logging.getLogger("storepulse.exporter")

T = TypeVar("T")

# One Redis read must not hold a request forever; Prometheus' default scrape timeout is 10 s.
REDIS_TIMEOUT_SECONDS = 8.0
# File descriptors kept for everything but client connections (Redis pool, logs, Python).
_RESERVED_FDS = 64
# After an answer to a request whose body was not read, its rest is read and dropped this
# long before the connection closes (closing with unread data would reset the connection and
# could destroy the answer before the client read it).
_LINGER_SECONDS = 2.0
# stop(): requests in progress get this long to finish.
_SHUTDOWN_SECONDS = 3.0
_ERROR_TEXT_CHARS = 200


@dataclass(frozen=True)
class Limits:
    """What one exporter process accepts (docs/exporter.md, "Limits and errors")."""

    # Requests handled at once; beyond, 503 with Retry-After at once. 50 board viewers and a
    # few Prometheus servers need ~50 at the worst instant; each waits for one shared read.
    max_in_flight: int = 256
    # Open connections; at the limit a new one closes the oldest idle one (and is refused when
    # none is idle). A connection costs a file descriptor and a few KB, never a thread.
    max_connections: int = 1_000
    # Connections the kernel queues before they are accepted (Linux caps it at somaxconn).
    backlog: int = 1_024
    # Webhook bodies are ~1 KB per alert; Alertmanager sends its group's alerts in one post.
    max_body_bytes: int = 1 << 20
    # A connection's next request headers must be complete within this after it opened or
    # after its previous answer; then it is closed (idle, slow or stuck clients).
    idle_timeout_s: float = 15.0
    # A body must arrive within this after its headers (408); less than the answer's limit.
    body_timeout_s: float = 5.0
    # The whole answer, Redis and Alertmanager included, within this (503 otherwise).
    response_timeout_s: float = REDIS_TIMEOUT_SECONDS


def _error(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps({"error": text}).encode() + b"\n"
    return Response(status, "application/json", body, headers)


def _web_response(answer: Response) -> web.Response:
    headers = {"Content-Type": answer.content_type, "Cache-Control": "no-store"}
    headers.update(answer.headers)
    return web.Response(status=answer.status, body=answer.body, headers=headers)


def _raw(answer: Response) -> bytes:
    """A whole HTTP/1.1 answer as bytes, for a connection refused before any request."""
    head = [
        f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in answer.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + answer.body


_BUSY = _error(503, "busy: too many requests in progress; retry", (("Retry-After", "1"),))
_REFUSED = _raw(_error(503, "busy: too many connections; retry", (("Retry-After", "1"),)))


def _parse_error_text(status: int, exc: BaseException | None, message: str | None) -> str:
    """One line for a request the parser refused, e.g. "bad Content-Length: abc"."""
    if isinstance(exc, LineTooLong):
        return "request line or header over 8,190 bytes"
    lines = [line.strip() for line in (message or HTTPStatus(status).phrase).splitlines()]
    # llhttp's messages: "Invalid character in Content-Length:", then the line it choked on.
    head = lines[0].rstrip(": ")
    shown = next((line for line in lines[1:] if line.startswith(("b'", 'b"'))), "")
    if shown:
        head = f"{head} ({shown[2:-1]})"
    return head[:_ERROR_TEXT_CHARS]


class _Connection(web.RequestHandler):
    """aiohttp's protocol of one connection; what it cannot parse is answered in JSON."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("request from %s failed", request.remote, exc_info=exc)
        else:
            # A malformed request is the client's fault: one line, no traceback.
            log.info("bad request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started; no other answer can be sent")
        response = _web_response(_error(status, _parse_error_text(status, exc, message)))
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's low-level server, with a connection limit that closes idle connections first."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        max_connections: int,
        stats: ExporterStats,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self.stats = stats
        self._handler_kwargs = kwargs
        # In the order they opened: the first idle one is the oldest idle one.
        self.open: dict[web.RequestHandler, None] = {}
        self.busy: set[web.RequestHandler] = set()  # in our handler: reading, answering

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open[handler] = None
        if len(self.open) <= self.max_connections:
            return
        self.stats.shed["connections"] += 1
        idle = next((h for h in self.open if h not in self.busy and h is not handler), None)
        if idle is not None:
            # An idle client is cheaper to lose than a new one: it reconnects when it needs to.
            del self.open[idle]
            idle.force_close()
        else:
            del self.open[handler]
            transport.write(_REFUSED)  # close() sends what is buffered first
            handler.force_close()

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        self.open.pop(handler, None)
        self.busy.discard(handler)
        super().connection_lost(handler, exc)


def connection_limit(wanted: int) -> int:
    """wanted, or fewer when the file descriptor limit (ulimit -n) leaves less room."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - _RESERVED_FDS))


class _LoopThread:
    """An asyncio loop in its own thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run coro there from another thread and wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def offload(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run coro there from another loop; cancelling the awaitable cancels it there too."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class Exporter:
    """The exporter: an aiohttp server on one asyncio loop, the Redis client on another.

    The HTTP loop thread runs aiohttp, the routes and the cache; the Redis loop thread reads
    Redis and renders what it read. Parsing a scrape's ~70,000 Redis replies in pure Python
    takes ~100 ms of CPU; on its own thread it holds up an answer by no more than the
    interpreter's switch interval (`storepulse exporter` sets 1 ms), instead of stalling
    every request meanwhile.

    Stateless apart from the 1 s cache and the webhook alerts, so several exporters may serve
    the same Redis. start() and stop() are explicit and synchronous (the CLI and tests call
    them from their own thread); use it as a context manager.
    """

    def __init__(
        self,
        settings: Settings,
        host: str | None = None,
        port: int | None = None,
        alertmanager_url: str | None = None,
        cache_seconds: float = MAX_CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
        limits: Limits | None = None,
        prometheus_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.host = settings.exporter_host if host is None else host
        self.port = settings.exporter_port if port is None else port
        self.limits = Limits() if limits is None else limits
        self.stats = ExporterStats()
        self.alerts = AlertBook()
        self._loop = _LoopThread("exporter-http")
        self._redis_loop = _LoopThread("exporter-redis")
        self._client = connect(settings)
        self.store = FunnelStore(self._client, settings)
        # A hit on a value past half its age refreshes it in the background: under steady
        # traffic no request waits for Redis, and none gets a value older than cache_seconds.
        self.cache = SingleFlightCache(cache_seconds, refresh_after=cache_seconds / 2)
        self.routes = Routes(
            settings,
            self.store,
            SnapshotReader(self.store, settings, clock),
            self.cache,
            self.alerts,
            self._client.ping,
            alertmanager_url,
            self.stats,
            self._redis_loop.offload,
            prometheus_url=prometheus_url,
        )
        self._runner: web.ServerRunner | None = None
        self._server: _Server | None = None
        self.in_flight = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = REDIS_TIMEOUT_SECONDS) -> T:
        """Run a coroutine on the exporter's loop (from any other thread) and wait for it."""
        return self._loop.run(coro, timeout)

    def start(self) -> Exporter:
        self._redis_loop.start()
        self._loop.start()
        try:
            self.run(self._serve(), timeout=30)
        except BaseException:
            self._close()
            raise
        log.info("exporter serving %s (metrics /metrics, board /, API /api/kpis)", self.url)
        if self.settings.webhook_token is None:
            log.info("webhook POST /api/alerts off: STOREPULSE_WEBHOOK_TOKEN is not set")
        return self

    async def _serve(self) -> None:
        limits = self.limits
        server = _Server(
            self._handle,
            connection_limit(limits.max_connections),
            self.stats,
            keepalive_timeout=limits.idle_timeout_s,
            lingering_time=_LINGER_SECONDS,
            access_log=None,  # a log line per scrape is noise; errors are logged
        )
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        self._server, self._runner = server, runner
        site = web.TCPSite(runner, self.host, self.port, backlog=limits.backlog, reuse_address=True)
        await site.start()
        self.port = site.port  # port 0: the one the OS picked

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """One request: within the in-flight limit, routed, answered within the time limit."""
        assert self._server is not None
        if self.in_flight >= self.limits.max_in_flight:
            self.stats.shed["in_flight"] += 1
            return await _send(request, _BUSY)
        self.in_flight += 1
        self._server.busy.add(request.protocol)
        try:
            try:
                answer = await asyncio.wait_for(
                    self.routes.handle(
                        request.method,
                        request.raw_path,
                        request.headers.get("Accept"),
                        self._body(request),
                        content_type=request.headers.get("Content-Type"),
                        authorization=request.headers.get("Authorization"),
                    ),
                    self.limits.response_timeout_s,
                )
            except TimeoutError:
                text = b"redis unavailable: no answer within the time limit\n"
                answer = Response(503, "text/plain; charset=utf-8", text)
            # Written here, so the connection counts as busy until its answer is out.
            return await _send(request, answer)
        finally:
            self.in_flight -= 1
            self._server.busy.discard(request.protocol)

    def _body(self, request: web.BaseRequest) -> BodyReader:
        limits = self.limits
        too_large = f"body over {limits.max_body_bytes:,} bytes"

        async def read() -> bytes:
            declared = request.content_length  # the parser refused a malformed one: 400
            if declared is not None and declared > limits.max_body_bytes:
                raise RequestError(413, too_large, "too_large")  # refused unread
            body = bytearray()
            try:
                async with asyncio.timeout(limits.body_timeout_s):
                    async for chunk in request.content.iter_any():
                        body += chunk
                        if len(body) > limits.max_body_bytes:
                            raise RequestError(413, too_large, "too_large")
            except TimeoutError:
                text = f"the body did not arrive within {limits.body_timeout_s:g} s"
                raise RequestError(408, text, "timeout") from None
            except (web.RequestPayloadError, ConnectionError) as exc:
                raise RequestError(400, f"bad body: {exc}", "malformed") from None
            return bytes(body)

        return read

    def stop(self) -> None:
        self._close()

    def _close(self) -> None:
        try:
            if self._loop.thread.is_alive():
                self.run(self._aclose(), timeout=_SHUTDOWN_SECONDS + 5)
            if self._redis_loop.thread.is_alive():
                self._redis_loop.run(self._client.aclose(), timeout=5)
        except Exception:
            log.exception("exporter: stopping failed")
        self._loop.stop()
        self._redis_loop.stop()

    async def _aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.cache.aclose()
        await self.routes.aclose()

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


async def _send(request: web.BaseRequest, answer: Response) -> web.StreamResponse:
    response = _web_response(answer)
    if answer.status in (408, 413):
        response.force_close()  # the rest of the body is not read as a next request
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        # The client gave up (a scrape timeout, a closed tab); nothing to tell it.
        log.debug("client %s went away before the answer", request.remote)
    return response
