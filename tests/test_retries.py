"""Retries with fixed and exponential backoff, the lease sweep (also raced), reaping
one dead owner's jobs, and the poison-pill limit."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest
import redis
from store_helpers import (
    LONG_LEASE_MS,
    OWNER_A,
    OWNER_B,
    assert_consistent,
    core_worker,
    index_of,
    record_key,
    redis_ms,
    sweep_until_empty,
)
from waiting import wait_for

from supervisor import JobFailed, Queue
from supervisor.queue import ClaimedJob
from supervisor.worker import Worker


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


def claim_when_due(q: Queue, owner: str = OWNER_A, lease_ms: int = LONG_LEASE_MS) -> ClaimedJob:
    """Claim one job, waiting (bounded) for a delayed one to become due."""
    jobs = wait_for(lambda: q.claim(owner, 1, lease_ms)[0], 10, "a job to become claimable")
    return jobs[0]


def expire_leases(q: Queue, *job_ids: str) -> None:
    """Wait until the leases of ``job_ids`` (default: all active jobs) have passed
    their deadline on Redis's clock."""
    ids = job_ids or q.redis.zrange(q.keys.active, 0, -1)
    deadline = max(int(q.redis.zscore(q.keys.active, job_id)) for job_id in ids)
    wait_for(lambda: redis_ms(q.redis) > deadline, 5, "the leases to expire")


@pytest.mark.parametrize(
    ("backoff", "base_s", "cap_s", "delays_ms"),
    [
        ("fixed", 0.04, None, [40, 40, 40]),
        ("exponential", 0.03, 0.1, [30, 60, 100]),  # 30, 60, 120 capped at 100
    ],
)
def test_retries_follow_the_backoff_then_fail(
    q: Queue, backoff: str, base_s: float, cap_s: float | None, delays_ms: list[int]
) -> None:
    q.enqueue(
        "core.echo",
        job_id="r",
        retries=len(delays_ms),
        backoff=backoff,
        backoff_s=base_s,
        backoff_max_s=cap_s,
    )
    previous_run_at: int | None = None
    for attempt, delay in enumerate(delays_ms, 1):
        job = claim_when_due(q)
        assert job.attempts == attempt
        started = int(q.job("r").fields["started_at"])
        if previous_run_at is not None:
            assert started >= previous_run_at, "a retry never starts before its run_at"
        assert q.fail([(job.id, job.token, f"err {attempt}", "tb", True)]) == ["delayed"]
        stored = q.job("r")
        assert stored.state == "delayed"
        assert stored.error == f"err {attempt}"
        entry = stored.history[-1]
        assert (entry["attempt"], entry["error"]) == (attempt, f"err {attempt}")
        run_at = int(stored.fields["run_at"])
        assert run_at - entry["at"] == delay, f"attempt {attempt}"
        assert int(q.redis.zscore(q.keys.delayed, "r")) == run_at
        previous_run_at = run_at
        assert_consistent(q)

    job = claim_when_due(q)
    assert job.attempts == len(delays_ms) + 1
    assert q.fail([(job.id, job.token, "last", "tb", True)]) == ["failed"]
    stored = q.job("r")
    assert (stored.state, stored.error, stored.failures) == ("failed", "last", 1)
    assert [h["attempt"] for h in stored.history] == list(range(1, len(delays_ms) + 2))
    assert q.totals()["failures"] == 1
    assert_consistent(q)


def test_retries_zero_fails_at_once(q: Queue) -> None:
    q.enqueue("core.echo", job_id="z", retries=0)
    job = claim_when_due(q)
    assert q.fail([(job.id, job.token, "e", "", True)]) == ["failed"]
    assert index_of(q, "z") == ["failed"]


def test_worker_retries_a_flaky_task_with_the_tasks_fixed_backoff(q: Queue) -> None:
    with core_worker(q, concurrency=2):
        job = q.enqueue("core.flaky", {"succeed_on": 3}, job_id="flaky")
        assert job.result(timeout=10) == {"runs": 3}
    starts = [int(s) for s in q.redis.lrange(record_key(q, "starts:flaky"), 0, -1)]
    assert len(starts) == 3
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= 50, f"retry started {later - earlier} ms after the failure"
    stored = q.job("flaky")
    assert (stored.state, stored.attempts, stored.max_retries) == ("completed", 3, 5)
    assert [h["error"] for h in stored.history] == [
        "RuntimeError: flaky run 1",
        "RuntimeError: flaky run 2",
    ]
    for entry in stored.history:
        assert entry["at"] + 50 <= int(stored.fields["started_at"])


def test_worker_gives_up_after_the_retries_and_says_why(q: Queue) -> None:
    with core_worker(q):
        job = q.enqueue("core.flaky", {}, retries=2, backoff="fixed", backoff_s=0.01)
        with pytest.raises(JobFailed, match="flaky run 3"):
            job.result(timeout=10)
    stored = q.job(job.id)
    assert stored.attempts == 3
    assert len(stored.history) == 3
    assert "RuntimeError: flaky run 3" in (stored.traceback or "")


def test_sweep_moves_expired_leases_to_retry_or_failed_with_the_owner(q: Queue) -> None:
    q.enqueue("core.echo", job_id="retry-me", retries=1, backoff="fixed", backoff_s=60)
    q.enqueue("core.echo", job_id="fail-me", retries=0)
    q.enqueue("core.echo", job_id="held")
    for _ in range(2):
        claim_when_due(q, OWNER_A, lease_ms=30)
    claim_when_due(q, OWNER_B, lease_ms=LONG_LEASE_MS)
    expire_leases(q, "retry-me", "fail-me")
    assert q.sweep() == 2
    assert q.sweep() == 0, "a second sweep finds nothing"

    retried = q.job("retry-me")
    assert retried.state == "delayed"
    assert retried.error == f"lease expired, owner {OWNER_A}"
    assert retried.deaths == 1
    assert "owner" not in retried.fields
    failed = q.job("fail-me")
    assert (failed.state, failed.error) == ("failed", f"lease expired, owner {OWNER_A}")
    assert index_of(q, "held") == ["active"], "a live lease is never swept"
    assert_consistent(q)


def test_sweep_respects_its_limit(q: Queue) -> None:
    q.enqueue_many([{"task": "core.echo", "retries": 0} for _ in range(5)])
    q.claim(OWNER_A, 5, 1)
    expire_leases(q)
    assert q.sweep(limit=2) == 2
    assert q.counts()["active"] == 3
    assert q.sweep(limit=10) == 3


def test_a_late_ack_after_the_sweep_is_ignored(q: Queue) -> None:
    q.enqueue("core.echo", job_id="late", retries=1, backoff="fixed", backoff_s=60)
    job = claim_when_due(q, lease_ms=1)
    expire_leases(q)
    assert q.sweep() == 1
    assert q.complete([(job.id, job.token, '"too late"')]) == 0
    assert q.fail([(job.id, job.token, "too late", "", True)]) == ["stale"]
    assert q.extend_leases(OWNER_A, ["late"]) == ["late"]
    assert index_of(q, "late") == ["delayed"]
    assert q.totals() == {"processed": 0, "failures": 0}


@pytest.mark.parametrize("sweepers", ["threads", "threads+processes"])
def test_racing_sweepers_move_each_expired_job_exactly_once(
    q: Queue, redis_url: str, sweepers: str
) -> None:
    n = 600
    ids = [f"s{i}" for i in range(n)]
    q.enqueue_many(
        [
            {"task": "core.echo", "job_id": job_id, "retries": i % 2, "backoff_s": 60}
            for i, job_id in enumerate(ids)
        ]
    )
    claimed = q.claim(OWNER_A, n, 1)[0]
    assert len(claimed) == n
    expire_leases(q)

    procs = 2 if sweepers == "threads+processes" else 0
    barrier = (f"{q.keys.base}:test:barrier", 4 + procs)
    args = (redis_url, q.keys.prefix, q.name, 7, barrier)
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(sweep_until_empty(*args))) for _ in range(4)
    ]
    with ProcessPoolExecutor(
        max(procs, 1), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = [pool.submit(sweep_until_empty, *args) for _ in range(procs)]
        for t in threads:
            t.start()
        results.extend(f.result(timeout=60) for f in futures)
        for t in threads:
            t.join(60)
    assert len(results) == 4 + procs, "every sweeper finished"
    assert sum(1 for batch in results if batch) >= 2, "at least two sweepers moved jobs"

    moved = [job_id for batch in results for job_id in batch]
    assert len(moved) == n, f"{len(moved) - len(set(moved))} jobs were moved twice"
    assert sorted(moved) == sorted(ids)
    states = assert_consistent(q)
    for i, job_id in enumerate(ids):
        assert states[job_id] == ("delayed" if i % 2 else "failed")
    rows = [q.redis.hmget(q.keys.job(job_id), "deaths", "history") for job_id in ids]
    assert {int(d) for d, _ in rows} == {1}, "each job died once"
    assert {len(json.loads(h)) for _, h in rows} == {1}, "one history entry each"
    assert q.totals()["failures"] == n // 2


def test_reap_owner_moves_only_that_owners_jobs(q: Queue) -> None:
    q.enqueue_many(
        [{"task": "core.echo", "job_id": f"a{i}", "retries": 1, "backoff_s": 60} for i in range(3)]
    )
    q.enqueue_many([{"task": "core.echo", "job_id": f"b{i}"} for i in range(2)])
    q.claim(OWNER_A, 3, LONG_LEASE_MS)
    q.claim(OWNER_B, 2, LONG_LEASE_MS)
    reason = "child 4242 died (SIGKILL)"
    assert q.reap_owner(OWNER_A, reason) == 3
    assert q.reap_owner(OWNER_A, reason) == 0
    for i in range(3):
        job = q.job(f"a{i}")
        assert (job.state, job.error, job.deaths) == ("delayed", reason, 1)
    for i in range(2):
        assert q.job(f"b{i}").state == "active"
        assert q.job(f"b{i}").fields["owner"] == OWNER_B
    assert q.reap_owner("nobody/1/x", reason) == 0
    assert_consistent(q)


def test_a_job_that_keeps_killing_its_worker_is_a_poison_pill(q: Queue) -> None:
    q.enqueue("core.echo", job_id="pill", retries=10, backoff="fixed", backoff_s=0)
    for death in (1, 2):
        claim_when_due(q)
        assert q.reap_owner(OWNER_A, f"child died {death}", max_deaths=3) == 1
        assert q.job("pill").state == "delayed"
    job = claim_when_due(q)
    assert job.deaths == 2, "a worker is told how often the job killed one"
    assert q.reap_owner(OWNER_A, "child died 3", max_deaths=3) == 1
    pill = q.job("pill")
    assert pill.state == "failed"
    assert pill.error == "killed its worker 3 times; last: child died 3"
    assert pill.attempts == 3, "it failed with retries left"
    assert_consistent(q)


def test_poison_pill_limit_applies_to_the_sweep_too(q: Queue) -> None:
    q.enqueue("core.echo", job_id="pill", retries=10)
    claim_when_due(q, lease_ms=1)
    expire_leases(q)
    assert q.sweep(max_deaths=1) == 1
    pill = q.job("pill")
    assert pill.state == "failed"
    assert pill.error == f"killed its worker 1 times; last: lease expired, owner {OWNER_A}"


def test_a_swept_job_runs_again_on_a_live_worker(q: Queue) -> None:
    q.enqueue("core.span", {}, job_id="orphan", retries=1, backoff="fixed", backoff_s=0.01)
    claim_when_due(q, OWNER_A, lease_ms=1)  # its "worker" never acks: it died
    expire_leases(q)
    assert q.sweep() == 1
    with core_worker(q):
        assert q.job("orphan").result(timeout=10) == {"id": "orphan"}
    job = q.job("orphan")
    assert (job.attempts, job.deaths) == (2, 1)
    assert job.history[0]["error"] == f"lease expired, owner {OWNER_A}"


def test_an_ordered_shutdown_reap_retries_without_counting_a_death(q: Queue) -> None:
    q.enqueue("core.echo", job_id="calm", retries=5, backoff="fixed", backoff_s=0)
    for _ in range(4):
        claim_when_due(q)
        assert q.reap_owner(OWNER_A, "child retired", max_deaths=1, count_death=False) == 1
        calm = q.job("calm")
        assert (calm.state, calm.deaths, calm.error) == ("delayed", 0, "child retired")
    claim_when_due(q)
    assert q.reap_owner(OWNER_A, "child crashed", max_deaths=1) == 1
    assert q.job("calm").state == "failed", "one real crash reaches a limit of 1"
    assert_consistent(q)


def wait_until_blocked(q: Queue, worker: Worker) -> None:
    """Wait until ``worker``'s fetcher is blocked in BLPOP (its idle wait)."""

    def blocked() -> bool:
        client_id = worker._block_client_id
        return client_id is not None and any(
            int(c["id"]) == client_id and c["cmd"] == "blpop" for c in q.redis.client_list()
        )

    wait_for(blocked, 10, "the idle worker to block in BLPOP")


@pytest.mark.parametrize("how", ["retry after a failure", "enqueued with a delay"])
def test_an_idle_worker_starts_a_delayed_job_on_time(q: Queue, how: str) -> None:
    """A worker blocked for up to 30 s still starts a job that becomes due sooner:
    the job that is now first in the delayed set wakes it to shorten its wait."""
    with core_worker(q, idle_block_s=30.0) as worker:
        wait_until_blocked(q, worker)
        if how == "enqueued with a delay":
            queued_at = redis_ms(q.redis)
            job = q.enqueue("core.flaky", {"succeed_on": 1}, delay=0.3)
        else:
            job = q.enqueue("core.flaky", {"succeed_on": 2}, backoff="fixed", backoff_s=0.3)
            wait_for(lambda: q.redis.llen(record_key(q, f"starts:{job.id}")) == 1, 10,
                     "the first run")  # fmt: skip
            wait_until_blocked(q, worker)
        assert job.result(timeout=5)["runs"] >= 1
    starts = [int(s) for s in q.redis.lrange(record_key(q, f"starts:{job.id}"), 0, -1)]
    begun = queued_at if how == "enqueued with a delay" else starts[0]
    waited_ms = starts[-1] - begun
    assert 300 <= waited_ms < 2000, f"started {waited_ms} ms after; due after 300 ms"


def test_a_delayed_job_due_while_every_thread_was_busy_starts_when_one_frees(q: Queue) -> None:
    """The wait for work is handed to the next free thread with the due time of the
    next delayed job as a deadline, not as a span: a thread that frees up after the
    delayed job became due claims it at once instead of waiting that span again."""
    with core_worker(q, concurrency=1, idle_block_s=30.0) as worker:
        wait_until_blocked(q, worker)
        delayed = q.enqueue("core.flaky", {"succeed_on": 1}, delay=0.6)
        due_ms = redis_ms(q.redis) + 600
        gate = q.enqueue("core.gate", {"wait_s": 10})
        wait_for(lambda: q.redis.llen(record_key(q, f"started:{gate.id}")) == 1, 10,
                 "the gate job to start")  # fmt: skip
        wait_for(lambda: redis_ms(q.redis) > due_ms + 300, 5, "the delayed job to be due")
        opened_ms = redis_ms(q.redis)
        q.redis.rpush(record_key(q, f"gate:{gate.id}"), "1")
        assert delayed.result(timeout=5) == {"runs": 1}
    started_ms = int(q.redis.lindex(record_key(q, f"starts:{delayed.id}"), 0))
    assert started_ms - opened_ms < 300, (
        f"the delayed job started {started_ms - opened_ms} ms after the only thread freed"
    )
