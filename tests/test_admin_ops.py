"""Administering a queue: pause/resume, cancel, stall and retry, retry/delete failed
jobs, delete, and the read side (counts, counts by task, totals, ranges, get)."""

from __future__ import annotations

import time

import pytest
import redis
from store_helpers import (
    LONG_LEASE_MS,
    OWNER_A,
    assert_consistent,
    core_worker,
    index_of,
    record_key,
)
from waiting import wait_for

from supervisor import JobFailed, JobNotFound, Queue
from supervisor.queue import ClaimedJob


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


def claim_all(q: Queue) -> dict[str, ClaimedJob]:
    return {j.id: j for j in q.claim(OWNER_A, 1000, LONG_LEASE_MS)[0]}


def fail_all(q: Queue, ids: list[str]) -> None:
    q.enqueue_many([{"task": "core.echo", "job_id": i, "retries": 0} for i in ids])
    jobs = claim_all(q)
    assert q.fail([(i, jobs[i].token, f"error {i}", "", True) for i in ids]) == ["failed"] * len(
        ids
    )


def test_pause_stops_claims_fleet_wide_and_resume_wakes_workers(q: Queue) -> None:
    q.enqueue("core.echo", job_id="p1")
    q.pause()
    assert q.is_paused()
    assert claim_all(q) == {}
    assert q.redis.exists(q.keys.notify) == 0, "a paused queue leaves no wake-up token"
    q.enqueue("core.echo", job_id="p2", delay=0.001)

    def promoted() -> bool:
        assert claim_all(q) == {}  # a claim promotes due delayed jobs, even while paused
        return index_of(q, "p2") == ["queued"]

    wait_for(promoted, 5, "the delayed job to be promoted")
    assert q.counts()["queued"] == 2, "due delayed jobs are still promoted while paused"

    q.resume()
    assert not q.is_paused()
    assert q.redis.llen(q.keys.notify) >= 1
    assert sorted(claim_all(q)) == ["p1", "p2"]
    assert_consistent(q)


def test_a_paused_queue_runs_nothing_until_resumed_on_a_worker(q: Queue) -> None:
    with core_worker(q, idle_block_s=5.0):
        q.pause()
        job = q.enqueue("core.span", {}, job_id="held")
        with pytest.raises(TimeoutError):
            job.result(timeout=0.5)
        assert q.job("held").state == "queued"
        assert not q.redis.hexists(record_key(q, "runs"), "held")
        started = time.monotonic()
        q.resume()  # the worker is blocked for up to 5 s: resume must wake it
        assert job.result(timeout=10) == {"id": "held"}
        assert time.monotonic() - started < 3.0, "resume woke the blocked worker"


def test_cancel_queued_and_delayed_jobs(q: Queue) -> None:
    q.enqueue("core.echo", job_id="done")
    done = claim_all(q)["done"]
    q.complete([("done", done.token, "null")])
    q.enqueue("core.echo", job_id="active")
    claim_all(q)
    q.enqueue("core.echo", job_id="queued")
    q.enqueue("core.echo", job_id="delayed", delay=60)

    assert q.cancel("queued")
    assert q.cancel("delayed")
    assert not q.cancel("active"), "a running job is not cancelled"
    assert not q.cancel("done")
    assert not q.cancel("never-existed")
    assert not q.cancel("queued"), "a cancelled job cannot be cancelled again"
    for job_id in ("queued", "delayed"):
        job = q.job(job_id)
        assert job.state == "cancelled"
        assert job.finished_at is not None
        assert index_of(q, job_id) == ["cancelled"]
        with pytest.raises(JobFailed) as info:
            job.result(timeout=1)
        assert info.value.state == "cancelled"
    assert q.counts()["cancelled"] == 2
    assert_consistent(q)


def test_stall_and_retry_stalled(q: Queue) -> None:
    q.enqueue_many([{"task": "core.echo", "job_id": f"s{i}"} for i in range(3)])
    jobs = claim_all(q)
    assert not q.stall("s0", token="wrong:1"), "a stale token cannot stall"
    assert q.stall("s0", "waiting for a human", token=jobs["s0"].token)
    assert q.stall("s1")  # operators stall without a token
    assert not q.stall("s1"), "only an active job can be stalled"
    assert not q.stall("missing")
    s0 = q.job("s0")
    assert (s0.state, s0.error) == ("stalled", "waiting for a human")
    assert s0.history[-1]["stalled"] == "waiting for a human"
    assert "owner" not in s0.fields
    assert q.complete([("s0", jobs["s0"].token, "null")]) == 0, "its old worker's ack is ignored"
    assert q.job_ids("stalled") == ["s0", "s1"]
    assert_consistent(q)

    assert q.retry_stalled(["s0"]) == 1
    s0 = q.job("s0")
    assert (s0.state, s0.attempts, s0.deaths) == ("queued", 0, 0)
    assert q.retry_stalled() == 1
    assert q.retry_stalled() == 0
    assert sorted(claim_all(q)) == ["s0", "s1"]
    assert q.job("s0").attempts == 1
    assert_consistent(q)


def test_a_task_can_stall_and_release_itself(q: Queue) -> None:
    from supervisor import Job

    q.enqueue("core.echo", job_id="me")
    claimed = claim_all(q)["me"]
    handle = Job(q, "me", {"task": "core.echo"}, token=claimed.token)
    assert handle.release()
    assert q.job("me").cancels == 1
    assert not handle.release(), "its token is spent"
    claimed = claim_all(q)["me"]
    handle = Job(q, "me", {"task": "core.echo"}, token=claimed.token)
    assert handle.stall("need input")
    assert q.job("me").state == "stalled"


def test_retry_failed_one_and_all(q: Queue) -> None:
    fail_all(q, ["f1", "f2", "f3"])
    assert [j.id for j in q.failed()] == ["f1", "f2", "f3"]
    assert q.retry_failed(["f2"]) == 1
    f2 = q.job("f2")
    assert (f2.state, f2.attempts, f2.failures) == ("queued", 0, 1), "failures are kept"
    assert f2.finished_at is None
    assert len(f2.history) == 1, "history is kept"
    assert q.retry_failed(["f2", "nope"]) == 0, "only failed jobs are retried"
    assert q.retry_failed(limit=1) == 1
    assert q.job_ids("failed") == ["f3"]
    assert q.retry_failed() == 1
    assert q.counts()["failed"] == 0
    assert sorted(claim_all(q)) == ["f1", "f2", "f3"]
    assert_consistent(q)


def test_retry_one_job_from_failed_stalled_or_cancelled(q: Queue) -> None:
    fail_all(q, ["failed"])
    q.enqueue("core.echo", job_id="stalled")
    claim_all(q)
    assert q.stall("stalled")
    q.enqueue("core.echo", job_id="cancelled", delay=60)
    q.cancel("cancelled")
    q.enqueue("core.echo", job_id="queued")
    for job_id in ("failed", "stalled", "cancelled"):
        assert q.retry(job_id), job_id
        assert index_of(q, job_id) == ["queued"]
    assert not q.retry("queued")
    assert not q.retry("missing")
    assert q.counts()["queued"] == 4
    assert_consistent(q)


def test_delete_failed_one_and_all(q: Queue) -> None:
    fail_all(q, ["d1", "d2", "d3"])
    q.redis.rpush(q.keys.job_log("d1"), "a line")
    assert q.delete_failed(["d1"]) == 1
    assert q.get("d1") is None
    assert q.redis.exists(q.keys.job_log("d1")) == 0, "its log goes with it"
    assert q.delete_failed(["d1"]) == 0
    assert q.delete_failed() == 2
    assert q.counts()["failed"] == 0
    assert q.totals()["failures"] == 3, "the failure total is history, not a live count"
    assert q.counts_by_task() == {}
    assert_consistent(q)


def test_delete_retracts_any_job_that_is_not_active(q: Queue) -> None:
    q.enqueue("core.echo", job_id="active")
    claim_all(q)
    q.enqueue("core.echo", job_id="queued")
    q.enqueue("core.echo", job_id="delayed", delay=60)
    assert not q.delete("active")
    assert q.job("active").state == "active"
    assert q.delete("queued")
    assert q.delete("delayed")
    assert not q.delete("queued")
    assert q.get("queued") is None and q.get("delayed") is None
    assert q.counts()["queued"] == 0 and q.counts()["delayed"] == 0
    assert_consistent(q)


def test_counts_counts_by_task_totals_and_ranges(q: Queue) -> None:
    q.enqueue_many(
        [{"task": "core.echo", "job_id": f"e{i}"} for i in range(4)]
        + [{"task": "core.sleep", "job_id": f"s{i}"} for i in range(3)]
        + [{"task": "core.sleep", "job_id": "later", "delay": 60}]
    )
    jobs = {j.id: j for j in q.claim(OWNER_A, 3, LONG_LEASE_MS)[0]}  # e0, e1, e2
    q.complete([("e0", jobs["e0"].token, '"ok"')])
    q.fail([("e1", jobs["e1"].token, "bad", "", False)])
    assert q.counts() == {
        "queued": 4,
        "delayed": 1,
        "active": 1,
        "completed": 1,
        "failed": 1,
        "stalled": 0,
        "cancelled": 0,
    }
    by_task = q.counts_by_task()
    assert by_task["core.echo"] == {
        "queued": 1,
        "delayed": 0,
        "active": 1,
        "completed": 1,
        "failed": 1,
        "stalled": 0,
        "cancelled": 0,
    }
    assert (by_task["core.sleep"]["queued"], by_task["core.sleep"]["delayed"]) == (3, 1)
    assert q.totals() == {"processed": 1, "failures": 1}

    assert q.job_ids("queued") == ["e3", "s0", "s1", "s2"]
    assert q.job_ids("queued", 1, 2) == ["s0", "s1"]
    assert [j.id for j in q.jobs("queued", task="core.sleep")] == ["s0", "s1", "s2"]
    assert [j.id for j in q.jobs("queued", 0, 1)] == ["e3", "s0"]
    assert q.job_ids("active") == ["e2"]
    assert [j.error for j in q.failed()] == ["bad"]
    with pytest.raises(ValueError, match="unknown state"):
        q.job_ids("running")

    got = q.get("e0")
    assert got is not None
    data = got.to_dict()
    assert (data["result"], data["params"], data["queue"]) == ("ok", {}, "default")
    assert q.get("nope") is None
    with pytest.raises(JobNotFound):
        q.job("nope")
    assert_consistent(q)
