"""The Redis client of every process, from the settings (URL, password, timeouts)."""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.settings import Settings

__all__ = ["connect"]


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
