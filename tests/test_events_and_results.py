"""The queue's events channel, waiting for a job's result, progress and log lines,
and how long completed jobs are kept."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from store_helpers import (
    LONG_LEASE_MS,
    OWNER_A,
    assert_consistent,
    core_worker,
    redis_ms,
)
from waiting import wait_for

from supervisor import Job, JobError, JobFailed, JobNotFound, Queue


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


class Events:
    """Messages of a queue's events channel, read by a background thread."""

    def __init__(self, q: Queue) -> None:
        self.pubsub = q.redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(q.keys.events)
        wait_for(lambda: q.redis.pubsub_numsub(q.keys.events)[0][1] == 1, 5, "the subscription")
        self.messages: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None:
                self.messages.append(json.loads(message["data"]))

    def of(self, job_id: str) -> list[str]:
        return [m["event"] for m in list(self.messages) if m["id"] == job_id]

    def wait(self, job_id: str, events: list[str]) -> list[dict[str, Any]]:
        wait_for(
            lambda: all(e in self.of(job_id) for e in events),
            10,
            lambda: f"events {events} of {job_id}; saw {self.of(job_id)}",
        )
        return [m for m in list(self.messages) if m["id"] == job_id]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()


@pytest.fixture
def events(q: Queue) -> Iterator[Events]:
    ev = Events(q)
    yield ev
    ev.close()


def test_events_of_a_job_run_by_a_worker(q: Queue, events: Events) -> None:
    with core_worker(q):
        ok = q.enqueue("core.progress", {"steps": 2}, job_id="ok")
        bad = q.enqueue("core.fail", {"message": "nope"}, job_id="bad")
        ok.result(timeout=10)
        with pytest.raises(JobFailed):
            bad.result(timeout=10)
        seen = events.wait("ok", ["enqueued", "active", "progress", "completed"])
        events.wait("bad", ["enqueued", "active", "failed"])
    assert events.of("ok") == ["enqueued", "active", "progress", "progress", "completed"]
    assert events.of("bad") == ["enqueued", "active", "failed"]
    assert all(m["task"] == "core.progress" for m in seen)
    progress = [m["progress"] for m in seen if m["event"] == "progress"]
    assert progress == [
        {"done": 1, "total": 2, "data": {"step": 1}},
        {"done": 2, "total": 2, "data": {"step": 2}},
    ]
    failed = [m for m in list(events.messages) if m["id"] == "bad" and m["event"] == "failed"]
    assert failed[0]["error"] == "ValueError: nope"
    assert "retry_at" not in failed[0]


def test_events_of_admin_transitions(q: Queue, events: Events) -> None:
    q.enqueue("core.echo", job_id="r", retries=1, backoff_s=60)
    q.enqueue("core.echo", job_id="s")
    q.enqueue("core.echo", job_id="g")
    jobs = {j.id: j for j in q.claim(OWNER_A, 3, LONG_LEASE_MS)[0]}
    q.fail([("r", jobs["r"].token, "again", "", True)])
    q.stall("s", "look at me")
    q.release([("g", jobs["g"].token)])
    q.enqueue("core.echo", job_id="c", delay=60)
    q.cancel("c")
    q.enqueue("core.echo", job_id="d")
    q.delete("d")
    retry = events.wait("r", ["failed"])[-1]
    assert retry["error"] == "again"
    assert retry["retry_at"] == int(q.job("r").fields["run_at"])
    assert events.wait("s", ["stalled"])[-1]["reason"] == "look at me"
    assert events.wait("g", ["released"])[-1]["mode"] == "giveback"
    events.wait("c", ["cancelled"])
    events.wait("d", ["deleted"])
    q.retry_stalled()
    wait_for(
        lambda: any(m.get("retried_from") == "stalled" for m in events.wait("s", ["enqueued"])),
        5,
        "an enqueued event saying the job was retried from stalled",
    )


def test_result_of_a_completed_job(q: Queue) -> None:
    with core_worker(q):
        job = q.enqueue("core.echo", {"answer": 42})
        assert job.result(timeout=10) == {"answer": 42}
        assert job.state == "completed"
    # After the fact, the stored outcome answers at once.
    started = time.monotonic()
    assert q.job(job.id).result(timeout=5) == {"answer": 42}
    assert time.monotonic() - started < 1.0


def test_result_of_a_failed_job_raises_with_the_reason(q: Queue) -> None:
    with core_worker(q):
        job = q.enqueue("core.fail", {"message": "disk full"})
        with pytest.raises(JobFailed) as info:
            job.result(timeout=10)
    assert info.value.state == "failed"
    assert info.value.reason == "ValueError: disk full"
    assert info.value.job_id == job.id
    with pytest.raises(JobFailed, match="disk full"):
        q.job(job.id).result(timeout=1)


def test_result_times_out_while_the_job_is_pending(q: Queue) -> None:
    job = q.enqueue("core.echo")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.3s"):
        job.result(timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert q.job(job.id).state == "queued", "waiting changed nothing"
    with pytest.raises(JobNotFound):
        Job(q, "never-enqueued").result(timeout=1)


def test_result_is_delivered_by_pub_sub_without_polling_delay(q: Queue) -> None:
    q.enqueue("core.echo", job_id="rpc")
    waiter: dict[str, Any] = {}

    def wait() -> None:
        waiter["result"] = q.job("rpc").result(timeout=10)
        waiter["at"] = time.monotonic()

    t = threading.Thread(target=wait)
    t.start()
    # Ack once the waiter has subscribed to the job's done channel.
    channel = q.keys.job_done_channel("rpc")
    wait_for(lambda: q.redis.pubsub_numsub(channel)[0][1] == 1, 5, "the waiter to subscribe")
    (job,), _ = q.claim(OWNER_A, 1, LONG_LEASE_MS)
    acked = time.monotonic()
    q.complete([(job.id, job.token, '{"ok":true}')])
    t.join(10)
    assert waiter["result"] == {"ok": True}
    assert waiter["at"] - acked < 0.5, "the published outcome woke the waiter"


def test_a_waiter_gets_the_result_of_a_job_removed_on_completion(q: Queue) -> None:
    job = q.enqueue("core.echo", {"v": 1}, job_id="gone", remove_on_complete=True)
    got: dict[str, Any] = {}
    t = threading.Thread(target=lambda: got.update(result=job.result(timeout=10)))
    t.start()
    channel = q.keys.job_done_channel("gone")
    wait_for(lambda: q.redis.pubsub_numsub(channel)[0][1] == 1, 5, "the waiter to subscribe")
    with core_worker(q):
        t.join(10)
    assert got["result"] == {"v": 1}
    assert q.get("gone") is None
    assert q.redis.exists(q.keys.job_log("gone")) == 0
    assert q.totals()["processed"] == 1
    assert q.counts()["completed"] == 0
    with pytest.raises(JobNotFound):
        job.result(timeout=1)
    assert_consistent(q)


def test_progress_and_log_lines_are_kept_with_the_job(q: Queue) -> None:
    with core_worker(q):
        job = q.enqueue("core.progress", {"steps": 3})
        assert job.result(timeout=10) == {"steps": 3}
    stored = q.job(job.id)
    assert stored.progress_info == {"done": 3, "total": 3, "data": {"step": 3}}
    assert stored.logs() == ["step 1/3", "step 2/3", "step 3/3"]


def test_progress_needs_the_lease_and_logs_are_capped(q: Queue) -> None:
    q.enqueue("core.echo", job_id="p")
    with pytest.raises(JobError, match="only inside the task"):
        q.job("p").progress(1, 2)
    (claimed,), _ = q.claim(OWNER_A, 1, LONG_LEASE_MS)
    handle = Job(q, "p", {"task": "core.echo"}, token=claimed.token)
    assert handle.progress(1, 2, {"note": "half"})
    assert q.job("p").progress_info == {"done": 1, "total": 2, "data": {"note": "half"}}
    assert not Job(q, "p", token="other:1").progress(2, 2), "a stale token records nothing"
    q.max_log_lines = 5
    for i in range(8):
        handle.log(f"line {i}")
    assert q.job("p").logs() == [f"line {i}" for i in range(3, 8)]


def complete_one(q: Queue, job_id: str) -> None:
    q.enqueue("core.echo", job_id=job_id)
    (job,), _ = q.claim(OWNER_A, 1, LONG_LEASE_MS)
    assert q.complete([(job.id, job.token, "null")]) == 1


def test_keep_completed_keeps_the_newest(redis_client: redis.Redis, prefix: str) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix, keep_completed=3)
    for i in range(6):
        complete_one(q, f"c{i}")
    assert q.job_ids("completed") == ["c3", "c4", "c5"]
    for i in range(3):
        assert q.get(f"c{i}") is None
    assert q.counts_by_task()["core.echo"]["completed"] == 3
    assert q.totals()["processed"] == 6
    assert_consistent(q)


def test_keep_completed_zero_keeps_none(redis_client: redis.Redis, prefix: str) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix, keep_completed=0)
    complete_one(q, "c")
    assert q.get("c") is None
    assert_consistent(q)


def test_completed_ttl_drops_old_completed_jobs(redis_client: redis.Redis, prefix: str) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix, completed_ttl=0.1)
    complete_one(q, "old")
    finished = int(q.job("old").fields["finished_at"])
    complete_one(q, "young")
    assert q.get("old") is not None, "still inside the retention window"
    wait_for(lambda: redis_ms(q.redis) > finished + 100, 5, "the retention window to pass")
    complete_one(q, "newest")
    assert q.get("old") is None
    assert q.job_ids("completed")[-1] == "newest"
    assert_consistent(q)


def test_no_retention_bound_keeps_everything(redis_client: redis.Redis, prefix: str) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix, keep_completed=None, completed_ttl=None)
    for i in range(5):
        complete_one(q, f"k{i}")
    assert len(q.job_ids("completed")) == 5
