"""Bad input: every malformed job ends in failed with a clear reason (or is refused at
enqueue), and the worker keeps going; Redis going away is an error, never a hang.

Malformed jobs are planted straight into Redis, as a client in another language
writing the wire format (README, "Job wire format") by hand might get it wrong.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from waiting import wait_for

from supervisor import EnqueueError, Job, JobFailed, Queue, TaskRegistry, task
from supervisor.embedded import RedisServer, free_port
from supervisor.task import TASK_ATTRIBUTE
from supervisor.worker import Worker, running_worker

QUEUE = "bad"


@task(name="bad.echo", retries=0)
def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


@task(name="bad.raises", retries=1, backoff="fixed", backoff_s=0.05)
def raises(params: dict[str, Any]) -> None:
    raise ValueError(f"cannot handle {params.get('what')}\nsecond line of the message")


@task(name="bad.exits", retries=0)
def exits(params: dict[str, Any]) -> None:
    raise SystemExit(2)  # what argparse does on bad arguments


@task(name="bad.unserialisable", retries=3)
def unserialisable(params: dict[str, Any]) -> dict[str, Any]:
    return {"when": dt.datetime(2024, 1, 1)}


@task(name="bad.nan", retries=3)
def nan(params: dict[str, Any]) -> float:
    return float("nan")


@task(name="bad.slow", retries=0, timeout=60)
def slow(params: dict[str, Any], job: Job) -> dict[str, Any]:
    time.sleep(float(params["seconds"]))
    return {"slept": params["seconds"]}


REGISTRY = TaskRegistry(
    [getattr(f, TASK_ATTRIBUTE) for f in (echo, raises, exits, unserialisable, nan, slow)]
)


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue(QUEUE, redis=redis_client, prefix=prefix)


def bad_worker(url: str, prefix: str, **options: Any) -> contextlib.AbstractContextManager[Worker]:
    """An in-process worker on ``bad`` with the tasks above, drained on exit."""
    settings: dict[str, Any] = {"concurrency": 2, "lease_ms": 3000, "idle_block_s": 0.2}
    settings.update(options)
    return running_worker([QUEUE], redis_url=url, prefix=prefix, registry=REGISTRY, **settings)


@pytest.fixture
def worker(q: Queue, redis_url: str) -> Iterator[Worker]:
    with bad_worker(redis_url, q.keys.prefix) as w:
        yield w


def failed_reason(job: Job, timeout: float = 10.0) -> str:
    """Wait for ``job`` to end; it must fail. Returns its reason."""
    with pytest.raises(JobFailed) as failure:
        job.result(timeout=timeout)
    assert failure.value.state == "failed"
    return failure.value.reason


def assert_worker_keeps_going(q: Queue) -> None:
    assert q.enqueue("bad.echo", {"after": "bad"}).result(timeout=10) == {"after": "bad"}


def plant(q: Queue, job_id: str, state: str = "queued", **fields: str) -> Job:
    """Write a job by hand, as the wire format allows: hash, its state's zset (a
    delayed job is due at once), live count and a wake-up token. ``fields`` override
    the well-formed defaults."""
    now_ms = str(int(time.time() * 1000))
    job = {
        "id": job_id,
        "task": "bad.echo",
        "params": "{}",
        "state": state,
        "priority": "0",
        "max_retries": "0",
        "backoff_type": "fixed",
        "backoff_ms": "0",
        "backoff_max_ms": "0",
        "timeout": "0",
        "resource_id": "",
        "remove_on_complete": "0",
        "front": "0",
        "attempts": "0",
        "created_at": now_ms,
        "run_at": now_ms,
    }
    job.update(fields)
    with q.redis.pipeline(transaction=True) as pipe:
        pipe.hset(q.keys.job(job_id), mapping=job)
        pipe.zadd(q.keys.state_index(state), {job_id: 1})
        pipe.hincrby(q.keys.stats, f"{job['task']}|{state}", 1)
        pipe.rpush(q.keys.notify, "1")
        pipe.execute()
    return Job(q, job_id)


# -- malformed jobs planted in Redis ---------------------------------------------------


def test_params_that_are_not_json_fail_the_job(q: Queue, worker: Worker) -> None:
    job = plant(q, "not-json", params='{"a": 1')
    reason = failed_reason(job)
    assert reason.startswith("malformed job: params are not valid JSON"), reason
    stored = q.job(job.id)
    assert (stored.state, stored.attempts) == ("failed", 1)
    assert q.failed()[0].id == job.id
    assert_worker_keeps_going(q)


def test_an_id_in_the_queue_without_a_job_hash_fails(q: Queue, worker: Worker) -> None:
    q.redis.zadd(q.keys.queued, {"ghost": 1})
    q.redis.rpush(q.keys.notify, "1")
    wait_for(lambda: q.get("ghost"), 10, "the ghost id was never claimed")
    ghost = q.job("ghost")
    assert ghost.state == "failed"
    assert ghost.error == "malformed job: no job hash for this id"
    assert q.job_ids("failed") == ["ghost"]
    assert q.job_ids("queued") == []
    assert_worker_keeps_going(q)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", "many"),
        ("max_retries", "three"),
        ("timeout", "30s"),
        ("deaths", "x"),
        ("priority", "high"),
    ],
)
def test_a_field_that_is_not_a_number_fails_the_job_and_loses_no_other(
    q: Queue, redis_url: str, field: str, value: str
) -> None:
    # Planted before any worker runs, so the bad job shares a claim batch with good ones.
    bad = plant(q, "bad-number", **{field: value})
    good = [q.enqueue("bad.echo", {"n": n}) for n in range(3)]
    with bad_worker(redis_url, q.keys.prefix):
        reason = failed_reason(bad)
        assert reason == f'malformed job: {field} is not a number ("{value}")'
        assert [j.result(timeout=10) for j in good] == [{"n": n} for n in range(3)]
        assert_worker_keeps_going(q)


def test_a_due_delayed_job_with_a_bad_priority_fails_and_is_not_orphaned(
    q: Queue, redis_url: str
) -> None:
    # Promoting it to queued must not stop the claim half-way (Redis does not roll back
    # a failing script: it would have left the job in no index at all).
    bad = plant(q, "bad-priority", state="delayed", priority="high")
    good = q.enqueue("bad.echo", {"n": 1})
    with bad_worker(redis_url, q.keys.prefix):
        assert failed_reason(bad) == 'malformed job: priority is not a number ("high")'
        assert good.result(timeout=10) == {"n": 1}
    assert q.job_ids("failed") == [bad.id]
    assert q.counts()["delayed"] == q.counts()["queued"] == 0


# -- bad tasks -------------------------------------------------------------------------


def test_unknown_task_fails_without_retry(q: Queue, worker: Worker) -> None:
    job = q.enqueue("no.such.task", {"x": 1}, retries=5)
    assert failed_reason(job) == "unknown task 'no.such.task' (not in the worker's task modules)"
    assert q.job(job.id).attempts == 1
    assert_worker_keeps_going(q)


def test_task_that_raises_is_retried_then_fails_with_its_error(q: Queue, worker: Worker) -> None:
    job = q.enqueue("bad.raises", {"what": "this"})
    assert failed_reason(job) == "ValueError: cannot handle this"
    stored = q.job(job.id)
    assert stored.attempts == 2
    assert "ValueError: cannot handle this" in (stored.traceback or "")
    assert "in raises" in (stored.traceback or ""), stored.traceback
    assert [h["error"] for h in stored.history] == ["ValueError: cannot handle this"] * 2
    assert_worker_keeps_going(q)


def test_task_that_calls_sys_exit_fails_and_keeps_its_thread(q: Queue, worker: Worker) -> None:
    jobs = [q.enqueue("bad.exits") for _ in range(worker.concurrency + 1)]
    for job in jobs:
        assert failed_reason(job) == "SystemExit: 2"
    assert worker.snapshot().busy == 0
    # Every executor thread survived: as many slow jobs as threads run side by side.
    slow_jobs = [q.enqueue("bad.slow", {"seconds": 0.3}) for _ in range(worker.concurrency)]
    wait_for(
        lambda: q.counts()["active"] == worker.concurrency,
        10,
        lambda: f"not all executors are running: {q.counts()}",
    )
    for job in slow_jobs:
        job.result(timeout=10)
    assert_worker_keeps_going(q)


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("bad.unserialisable", "Object of type datetime is not JSON serializable"),
        ("bad.nan", "Out of range float values are not JSON compliant"),
    ],
)
def test_result_that_is_not_json_fails_without_retry(
    q: Queue, worker: Worker, name: str, detail: str
) -> None:
    job = q.enqueue(name)
    reason = failed_reason(job)
    assert reason.startswith(f"result of {name!r} is not JSON-serialisable: "), reason
    assert detail in reason
    assert q.job(job.id).attempts == 1
    assert_worker_keeps_going(q)


# -- refused at enqueue ----------------------------------------------------------------


def keys_under(r: redis.Redis, prefix: str) -> list[str]:
    return sorted(r.scan_iter(match=f"{prefix}:*", count=1000))


def test_params_over_the_size_limit_are_refused_and_nothing_is_written(
    redis_client: redis.Redis, prefix: str
) -> None:
    small = Queue(QUEUE, redis=redis_client, prefix=prefix, max_job_bytes=1024)
    with pytest.raises(EnqueueError, match=r"over the limit of 1024 bytes"):
        small.enqueue("bad.echo", {"blob": "x" * 2000})
    with pytest.raises(EnqueueError, match=r"over the limit"):
        small.enqueue_many(
            [
                {"task": "bad.echo", "params": {"n": 1}},
                {"task": "bad.echo", "params": {"blob": "x" * 2000}},
            ]
        )
    assert keys_under(redis_client, prefix) == []
    # The default limit is 512 KiB.
    default = Queue(QUEUE, redis=redis_client, prefix=prefix)
    with pytest.raises(EnqueueError, match=rf"over the limit of {512 * 1024} bytes"):
        default.enqueue("bad.echo", {"blob": "x" * (512 * 1024)})
    assert keys_under(redis_client, prefix) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"when": dt.date(2024, 1, 1)}, "not JSON-serialisable: Object of type date"),
        ({"x": float("inf")}, "not JSON-serialisable: Out of range float"),
        ({1, 2}, "not JSON-serialisable: Object of type set"),
    ],
)
def test_params_that_are_not_json_are_refused(
    redis_client: redis.Redis, prefix: str, params: Any, message: str
) -> None:
    q = Queue(QUEUE, redis=redis_client, prefix=prefix)
    with pytest.raises(EnqueueError, match=message):
        q.enqueue("bad.echo", params)
    assert keys_under(redis_client, prefix) == []


# -- Redis away ------------------------------------------------------------------------


def test_enqueue_to_a_dead_redis_raises_connection_error_at_once(
    fresh_redis_server: RedisServer,
) -> None:
    q = Queue(QUEUE, redis_url=fresh_redis_server.url)
    q.enqueue("bad.echo")
    fresh_redis_server.stop()
    for queue in (q, Queue(QUEUE, redis_url=f"redis://127.0.0.1:{free_port()}/0")):
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            queue.enqueue("bad.echo")
        assert time.monotonic() - started < 3.0


def test_enqueue_to_a_frozen_redis_times_out(fresh_redis_server: RedisServer) -> None:
    q = Queue(QUEUE, redis_url=fresh_redis_server.url)
    q.enqueue("bad.echo")
    assert fresh_redis_server.process is not None
    pid = fresh_redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            q.enqueue("bad.echo")
        assert time.monotonic() - started < 15.0
    finally:
        os.kill(pid, signal.SIGCONT)


def redis_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("redis unavailable" in r.getMessage() for r in caplog.records)


def test_worker_resumes_after_redis_restarts_without_data(
    fresh_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qsupervise.worker")
    q = Queue(QUEUE, redis_url=fresh_redis_server.url, prefix=prefix)
    with bad_worker(fresh_redis_server.url, prefix, lease_ms=1500):
        assert q.enqueue("bad.echo", {"n": 1}).result(timeout=10) == {"n": 1}
        fresh_redis_server.restart()  # every key and loaded script is gone
        # A fresh server: the job and its scripts are sent again (NOSCRIPT fallback).
        assert q.enqueue("bad.echo", {"n": 2}).result(timeout=15) == {"n": 2}
        assert redis_warnings(caplog) > 0, "the worker never saw Redis go away"


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    """A private redis-server that keeps its data over a kill (AOF, fsync always)."""
    server = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]).start()
    yield server
    server.stop()


def test_worker_keeps_its_running_job_through_a_redis_outage(
    persistent_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qsupervise.worker")
    server = persistent_redis
    q = Queue(QUEUE, redis_url=server.url, prefix=prefix)
    with bad_worker(server.url, prefix, lease_ms=1500):
        running = q.enqueue("bad.slow", {"seconds": 1.5})
        wait_for(lambda: q.job(running.id).state == "active", 10, "the slow job never started")
        assert server.process is not None
        server.process.kill()  # Redis goes away while the job runs ...
        server.process.wait()
        wait_for(lambda: redis_warnings(caplog), 10, "the worker never saw Redis go away")
        queued_during = None
        with contextlib.suppress(redis.exceptions.ConnectionError):
            queued_during = q.enqueue("bad.echo")
        assert queued_during is None, "enqueue succeeded with Redis down"
        server.start()  # ... and comes back with its data
        assert running.result(timeout=20) == {"slept": 1.5}
        assert q.enqueue("bad.echo", {"n": 3}).result(timeout=15) == {"n": 3}
    done = q.job(running.id)
    assert (done.state, done.attempts, done.deaths) == ("completed", 1, 0)
    assert q.totals() == {"processed": 2, "failures": 0}
