"""The Redis client of every process, from the settings (URL, password, timeouts)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.settings import Settings

__all__ = ["connect", "ping"]


def connect(settings: Settings) -> aioredis.Redis:
    """An asyncio Redis client for the configured URL (and password, when set)."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.redis_url,
        password=password,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
    )
    return client


# A health probe answers fast or not at all (a dead host would take the 5 s connect timeout).
PING_TIMEOUT_SECONDS = 3.0


async def ping(client: aioredis.Redis) -> None:
    """One PING; raises what redis-py raises when Redis does not answer it within 3 s."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            await client.ping()
    except TimeoutError:
        raise RedisTimeoutError(f"no answer to PING within {PING_TIMEOUT_SECONDS:g} s") from None
