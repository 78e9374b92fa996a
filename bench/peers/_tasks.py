"""The task bodies every system runs, so each one executes the same work.

Imports only ``os``, ``time`` and ``redis``: RQ imports the task module in every forked
job process, and a heavy import here would be charged to it.
"""

from __future__ import annotations

import os
import time

import redis

COUNTER_KEY = "bench:counter"
LATENCY_KEY = "bench:latency"
URL_ENV = "BENCH_REDIS_URL"

_client: redis.Redis | None = None


def task_client() -> redis.Redis:
    """One client per worker process (redis-py's pool re-creates itself after fork)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ[URL_ENV])
    return _client


def do_noop() -> int:
    task_client().incr(COUNTER_KEY)
    return 1


def do_latency(i: int) -> int:
    started = time.time()
    task_client().rpush(LATENCY_KEY, f"{i}:{started!r}")
    return 1


def do_sleep(seconds: float = 0.01) -> int:
    time.sleep(seconds)
    task_client().incr(COUNTER_KEY)
    return 1


def burn(iters: int) -> int:
    """A fixed amount of pure-Python CPU work (the orchestrator calibrates iters to ~5 ms)."""
    acc = 0
    for i in range(iters):
        acc = (acc + i * i) % 1_000_003
    return acc


def do_cpu(iters: int) -> int:
    burn(iters)
    task_client().incr(COUNTER_KEY)
    return 1
