"""Helpers for the core store tests: the test task registry, an in-process worker
with short intervals, Redis-clock reads and the store's consistency invariant."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import redis

from supervisor import keys as k
from supervisor.queue import DEFAULT_MAX_DEATHS, Queue
from supervisor.task import TaskRegistry, load_app
from supervisor.worker import Worker, running_worker

APPS = Path(__file__).resolve().parent / "apps"
OWNER_A = "host-a/100/aaaa"
OWNER_B = "host-b/200/bbbb"
LONG_LEASE_MS = 60_000


@cache
def core_registry() -> TaskRegistry:
    """The tasks of tests/apps/qs_core_tasks.py."""
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    return load_app("qs_core_tasks")


@contextmanager
def core_worker(q: Queue, **options: Any) -> Iterator[Worker]:
    """A started in-process worker on ``q`` with test-sized intervals, drained on exit."""
    settings: dict[str, Any] = {
        "concurrency": 4,
        "redis_client": q.redis,
        "prefix": q.keys.prefix,
        "registry": core_registry(),
        "lease_ms": 3000,
        "idle_block_s": 0.2,
        "drain_timeout": 10.0,
    }
    settings.update(options)
    with running_worker([q.name], **settings) as worker:
        yield worker


def redis_ms(r: redis.Redis) -> int:
    """Redis's clock in ms (the clock every score and timestamp uses)."""
    seconds, micros = r.time()  # type: ignore[misc]
    return int(seconds) * 1000 + int(micros) // 1000


def record_key(q: Queue, name: str) -> str:
    """Key of a record written by a qs_core_tasks task (see its ``record_key``)."""
    return f"{q.keys.base}:test:{name}"


def index_of(q: Queue, job_id: str) -> list[str]:
    """Every state index (or ``blocked``) that holds ``job_id``."""
    r = q.redis
    names = [*k.STATES, "blocked"]
    with r.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zscore(q.keys.blocked if name == "blocked" else q.keys.state_index(name), job_id)
        scores = pipe.execute()
    return [name for name, score in zip(names, scores, strict=True) if score is not None]


def state_of(q: Queue, job_id: str) -> str | None:
    return q.redis.hget(q.keys.job(job_id), "state")  # type: ignore[return-value]


def job_hash_ids(q: Queue) -> set[str]:
    """Ids of every job hash of ``q`` (log lists and test records excluded)."""
    out = set()
    for key in q.redis.scan_iter(match=f"{q.keys.job_prefix}*", count=1000):
        rest = key[len(q.keys.job_prefix) :]
        if ":" not in rest:
            out.add(rest)
    return out


def assert_consistent(q: Queue) -> dict[str, str]:
    """The store's invariant; returns job id -> state.

    Every job id is in exactly one state index (or ``blocked``), its hash's
    ``state`` agrees (blocked jobs are ``queued``), every indexed id has a hash and
    every hash is indexed; ``counts()`` equals the index sizes and
    ``counts_by_task()`` the jobs per task and state; only active jobs carry an
    owner and lease; each held resource is held by an active job with that
    resource id, each blocked job waits in its resource's list and each job in a
    resource's list is blocked.
    """
    r = q.redis
    names = [*k.STATES, "blocked"]
    with r.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zrange(q.keys.blocked if name == "blocked" else q.keys.state_index(name), 0, -1)
        pipe.hgetall(q.keys.resources)
        *indexes, resources = pipe.execute()
    where: dict[str, str] = {}
    for name, ids in zip(names, indexes, strict=True):
        for job_id in ids:
            assert job_id not in where, f"job {job_id} is in both {where[job_id]} and {name}"
            where[job_id] = name
    hashes = job_hash_ids(q)
    assert set(where) == hashes, (
        f"indexed without a hash: {sorted(set(where) - hashes)}; "
        f"hash without an index: {sorted(hashes - set(where))}"
    )
    wait_keys = list(r.scan_iter(match=f"{q.keys.resource_wait_prefix}*", count=1000))
    with r.pipeline(transaction=False) as pipe:
        for job_id in where:
            pipe.hgetall(q.keys.job(job_id))
        for key in wait_keys:
            pipe.lrange(key, 0, -1)
        replies = pipe.execute()
    rows = dict(zip(where, replies[: len(where)], strict=True))
    waiting = dict(zip(wait_keys, replies[len(where) :], strict=True))

    by_task_state: Counter[str] = Counter()
    states: dict[str, str] = {}
    for job_id, index in where.items():
        fields = rows[job_id]
        expected = k.QUEUED if index == "blocked" else index
        assert fields.get("state") == expected, (
            f"job {job_id} is in index {index} but its hash says {fields.get('state')!r}"
        )
        for field in ("owner", "lease"):
            assert (field in fields) == (expected == k.ACTIVE), (
                f"job {job_id} ({expected}) has {field}={fields.get(field)!r}"
            )
        if index == "blocked":
            wait_key = q.keys.resource_wait(fields["resource_id"])
            assert job_id in waiting.get(wait_key, []), (
                f"blocked job {job_id} is not in its resource's wait list"
            )
        by_task_state[f"{fields['task']}|{expected}"] += 1
        states[job_id] = expected
    for key, ids in waiting.items():
        for job_id in ids:
            assert where.get(job_id) == "blocked", f"{key} lists {job_id}, which is not blocked"
    for resource, holder in resources.items():
        assert states.get(holder) == k.ACTIVE, f"resource {resource} held by {holder}, not active"
        assert rows[holder].get("resource_id") == resource

    counts = q.counts()
    for state in k.STATES:
        indexed = sum(1 for s in states.values() if s == state)
        assert counts[state] == indexed, f"counts()[{state!r}] = {counts[state]}, {indexed} jobs"
    by_task = {
        f"{task}|{state}": n
        for task, row in q.counts_by_task().items()
        for state, n in row.items()
        if n
    }
    assert by_task == dict(by_task_state), f"counts_by_task: {by_task} but jobs: {by_task_state}"
    return states


def sweep_until_empty(
    redis_url: str, prefix: str, queue: str, limit: int, barrier: tuple[str, int] | None = None
) -> list[str]:
    """Run sweep.lua (``limit`` jobs a call) until it moves nothing; return the ids
    this caller moved. Runs in a thread or a spawned process, on its own connection.
    ``barrier`` (key, parties): start only once that many callers have arrived."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        q = Queue(queue, redis=client, prefix=prefix)
        if barrier is not None:
            key, parties = barrier
            client.incr(key)
            deadline = time.monotonic() + 30
            while int(client.get(key) or 0) < parties:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {client.get(key)} of {parties} sweepers arrived")
                time.sleep(0.001)  # a start line for racers, not synchronisation of results
        moved: list[str] = []
        while True:
            ids = q._run("sweep", [DEFAULT_MAX_DEATHS, limit])
            if not ids:
                return moved
            moved.extend(ids)
    finally:
        client.close()
