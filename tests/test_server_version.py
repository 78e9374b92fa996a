"""The suite runs against the redis-server chosen by $QSUPERVISE_REDIS_SERVER (else
Debian's): scripts/test.sh runs the store tests a second time on Redis 6.2, the oldest
version qsupervise supports."""

from __future__ import annotations

import os

import redis

from supervisor.embedded import REDIS_SERVER_ENV


def test_server_is_a_supported_version(redis_client: redis.Redis) -> None:
    version = str(redis_client.info("server")["redis_version"])
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (6, 2), f"redis-server {version} is older than 6.2"
    if os.environ.get("QSUPERVISE_EXPECT_REDIS_VERSION"):
        expected = os.environ["QSUPERVISE_EXPECT_REDIS_VERSION"]
        assert version.startswith(expected), (
            f"${REDIS_SERVER_ENV} gave redis-server {version}, expected {expected}"
        )
