"""The exporter's HTTP layer on a real socket: malformed requests get an answer, never silence."""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from streams.exporter import Exporter
from streams.exporter.routes import Response
from streams.exporter.server import Limits
from streams.settings import Settings
from tests import harness

TOKEN = "integration-webhook-token"
AUTH = f"Bearer {TOKEN}"
# Short timeouts, so that what they bound is seen in seconds.
QUICK = Limits(idle_timeout_s=2.0, body_timeout_s=1.0)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "topic": harness.unique("http"),
        "exporter_port": 0,
        "webhook_token": TOKEN,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def exporter(redis_url: str) -> Iterator[Exporter]:
    with Exporter(settings_for(redis_url), port=0, limits=QUICK) as running:
        yield running


def send(exporter: Exporter, request: bytes, timeout: float = 5) -> Answer:
    """Raw bytes to the server (no client library to fix them up), and its answer."""
    with socket.create_connection((exporter.host, exporter.port), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, headers, response.read())


def post(
    path: str,
    body: bytes,
    length: str | None = None,
    content_type: str = "application/json",
    authorization: str | None = AUTH,
) -> bytes:
    size = str(len(body)) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
    if authorization is not None:
        head += f"Authorization: {authorization}\r\n"
    return f"{head}Content-Length: {size}\r\nConnection: close\r\n\r\n".encode() + body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n".encode()


def firing(name: str = "X", fingerprint: str = "f1") -> bytes:
    alert = {"status": "firing", "labels": {"alertname": name}, "fingerprint": fingerprint}
    return json.dumps({"version": "4", "alerts": [alert]}).encode()


def board_alerts(exporter: Exporter) -> list[str]:
    return [a["name"] for a in send(exporter, get("/api/alerts")).json()["alerts"]]


# The webhook -------------------------------------------------------------------------------


def test_a_webhook_body_that_is_not_json_is_a_400(exporter: Exporter) -> None:
    answer = send(exporter, post("/api/alerts", b'{"alerts": [ not json'))
    assert answer.status == 400
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-length"] == str(len(answer.body))
    assert "Expecting value" in answer.json()["error"]
    # The same body, well formed, is taken.
    assert send(exporter, post("/api/alerts", firing())).json() == {
        "status": "ok",
        "firing": 1,
        "dropped": 0,
    }


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer guess-the-token-123456", 401), (f"Basic {TOKEN}", 401), (AUTH, 200)],
)
def test_only_the_bearer_token_posts_alerts(
    exporter: Exporter, authorization: str | None, status: int
) -> None:
    answer = send(exporter, post("/api/alerts", firing("Forged"), authorization=authorization))
    assert answer.status == status, answer.body
    if status == 401:
        assert answer.headers["www-authenticate"] == 'Bearer realm="storepulse-webhook"'
        assert "bearer token" in answer.json()["error"]
        assert board_alerts(exporter) == []
    else:
        assert board_alerts(exporter) == ["Forged"]


def test_a_forged_resolve_cannot_clear_a_real_alert(exporter: Exporter) -> None:
    assert send(exporter, post("/api/alerts", firing("DeadLetterSurge", "real"))).status == 200
    fingerprint = send(exporter, get("/api/alerts")).json()["alerts"][0]["fingerprint"]
    resolve = json.dumps(
        {"alerts": [{"status": "resolved", "labels": {}, "fingerprint": fingerprint}]}
    ).encode()
    assert send(exporter, post("/api/alerts", resolve, authorization=None)).status == 401
    assert board_alerts(exporter) == ["DeadLetterSurge"]


def test_the_no_cors_post_of_a_page_on_another_origin_is_refused(exporter: Exporter) -> None:
    # What Chromium sends for fetch("http://exporter/api/alerts", {method: "POST",
    # mode: "no-cors", body: JSON.stringify(...)}) from another origin: no preflight, a
    # text/plain body, no Authorization (a page cannot add one in no-cors mode).
    body = firing("CartAbandonmentSpike")
    request = (
        "POST /api/alerts HTTP/1.1\r\n"
        f"Host: {exporter.host}:{exporter.port}\r\n"
        "Connection: keep-alive\r\n"
        f"Content-Length: {len(body)}\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36\r\n"
        "Content-Type: text/plain;charset=UTF-8\r\n"
        "Accept: */*\r\n"
        "Origin: http://evil.example\r\n"
        "Sec-Fetch-Site: cross-site\r\n"
        "Sec-Fetch-Mode: no-cors\r\n"
        "Sec-Fetch-Dest: empty\r\n"
        "Referer: http://evil.example/\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n\r\n"
    ).encode() + body
    answer = send(exporter, request)
    assert answer.status == 401
    assert "access-control-allow-origin" not in answer.headers
    # With the token but text/plain (a page that somehow knew it): still refused, 415.
    typed = post("/api/alerts", body, content_type="text/plain;charset=UTF-8")
    assert send(exporter, typed).status == 415
    assert board_alerts(exporter) == []
    refused = exporter.stats.webhook_refused
    assert (refused["unauthorized"], refused["content_type"]) == (1, 1)


def test_a_flood_of_posts_keeps_the_real_alerts(exporter: Exporter) -> None:
    # Unauthenticated floods change nothing; an authenticated sender's 1,000 alerts of one
    # name leave the DeadLetterSurge on the board.
    assert send(exporter, post("/api/alerts", firing("DeadLetterSurge", "dlq"))).status == 200
    for i in range(50):
        forged = post("/api/alerts", firing("Forged", f"x{i}"), authorization=None)
        assert send(exporter, forged).status == 401
    flood = {
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "CartAbandonmentSpike", "severity": "critical"},
                "fingerprint": f"spike{i}",
            }
            for i in range(1_000)
        ]
    }
    answer = send(exporter, post("/api/alerts", json.dumps(flood).encode())).json()
    assert answer == {"status": "ok", "firing": 1_000, "dropped": 1}
    names = board_alerts(exporter)
    assert names[0] == "CartAbandonmentSpike"  # critical first
    assert names.count("CartAbandonmentSpike") == 999
    assert "DeadLetterSurge" in names
    assert "Forged" not in names
    assert exporter.stats.webhook_refused["unauthorized"] == 50


def test_without_a_token_the_webhook_is_off(redis_url: str) -> None:
    settings = settings_for(redis_url, webhook_token=None)
    with Exporter(settings, port=0) as exporter:
        answer = send(exporter, post("/api/alerts", firing(), authorization=AUTH))
        assert answer.status == 404
        assert "the webhook is off" in answer.json()["error"]
        assert board_alerts(exporter) == []


# Malformed requests --------------------------------------------------------------------------


def test_an_unknown_path_is_a_404_and_a_bad_query_a_400(exporter: Exporter) -> None:
    answer = send(exporter, get("/no/such/page?x=1"))
    assert (answer.status, answer.json()) == (404, {"error": "no route /no/such/page"})
    answer = send(exporter, get("/api/kpis?window=soon"))
    assert answer.status == 400
    assert "expected a positive duration" in answer.json()["error"]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("window=" + "9" * 4_000, "is not a duration"),  # within the request line limit
        ("window=" + "9" * 10_000, "request line or header over 8,190 bytes"),
        ("to=0", "'0' is before 2000-01-01T00:00:00Z"),
        ("from=0&to=1800000000000", "is before 2000-01-01"),
    ],
)
def test_bad_kpi_queries_are_4xx_json_at_once(exporter: Exporter, query: str, needle: str) -> None:
    started = time.monotonic()
    answer = send(exporter, get(f"/api/kpis?{query}"))
    assert time.monotonic() - started < 1
    assert answer.status == 400
    assert needle in answer.json()["error"]
    assert "int_max_str_digits" not in answer.json()["error"]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " ", "9" * 5_000])
def test_a_bad_content_length_is_answered_at_once(exporter: Exporter, length: str) -> None:
    started = time.monotonic()
    answer = send(exporter, post("/api/alerts", b"{}", length=length))
    # Not a silent close, not a read until the client gives up.
    assert time.monotonic() - started < 1
    assert answer.status == 400
    assert "Content-Length" in answer.json()["error"]


def test_a_body_over_1_mib_is_refused_unread(exporter: Exporter) -> None:
    # Only the headers are sent: the server answers without waiting for 2 MiB that never come.
    answer = send(exporter, post("/api/alerts", b"", length=str(2 << 20)))
    assert (answer.status, answer.json()) == (413, {"error": "body over 1,048,576 bytes"})
    assert exporter.stats.webhook_refused["too_large"] == 1


def test_a_body_shorter_than_its_length_is_a_408_within_the_timeout(exporter: Exporter) -> None:
    started = time.monotonic()
    answer = send(exporter, post("/api/alerts", b"{}", length="100"))
    elapsed = time.monotonic() - started
    assert (answer.status, answer.json()) == (408, {"error": "the body did not arrive within 1 s"})
    assert QUICK.body_timeout_s <= elapsed < QUICK.body_timeout_s + 1
    # A GET with a length it does not send is answered at once (its body is not needed).
    started = time.monotonic()
    assert send(exporter, get("/healthz", "Content-Length: 50\r\n")).json() == {"status": "ok"}
    assert time.monotonic() - started < 1


def test_a_malformed_request_line_is_a_400(exporter: Exporter) -> None:
    # An unescaped space in the path: four words on the request line.
    answer = send(exporter, b"GET /api/kpis?window=15 m HTTP/1.1\r\nHost: test\r\n\r\n")
    assert answer.status == 400
    assert answer.json()["error"].startswith("Bad status line")
    # The server still serves the next request.
    assert send(exporter, get("/healthz")).json() == {"status": "ok"}


def test_a_connection_that_never_finishes_its_headers_is_closed(exporter: Exporter) -> None:
    with socket.create_connection((exporter.host, exporter.port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: te")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, without an answer
    assert QUICK.idle_timeout_s - 0.5 < time.monotonic() - started < QUICK.idle_timeout_s + 1.5


# Limits -----------------------------------------------------------------------------------


def test_the_server_listens_with_a_backlog_of_1024(exporter: Exporter) -> None:
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{exporter.port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.split()
    assert listing[0] == "LISTEN"
    assert int(listing[2]) == 1_024  # Send-Q of a listening socket: its backlog


async def _event() -> asyncio.Event:
    return asyncio.Event()


def test_requests_over_the_in_flight_limit_are_503_with_retry_after(redis_url: str) -> None:
    limits = Limits(max_in_flight=2)
    with Exporter(settings_for(redis_url), port=0, limits=limits) as exporter:
        gate = exporter.run(_event())  # an Event of the exporter's loop
        original = exporter.routes.handle

        async def slow(*args: Any, **kwargs: Any) -> Response:
            await gate.wait()
            return await original(*args, **kwargs)

        exporter.routes.handle = slow  # type: ignore[method-assign]
        answers: list[Answer] = []
        threads = [
            threading.Thread(target=lambda: answers.append(send(exporter, get("/healthz"))))
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while len(answers) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = list(answers)  # the three over the limit, answered while two wait
        exporter._loop.loop.call_soon_threadsafe(gate.set)
        for thread in threads:
            thread.join(10)
    assert [a.status for a in busy] == [503] * 3
    assert all(a.headers["retry-after"] == "1" for a in busy)
    assert "too many requests" in busy[0].json()["error"]
    assert sorted(a.status for a in answers) == [200, 200, 503, 503, 503]
    assert exporter.stats.shed["in_flight"] == 3


def _thread_count() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_2000_idle_connections_cost_no_threads_and_are_closed(redis_url: str) -> None:
    limits = Limits(max_connections=500, idle_timeout_s=2.0)
    with Exporter(settings_for(redis_url), port=0, limits=limits) as exporter:
        threads_before = _thread_count()
        idle = []
        try:
            for _ in range(2_000):
                sock = socket.create_connection((exporter.host, exporter.port), timeout=5)
                idle.append(sock)
            # Every connection is taken, none gets a thread (the old server: one each).
            assert _thread_count() <= threads_before
            # At the limit the oldest idle connections were closed for the new ones; a new
            # client is still served at once.
            started = time.monotonic()
            assert send(exporter, get("/healthz")).json() == {"status": "ok"}
            assert time.monotonic() - started < 1
            assert len(exporter._server.open) <= 500  # type: ignore[union-attr]
            assert exporter.stats.shed["connections"] >= 1_500
            # The idle timeout closes the rest: every socket reads end of file.
            poller = select.poll()
            by_fd = {sock.fileno(): sock for sock in idle}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            deadline = time.monotonic() + limits.idle_timeout_s + 3
            while by_fd and time.monotonic() < deadline:
                for fd, _ in poller.poll(200):
                    try:
                        data = by_fd[fd].recv(1024)
                    except ConnectionResetError:
                        data = b""
                    assert data == b""
                    poller.unregister(fd)
                    del by_fd[fd]
            assert not by_fd, f"{len(by_fd)} idle connections still open"
        finally:
            for sock in idle:
                sock.close()
        assert _thread_count() <= threads_before
