"""Claim (reliable fetch with a lease), ack (complete / fail), lease extension,
release, task defaults fixed at claim, and the worker running jobs end to end."""

from __future__ import annotations

import json
import threading

import pytest
import redis
from store_helpers import (
    LONG_LEASE_MS,
    OWNER_A,
    OWNER_B,
    assert_consistent,
    core_registry,
    core_worker,
    index_of,
    record_key,
    redis_ms,
)
from waiting import wait_for

from supervisor import JobFailed, Queue
from supervisor.queue import ClaimedJob


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


def claim_one(q: Queue, owner: str = OWNER_A, lease_ms: int = LONG_LEASE_MS) -> ClaimedJob:
    jobs, _ = q.claim(owner, 1, lease_ms)
    assert len(jobs) == 1, "expected one job to claim"
    return jobs[0]


def test_claim_moves_queued_to_active_with_an_owner_and_lease(q: Queue) -> None:
    q.enqueue("core.echo", {"a": 1}, job_id="c1", retries=2, timeout=9)
    before = redis_ms(q.redis)
    job = claim_one(q, lease_ms=5000)
    after = redis_ms(q.redis)

    assert (job.id, job.task, json.loads(job.params)) == ("c1", "core.echo", {"a": 1})
    assert (job.attempts, job.max_retries, job.timeout, job.deaths) == (1, 2, 9.0, 0)
    assert job.token == f"{OWNER_A}:1"
    stored = q.job("c1")
    assert stored.state == "active"
    assert stored.fields["owner"] == OWNER_A
    assert stored.fields["lease"] == job.token
    assert before <= int(stored.fields["started_at"]) <= after
    deadline = int(q.redis.zscore(q.keys.active, "c1"))
    assert before + 5000 <= deadline <= after + 5000
    assert index_of(q, "c1") == ["active"]
    assert q.counts_by_task()["core.echo"]["active"] == 1
    assert q.redis.exists(q.keys.notify) == 0, "no token is left when nothing is ready"
    assert_consistent(q)


def test_claim_takes_a_batch_up_to_the_count_and_keeps_a_token_while_work_remains(
    q: Queue,
) -> None:
    q.enqueue_many([{"task": "core.echo", "job_id": f"b{i}"} for i in range(5)])
    jobs, due = q.claim(OWNER_A, 3, LONG_LEASE_MS)
    assert [j.id for j in jobs] == ["b0", "b1", "b2"]
    assert due is None
    assert q.redis.llen(q.keys.notify) == 1, "the next idle worker is woken for the rest"
    jobs, _ = q.claim(OWNER_B, 10, LONG_LEASE_MS)
    assert [j.id for j in jobs] == ["b3", "b4"]
    assert q.claim(OWNER_A, 10, LONG_LEASE_MS)[0] == []
    assert q.counts()["active"] == 5
    assert_consistent(q)


def test_claim_promotes_due_delayed_jobs_and_reports_the_next_due(q: Queue) -> None:
    q.enqueue("core.echo", job_id="soon", delay=0.15)
    q.enqueue("core.echo", job_id="later", delay=60)
    jobs, due = q.claim(OWNER_A, 5, LONG_LEASE_MS)
    assert jobs == []
    assert due is not None and 0 < due <= 0.15
    wait_for(
        lambda: redis_ms(q.redis) >= int(q.redis.zscore(q.keys.delayed, "soon")),
        5,
        "the Redis clock to pass the delayed job's run_at",
    )
    jobs, due = q.claim(OWNER_A, 5, LONG_LEASE_MS)
    assert [j.id for j in jobs] == ["soon"]
    assert due is not None and 55 < due <= 60
    assert index_of(q, "later") == ["delayed"]
    assert_consistent(q)


def test_complete_records_the_result_and_ignores_a_stale_token(q: Queue) -> None:
    q.enqueue("core.echo", job_id="ok")
    job = claim_one(q)
    assert q.complete([(job.id, "someone-else:1", '{"r":0}')]) == 0
    assert q.job("ok").state == "active"
    assert q.complete([(job.id, job.token, '{"r":1}')]) == 1
    assert q.complete([(job.id, job.token, '{"r":2}')]) == 0, "a second ack changes nothing"
    stored = q.job("ok")
    assert stored.state == "completed"
    assert json.loads(stored.fields["result"]) == {"r": 1}
    assert "owner" not in stored.fields and "lease" not in stored.fields
    assert stored.finished_at is not None
    assert q.totals() == {"processed": 1, "failures": 0}
    assert q.job_ids("completed") == ["ok"]
    assert_consistent(q)


def test_complete_acks_a_batch_in_one_call(q: Queue) -> None:
    q.enqueue_many([{"task": "core.echo", "job_id": f"k{i}"} for i in range(4)])
    jobs, _ = q.claim(OWNER_A, 4, LONG_LEASE_MS)
    assert q.complete([(j.id, j.token, f'{{"i":{i}}}') for i, j in enumerate(jobs)]) == 4
    assert [q.job(f"k{i}").fields["result"] for i in range(4)] == [f'{{"i":{i}}}' for i in range(4)]
    assert q.counts()["completed"] == 4


def test_fail_without_retry_ends_in_failed_with_reason_and_traceback(q: Queue) -> None:
    q.enqueue("core.echo", job_id="f", retries=5)
    job = claim_one(q)
    assert q.fail([(job.id, "stale:1", "no", "", True)]) == ["stale"]
    assert q.fail([(job.id, job.token, "ValueError: bad", "Traceback...", False)]) == ["failed"]
    stored = q.job("f")
    assert (stored.state, stored.error, stored.traceback) == (
        "failed",
        "ValueError: bad",
        "Traceback...",
    )
    assert stored.failures == 1
    assert stored.history[-1]["error"] == "ValueError: bad"
    assert q.totals()["failures"] == 1
    assert [j.id for j in q.failed()] == ["f"]
    assert_consistent(q)


def test_extend_leases_pushes_deadlines_only_for_jobs_the_owner_holds(q: Queue) -> None:
    q.enqueue_many([{"task": "core.echo", "job_id": i} for i in ("x", "y", "z")])
    x = claim_one(q, OWNER_A, lease_ms=1000)
    y = claim_one(q, OWNER_B, lease_ms=1000)
    old = int(q.redis.zscore(q.keys.active, "x"))
    lost = q.extend_leases(OWNER_A, ["x", "y", "z", "missing"], lease_ms=50_000)
    assert sorted(lost) == ["missing", "y", "z"]
    assert int(q.redis.zscore(q.keys.active, "x")) >= old + 45_000
    assert int(q.redis.zscore(q.keys.active, "y")) < old + 10_000, "B's lease is untouched"
    assert q.complete([(x.id, x.token, "null"), (y.id, y.token, "null")]) == 2
    assert q.extend_leases(OWNER_A, ["x"]) == ["x"], "a finished job is reported lost"
    assert q.redis.zscore(q.keys.active, "x") is None, "extend never re-adds a finished job"


def test_release_giveback_does_not_count_an_attempt(q: Queue) -> None:
    q.enqueue("core.echo", job_id="first")
    q.enqueue("core.echo", job_id="g")
    claim_one(q)  # "first"
    job = claim_one(q)
    assert job.id == "g"
    assert q.release([(job.id, "stale:9")]) == 0
    assert q.release([(job.id, job.token)], mode="giveback") == 1
    stored = q.job("g")
    assert (stored.state, stored.attempts, stored.cancels) == ("queued", 0, 0)
    assert "owner" not in stored.fields
    q.enqueue("core.echo", job_id="newer")
    assert claim_one(q).id == "g", "a given-back job goes to the front"
    assert q.job("g").attempts == 1
    assert q.release([]) == 0
    with pytest.raises(ValueError, match="giveback"):
        q.release([("g", "t")], mode="drop")
    assert_consistent(q)


def test_release_cancel_counts_a_cancel_and_keeps_the_attempt(q: Queue) -> None:
    q.enqueue("core.echo", job_id="c")
    job = claim_one(q)
    assert q.release([(job.id, job.token)], mode="cancel") == 1
    stored = q.job("c")
    assert (stored.state, stored.attempts, stored.cancels) == ("queued", 1, 1)
    job = claim_one(q)
    assert job.attempts == 2
    assert q.release([(job.id, job.token)], mode="cancel") == 1
    assert q.job("c").cancels == 2
    assert_consistent(q)


def test_task_defaults_are_fixed_at_claim(q: Queue) -> None:
    q.enqueue("core.defaults", job_id="plain")
    q.enqueue("core.defaults", job_id="own", retries=1, backoff="exponential", timeout=2)
    q.enqueue("core.defaults", job_id="own-timeout-only", timeout=3)
    q.enqueue("not.registered", job_id="orphan")
    assert q.job("plain").max_retries == -1, "unresolved until claimed"
    q.register_tasks(core_registry())

    jobs = {j.id: j for j in q.claim(OWNER_A, 10, LONG_LEASE_MS)[0]}
    assert (jobs["plain"].max_retries, jobs["plain"].timeout) == (4, 7.0)
    plain = q.job("plain").fields
    assert (plain["max_retries"], plain["timeout"]) == ("4", "7")
    assert (plain["backoff_type"], plain["backoff_ms"], plain["backoff_max_ms"]) == (
        "fixed",
        "250",
        "9000",
    )
    own = q.job("own").fields
    assert (own["max_retries"], own["timeout"], own["backoff_type"]) == ("1", "2", "exponential")
    assert (jobs["own-timeout-only"].max_retries, jobs["own-timeout-only"].timeout) == (4, 3.0)
    assert (jobs["orphan"].max_retries, jobs["orphan"].timeout) == (0, 0.0), (
        "a task no worker registered gets no retries and no timeout"
    )

    # Later defaults do not change a job already claimed: it is self-describing.
    q.redis.hset(q.keys.task_defaults, "core.defaults", json.dumps({"retries": 0}))
    job = jobs["plain"]
    assert q.fail([(job.id, job.token, "err", "", True)]) == ["delayed"]
    assert q.job("plain").fields["max_retries"] == "4"


def test_enqueue_with_backoff_but_no_retries_keeps_its_backoff(q: Queue) -> None:
    q.register_tasks(core_registry())
    q.enqueue("core.defaults", job_id="b", backoff="exponential", backoff_s=0.5)
    job = claim_one(q)
    assert job.max_retries == 4, "retries still come from the task"
    fields = q.job("b").fields
    assert (fields["backoff_type"], fields["backoff_ms"]) == ("exponential", "500")


def test_a_queued_id_without_a_job_hash_is_failed_as_malformed(q: Queue) -> None:
    q.redis.zadd(q.keys.queued, {"ghost": 1})
    q.enqueue("core.echo", job_id="real")
    jobs, _ = q.claim(OWNER_A, 5, LONG_LEASE_MS)
    assert [j.id for j in jobs] == ["real"]
    ghost = q.job("ghost")
    assert ghost.state == "failed"
    assert "malformed" in (ghost.error or "")
    assert q.totals()["failures"] == 1


def test_worker_runs_jobs_concurrently_and_acks_them(q: Queue) -> None:
    with core_worker(q, concurrency=4) as worker:
        jobs = q.enqueue_many(
            [
                {"task": "core.sleep", "params": {"seconds": 0.3}, "job_id": f"w{i}"}
                for i in range(4)
            ]
        )
        for job in jobs:
            assert job.result(timeout=10) == {"slept": 0.3}
        snap = worker.snapshot()
        assert snap.done == 4 and snap.failed == 0
    starts = sorted(int(q.job(f"w{i}").fields["started_at"]) for i in range(4))
    assert starts[-1] - starts[0] < 300, "four threads ran the four jobs side by side"
    assert q.counts()["completed"] == 4
    assert q.totals()["processed"] == 4
    assert_consistent(q)


def test_worker_turns_bad_input_into_failed_jobs_and_keeps_going(q: Queue) -> None:
    q.enqueue("core.echo", job_id="bad-json")
    q.redis.hset(q.keys.job("bad-json"), "params", "{not json")
    with core_worker(q, concurrency=2):
        raising = q.enqueue("core.fail", {"message": "it broke"})
        unserialisable = q.enqueue("core.bad_result")
        with pytest.raises(JobFailed, match="ValueError: it broke"):
            raising.result(timeout=10)
        with pytest.raises(JobFailed, match="not JSON-serialisable"):
            unserialisable.result(timeout=10)
        with pytest.raises(JobFailed, match="params are not valid JSON"):
            q.job("bad-json").result(timeout=10)
        assert q.enqueue("core.echo", {"after": 1}).result(timeout=10) == {"after": 1}
    failed = q.job(raising.id)
    assert failed.traceback and "Traceback" in failed.traceback
    assert "ValueError: it broke" in failed.traceback
    assert q.counts()["failed"] == 3
    assert_consistent(q)


def test_worker_fails_a_job_past_its_timeout(q: Queue) -> None:
    with core_worker(q, lease_ms=300) as worker:
        job = q.enqueue("core.sleep", {"seconds": 1.0}, timeout=0.2, retries=0)
        with pytest.raises(JobFailed, match=r"timed out after 0\.2 s"):
            job.result(timeout=10)
        # The late result of the timed-out run is ignored (its token is stale).
        wait_for(lambda: worker.snapshot().busy == 0, 10, "the sleeping task to return")
    assert q.job(job.id).state == "failed"
    assert q.totals()["processed"] == 0
    assert_consistent(q)


def test_worker_keeps_leases_of_long_jobs_alive(q: Queue) -> None:
    """A job running three lease periods is not swept: the keeper extends it."""
    with core_worker(q, lease_ms=200):
        job = q.enqueue("core.sleep", {"seconds": 0.7})
        wait_for(lambda: q.get(job.id).state == "active", 5, "the job to start")
        stop = threading.Event()
        swept: list[int] = []

        def sweeper() -> None:
            while not stop.is_set():
                swept.append(q.sweep())
                stop.wait(0.02)

        t = threading.Thread(target=sweeper)
        t.start()
        try:
            assert job.result(timeout=10) == {"slept": 0.7}
        finally:
            stop.set()
            t.join()
    assert sum(swept) == 0
    assert q.job(job.id).deaths == 0


def test_job_heartbeat_extends_the_lease_from_inside_the_task(q: Queue) -> None:
    from supervisor import Job

    q.enqueue("core.echo", job_id="hb")
    claimed = claim_one(q, lease_ms=1000)
    handle = Job(q, claimed.id, {"task": claimed.task}, token=claimed.token)
    before = int(q.redis.zscore(q.keys.active, "hb"))
    assert handle.heartbeat()
    assert int(q.redis.zscore(q.keys.active, "hb")) > before + 5000
    q.complete([(claimed.id, claimed.token, "null")])
    assert not handle.heartbeat(), "a finished job's heartbeat says it is no longer held"


# -- the server loses its script cache (restart, failover, SCRIPT FLUSH) -----------------


def test_a_pipelined_transition_that_meets_noscript_runs_again_alone(q: Queue) -> None:
    q.enqueue("core.echo", job_id="p1")
    job = claim_one(q)
    q.redis.script_flush()
    counter = record_key(q, "counter")
    with q.redis.pipeline(transaction=False) as pipe:
        pipe.incr(counter)
        q.complete([(job.id, job.token, '"done"')], client=pipe)
        pipe.incr(counter)
        replies = q.scripts.execute(pipe)
    assert replies == [1, 1, 2], "the transition's reply is in its place"
    assert q.redis.get(counter) == "2", "the commands around it ran once"
    assert q.job("p1").state == "completed"
    assert_consistent(q)


def test_a_worker_keeps_going_when_the_server_loses_its_scripts(q: Queue) -> None:
    with core_worker(q):
        assert q.enqueue("core.echo", {"n": 0}).result(timeout=10) == {"n": 0}
        q.redis.script_flush()
        # Over one chunk: enqueue_many sends a pipeline of enqueue.lua calls.
        jobs = q.enqueue_many([{"task": "core.echo", "params": {"n": n}} for n in range(1001)])
        wait_for(
            lambda: q.counts()["completed"] == 1002,
            30,
            lambda: f"all jobs to complete after SCRIPT FLUSH; counts {q.counts()}",
        )
    assert [j.result(timeout=1) for j in jobs[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert_consistent(q)


def test_acks_refused_while_redis_is_out_of_memory_are_retried(q: Queue) -> None:
    """OOM refuses a script at its first write, so nothing is half-applied; the acker
    keeps the outcome and sends it again once Redis accepts writes."""
    with core_worker(q) as worker:
        job = q.enqueue("core.gate", {"wait_s": 0.5})  # never opened: ends after 0.5 s
        started = record_key(q, f"started:{job.id}")
        wait_for(lambda: q.redis.llen(started) == 1, 10, "the job to start")
        q.redis.config_set("maxmemory", 1)
        try:
            wait_for(lambda: worker.snapshot().busy == 0, 10, "the task to return")
            assert q.job(job.id).state == "active", "an ack refused for OOM changed nothing"
        finally:
            q.redis.config_set("maxmemory", 0)
        assert job.result(timeout=10) == {"opened": False}
    done = q.job(job.id)
    assert (done.state, done.attempts) == ("completed", 1)
    assert_consistent(q)
