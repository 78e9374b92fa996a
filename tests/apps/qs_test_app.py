"""Tasks for the supervisor tests. They record what they do in Redis.

``QS_TEST_REDIS_URL`` and ``QS_TEST_PREFIX`` (set by the test harness) say where.
``record`` keeps, per job number ``n``: start/end times, the pid that ran it and
how often it started. Its first run sleeps ``seconds``; a re-run (after its child
died) sleeps ``retry_seconds``, so recovered jobs finish quickly.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from supervisor import task

VERSION = 1

_client: tuple[int, redis.Redis] | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (
            os.getpid(),
            redis.Redis.from_url(os.environ["QS_TEST_REDIS_URL"], decode_responses=True),
        )
    return _client[1]


def _key(name: str) -> str:
    return f"{os.environ['QS_TEST_PREFIX']}:test:{name}"


@task(name="record", timeout=120, retries=3, backoff="fixed", backoff_s=0.1)
def record(params: dict[str, Any]) -> dict[str, Any]:
    r = _redis()
    n = str(params["n"])
    runs = r.hincrby(_key("runs"), n, 1)
    r.hset(_key("start"), n, time.time())
    r.hset(_key("pid"), n, os.getpid())
    time.sleep(float(params.get("seconds", 0) if runs == 1 else params.get("retry_seconds", 0)))
    r.hset(_key("end"), n, time.time())
    return {"n": n, "version": VERSION, "pid": os.getpid()}


_HOARD: list[bytes] = []


@task(name="hog", timeout=60, retries=0)
def hog(params: dict[str, Any]) -> dict[str, int]:
    """Keep ``mib`` MiB alive in this process (touched, so it counts in RSS)."""
    _HOARD.append(b"x" * (int(params["mib"]) * 1024 * 1024))
    return {"pid": os.getpid()}


@task(name="suicide", timeout=60, retries=10, backoff="fixed", backoff_s=0.1)
def suicide(params: dict[str, Any]) -> None:
    """Kill the child running it with SIGKILL, every time: a poison pill."""
    os.kill(os.getpid(), 9)
