"""What the routes and the parts they call share: the answer, the refused request, offload."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "BodyReader",
    "Offload",
    "RequestError",
    "Response",
    "json_response",
    "media_type",
    "run_here",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class RequestError(Exception):
    """A request the transport could not read (body too large, too slow): a 4xx answer."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason  # for storepulse_exporter_webhook_refused_total


# The body, read only once the request is authenticated (by the transport, with its limits).
BodyReader = Callable[[], Awaitable[bytes]]


# Runs a coroutine that reads Redis where the Redis client lives (Exporter: its own loop
# thread, so that parsing Redis' answers never holds up the HTTP loop); by default, right here.
class Offload(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, T], /) -> Awaitable[T]: ...


async def run_here(coro: Coroutine[Any, Any, T]) -> T:
    return await coro


def json_response(status: int, data: object, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, "application/json", json.dumps(data).encode() + b"\n", headers)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()
