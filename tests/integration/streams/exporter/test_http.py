"""The exporter's HTTP layer on a real socket: malformed requests get an answer, never silence."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from streams.exporter import Exporter
from streams.settings import Settings
from tests import harness


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


@pytest.fixture
def exporter(redis_url: str) -> Iterator[Exporter]:
    settings = Settings(redis_url=redis_url, topic=harness.unique("http"), exporter_port=0)
    with Exporter(settings, port=0) as running:
        yield running


def send(exporter: Exporter, request: bytes, timeout: float = 5) -> Answer:
    """Raw bytes to the server (no client library to fix them up), and its answer."""
    with socket.create_connection((exporter.host, exporter.port), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, headers, response.read())


def post(path: str, body: bytes, length: str | None = None) -> bytes:
    size = str(len(body)) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {size}\r\nConnection: close\r\n\r\n".encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()


def test_a_webhook_body_that_is_not_json_is_a_400(exporter: Exporter) -> None:
    answer = send(exporter, post("/api/alerts", b'{"alerts": [ not json'))
    assert answer.status == 400
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-length"] == str(len(answer.body))
    assert "Expecting value" in answer.json()["error"]
    # The same body, well formed, is taken.
    good = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "X"}}]})
    assert send(exporter, post("/api/alerts", good.encode())).json() == {
        "status": "ok",
        "firing": 1,
    }


def test_an_unknown_path_is_a_404_and_a_bad_query_a_400(exporter: Exporter) -> None:
    answer = send(exporter, get("/no/such/page?x=1"))
    assert (answer.status, answer.json()) == (404, {"error": "no route /no/such/page"})
    answer = send(exporter, get("/api/kpis?window=soon"))
    assert answer.status == 400
    assert "expected a positive duration" in answer.json()["error"]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " ", "9" * 5_000])
def test_a_bad_content_length_is_answered_at_once(exporter: Exporter, length: str) -> None:
    started = time.monotonic()
    answer = send(exporter, post("/api/alerts", b"{}", length=length))
    # Not a silent close (a ValueError in the handler), not a read until the client gives up.
    assert time.monotonic() - started < 2
    if length.startswith("9"):
        assert (answer.status, answer.json()) == (413, {"error": "body too large"})
    else:
        assert (answer.status, answer.json()) == (400, {"error": "bad Content-Length"})


def test_a_body_over_1_mib_is_refused_unread(exporter: Exporter) -> None:
    # Only the headers are sent: the server answers without waiting for 2 MiB that never come.
    answer = send(exporter, post("/api/alerts", b"", length=str(2 << 20)))
    assert (answer.status, answer.json()) == (413, {"error": "body too large"})


def test_a_malformed_request_line_is_a_400(exporter: Exporter) -> None:
    # An unescaped space in the path: four words on the request line.
    answer = send(exporter, b"GET /api/kpis?window=15 m HTTP/1.1\r\nHost: test\r\n\r\n")
    assert answer.status == 400
    assert b"Bad request syntax" in answer.body
    # The server still serves the next request.
    assert send(exporter, get("/healthz")).json() == {"status": "ok"}
