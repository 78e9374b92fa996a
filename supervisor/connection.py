"""Connecting to Redis from a URL: ``redis://``, ``rediss://`` (TLS), ``unix://``.

Password, ACL user and db number come in the URL as redis-py reads them, e.g.
``redis://user:secret@host:6380/2`` or ``unix:///run/redis.sock?db=1``.
"""

from __future__ import annotations

import os

import redis

REDIS_URL_ENV = "REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_SOCKET_TIMEOUT_S = 5.0  # per connect and per reply; blocking reads use their own


class ConfigurationError(ValueError):
    """A setting that cannot work (bad URL, bad option); the message is one line."""


def resolve_redis_url(redis_url: str | None = None) -> str:
    """The URL given, else ``$REDIS_URL``, else redis://127.0.0.1:6379/0."""
    return redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def connect(redis_url: str | None = None, **options: object) -> redis.Redis:
    """A client for ``redis_url`` (see ``resolve_redis_url``), decoding replies as str."""
    url = resolve_redis_url(redis_url)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"unsupported Redis URL {url!r}: use redis://, rediss:// or unix://"
        )
    options.setdefault("decode_responses", True)
    options.setdefault("health_check_interval", 30)
    # A frozen or unreachable server is an error, never a hang: redis-py before 8
    # waits forever by default. The URL (``?socket_timeout=``) still overrides these.
    options.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT_S)
    options.setdefault("socket_connect_timeout", DEFAULT_SOCKET_TIMEOUT_S)
    try:
        return redis.Redis.from_url(url, **options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from None
