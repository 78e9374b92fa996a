"""Tasks for the core store tests (tests/test_enqueue.py and friends), run in-process.

Each task that records something writes it under its own queue's key base,
``<prefix>:{<queue>}:test:...``, through the running job's Redis client: no
environment needed, and the records share the queue's hash tag.
"""

from __future__ import annotations

import json
import time
from typing import Any

from supervisor import Job, task


def record_key(job: Job, name: str) -> str:
    """Key of a test record of the queue running ``job``."""
    return f"{job.queue.keys.base}:test:{name}"


@task(name="core.echo", retries=0)
def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


@task(name="core.span", retries=0)
def span(params: dict[str, Any], job: Job) -> dict[str, Any]:
    """Record this run's start and end (Redis clock, ms) and sleep ``seconds`` between."""
    r = job.queue.redis
    r.hincrby(record_key(job, "runs"), job.id, 1)
    start = _redis_ms(job)
    time.sleep(float(params.get("seconds", 0)))
    end = _redis_ms(job)
    r.rpush(record_key(job, "spans"), json.dumps([job.id, start, end]))
    return {"id": job.id}


@task(name="core.flaky", retries=5, backoff="fixed", backoff_s=0.05)
def flaky(params: dict[str, Any], job: Job) -> dict[str, Any]:
    """Fail until run ``succeed_on`` (1-based); every run records its start (Redis ms)."""
    r = job.queue.redis
    runs = r.rpush(record_key(job, f"starts:{job.id}"), _redis_ms(job))
    if runs < int(params.get("succeed_on", 1 << 30)):
        raise RuntimeError(f"flaky run {runs}")
    return {"runs": runs}


@task(name="core.fail", retries=0)
def fail(params: dict[str, Any]) -> None:
    raise ValueError(params.get("message", "core.fail always fails"))


@task(name="core.bad_result", retries=0)
def bad_result(params: dict[str, Any]) -> Any:
    return {"not json": object()}


@task(name="core.progress", retries=0)
def progress(params: dict[str, Any], job: Job) -> dict[str, int]:
    steps = int(params.get("steps", 3))
    for i in range(1, steps + 1):
        job.progress(i, steps, {"step": i})
        job.log(f"step {i}/{steps}")
    return {"steps": steps}


@task(name="core.gate", retries=0)
def gate(params: dict[str, Any], job: Job) -> dict[str, Any]:
    """Signal that it started, then wait (up to ``wait_s``) for the test to open the gate."""
    r = job.queue.redis
    r.rpush(record_key(job, f"started:{job.id}"), "1")
    opened = r.blpop([record_key(job, f"gate:{job.id}")], timeout=float(params.get("wait_s", 10)))
    return {"opened": opened is not None}


@task(name="core.sleep", retries=0)
def sleep(params: dict[str, Any]) -> dict[str, float]:
    seconds = float(params.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}


@task(name="core.defaults", timeout=7, retries=4, backoff="fixed", backoff_s=0.25, backoff_max_s=9)
def defaults(params: dict[str, Any]) -> None:
    """Declares defaults that jobs enqueued without their own must get at claim."""


def _redis_ms(job: Job) -> int:
    seconds, micros = job.queue.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
