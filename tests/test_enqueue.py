"""Enqueue: the job as written, batches, unique ids, priorities, delays, refusals."""

from __future__ import annotations

import datetime as dt
import json
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
    redis_ms,
)

from supervisor import EnqueueError, JobFailed, Queue
from supervisor.scripts import Scripts


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


def claim_ids(q: Queue, n: int = 100) -> list[str]:
    jobs, _ = q.claim(OWNER_A, n, LONG_LEASE_MS)
    return [j.id for j in jobs]


def test_enqueue_writes_the_job_queued_with_its_wire_fields(q: Queue) -> None:
    before = redis_ms(q.redis)
    job = q.enqueue(
        "core.echo", {"x": [1, "two"]}, job_id="j1", resource_id="r1", timeout=5, retries=2
    )
    after = redis_ms(q.redis)

    assert (job.id, job.state, job.duplicate) == ("j1", "queued", False)
    stored = q.job("j1")
    assert stored.params == {"x": [1, "two"]}
    assert json.loads(stored.fields["params"]) == {"x": [1, "two"]}
    assert stored.fields["task"] == "core.echo"
    assert stored.fields["max_retries"] == "2"
    assert stored.fields["timeout"] == "5"
    assert stored.resource_id == "r1"
    assert stored.attempts == 0
    assert before <= int(stored.fields["created_at"]) <= after
    assert index_of(q, "j1") == ["queued"]
    assert q.counts()["queued"] == 1
    assert q.counts_by_task()["core.echo"]["queued"] == 1
    assert q.redis.llen(q.keys.notify) == 1, "an enqueue leaves one wake-up token"
    assert q.name in q.redis.smembers(q.process_keys.queues)
    assert_consistent(q)


def test_enqueue_without_id_makes_a_fresh_one(q: Queue) -> None:
    a, b = q.enqueue("core.echo"), q.enqueue("core.echo")
    assert a.id != b.id
    assert len(a.id) >= 16
    assert q.job(a.id).params == {}, "no params are stored as an empty object"


def test_enqueue_many_is_one_lua_call_and_keeps_order(
    q: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = Scripts.call

    def counting(self: Scripts, name: str, *args: object, **kwargs: object) -> object:
        calls.append(name)
        return original(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Scripts, "call", counting)
    jobs = q.enqueue_many(
        [{"task": "core.echo", "params": {"i": i}, "job_id": f"m{i}"} for i in range(50)]
    )
    assert calls == ["enqueue"]
    assert [j.id for j in jobs] == [f"m{i}" for i in range(50)]
    assert claim_ids(q) == [f"m{i}" for i in range(50)], "FIFO within one priority"
    assert q.enqueue_many([]) == []
    assert calls == ["enqueue", "claim"], "an empty batch sends nothing"


def test_unique_id_while_pending_is_a_no_op_that_says_so(q: Queue) -> None:
    first = q.enqueue("core.echo", {"v": 1}, job_id="u1")
    again = q.enqueue("core.echo", {"v": 2}, job_id="u1", priority="critical")
    assert not first.duplicate
    assert again.duplicate and again.state == "queued"
    assert q.job("u1").params == {"v": 1}, "the duplicate changed nothing"
    assert q.counts()["queued"] == 1

    # Also while delayed, active and stalled: each returns that state.
    q.enqueue("core.echo", job_id="u2", delay=60)
    assert q.enqueue("core.echo", job_id="u2").state == "delayed"
    claimed = claim_ids(q)
    assert claimed == ["u1"]
    dup = q.enqueue("core.echo", job_id="u1")
    assert (dup.duplicate, dup.state) == (True, "active")
    assert q.stall("u1")
    assert q.enqueue("core.echo", job_id="u1").state == "stalled"
    assert q.counts() == {
        "queued": 0,
        "delayed": 1,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "stalled": 1,
        "cancelled": 0,
    }
    assert_consistent(q)


def test_unique_id_can_be_queued_again_after_it_finished(q: Queue) -> None:
    q.enqueue("core.echo", {"run": 1}, job_id="again")
    (job,), _ = q.claim(OWNER_A, 1, LONG_LEASE_MS)
    assert q.complete([(job.id, job.token, '{"run":1}')]) == 1
    assert q.job("again").state == "completed"

    second = q.enqueue("core.echo", {"run": 2}, job_id="again")
    assert not second.duplicate
    stored = q.job("again")
    assert (stored.state, stored.attempts, stored.params) == ("queued", 0, {"run": 2})
    assert "result" not in stored.fields, "the old run's fields are dropped"
    assert index_of(q, "again") == ["queued"]
    assert_consistent(q)

    # Failed and cancelled ids may be queued again too.
    (job,), _ = q.claim(OWNER_A, 1, LONG_LEASE_MS)
    q.fail([(job.id, job.token, "boom", "", False)])
    assert not q.enqueue("core.echo", job_id="again").duplicate
    assert q.cancel("again")
    assert not q.enqueue("core.echo", job_id="again").duplicate
    assert index_of(q, "again") == ["queued"]
    assert_consistent(q)


def test_unique_id_enqueued_twice_runs_once_then_again_after_it_finished(q: Queue) -> None:
    runs = record_key(q, "runs")
    with core_worker(q, concurrency=2):
        q.pause()  # both enqueues land while the first is surely still pending
        a = q.enqueue("core.span", {}, job_id="once")
        b = q.enqueue("core.span", {}, job_id="once")
        q.resume()
        assert (a.duplicate, b.duplicate) == (False, True)
        assert a.result(timeout=10) == {"id": "once"}
        assert q.redis.hget(runs, "once") == "1"

        c = q.enqueue("core.span", {}, job_id="once")
        assert not c.duplicate
        assert c.result(timeout=10) == {"id": "once"}
    assert q.redis.hget(runs, "once") == "2"
    assert q.totals()["processed"] == 2


def test_priorities_by_name_and_number_run_highest_first(q: Queue) -> None:
    for i, priority in enumerate(["low", "normal", "critical", "medium", "high", -50, 100, 0]):
        q.enqueue("core.echo", job_id=f"p{i}", priority=priority)
    assert q.job("p2").priority == 15
    assert claim_ids(q) == ["p6", "p2", "p4", "p3", "p1", "p7", "p0", "p5"]


def test_front_goes_before_its_band_but_not_before_higher_priorities(q: Queue) -> None:
    q.enqueue("core.echo", job_id="n1")
    q.enqueue("core.echo", job_id="n2")
    q.enqueue("core.echo", job_id="h1", priority="high")
    q.enqueue("core.echo", job_id="f1", front=True)
    q.enqueue("core.echo", job_id="f2", front=True)
    q.enqueue("core.echo", job_id="l1", priority="low", front=True)
    # Fronted jobs are LIFO among themselves (Thoonk's "to the front").
    assert claim_ids(q) == ["h1", "f2", "f1", "n1", "n2", "l1"]


def test_delay_and_run_at_make_delayed_jobs_on_the_redis_clock(q: Queue) -> None:
    now = redis_ms(q.redis)
    jobs = [
        q.enqueue("core.echo", job_id="d1", delay=30),
        q.enqueue("core.echo", job_id="d2", delay=dt.timedelta(seconds=40)),
        q.enqueue("core.echo", job_id="d3", run_at=time.time() + 50),
        q.enqueue("core.echo", job_id="d4", run_at=dt.datetime.now(dt.timezone.utc)),
        q.enqueue("core.echo", job_id="d5", run_at=time.time() - 10),
    ]
    assert [j.state for j in jobs] == ["delayed"] * 3 + ["queued"] * 2
    assert not any(j.duplicate for j in jobs)
    for job_id, expected in (("d1", 30_000), ("d2", 40_000), ("d3", 50_000)):
        assert index_of(q, job_id) == ["delayed"]
        run_at = int(q.redis.zscore(q.keys.delayed, job_id))
        assert expected - 1000 <= run_at - now <= expected + 1000, job_id
        assert q.job(job_id).run_at == run_at / 1000
    assert index_of(q, "d4") == ["queued"], "run_at now is ready at once"
    assert index_of(q, "d5") == ["queued"], "run_at in the past is ready at once"
    assert q.counts()["delayed"] == 3
    assert claim_ids(q) == ["d4", "d5"]
    assert_consistent(q)


def test_delayed_job_does_not_start_before_its_time(q: Queue) -> None:
    with core_worker(q):
        enqueued_at = redis_ms(q.redis)
        job = q.enqueue("core.span", {}, job_id="later", delay=0.4)
        assert job.state == "delayed"
        job.result(timeout=10)
    (span,) = [json.loads(s) for s in q.redis.lrange(record_key(q, "spans"), 0, -1)]
    assert span[1] >= enqueued_at + 400, f"started {span[1] - enqueued_at} ms after enqueue"
    assert span[1] < enqueued_at + 5000, "a due delayed job starts promptly"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"when": dt.datetime(2024, 1, 1)}, "not JSON-serialisable"),
        ({"s": {1, 2}}, "not JSON-serialisable"),
        ({"x": float("nan")}, "not JSON-serialisable"),
        (b"bytes", "not JSON-serialisable"),
        ({"big": "x" * 2000}, "over the limit of 1000 bytes"),
    ],
)
def test_bad_params_are_refused_and_nothing_is_written(
    redis_client: redis.Redis, prefix: str, params: object, fragment: str
) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix, max_job_bytes=1000)
    with pytest.raises(EnqueueError, match=fragment) as info:
        q.enqueue("core.echo", params, job_id="bad")
    assert "\n" not in str(info.value), "one line"
    with pytest.raises(EnqueueError, match=fragment):
        q.enqueue_many(
            [
                {"task": "core.echo", "params": {"ok": 1}, "job_id": "good"},
                {"task": "core.echo", "params": params},
            ]
        )
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == [], "one bad job refuses the batch"


def test_params_at_the_size_limit_are_accepted(redis_client: redis.Redis, prefix: str) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix, max_job_bytes=100)
    params = {"s": "x" * 92}  # {"s":"…"} is exactly 100 bytes
    assert len(json.dumps(params, separators=(",", ":"))) == 100
    assert q.enqueue("core.echo", params).state == "queued"


def test_default_size_limit_is_512_kib(q: Queue) -> None:
    assert q.max_job_bytes == 512 * 1024
    with pytest.raises(EnqueueError, match="over the limit"):
        q.enqueue("core.echo", {"s": "x" * (512 * 1024)})


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"priority": 101}, "priority"),
        ({"priority": True}, "priority"),
        ({"delay": 1, "run_at": time.time()}, "delay or run_at"),
        ({"backoff": "linear"}, "backoff"),
        ({"retries": -1}, "retries"),
        ({"job_id": "has space"}, "job id"),
        ({"job_id": "{tag}"}, "job id"),
        ({"resource_id": ""}, "resource_id"),
        ({"colour": "red"}, "bad enqueue option"),
    ],
)
def test_bad_options_are_refused(
    redis_client: redis.Redis, prefix: str, options: dict[str, object], fragment: str
) -> None:
    q = Queue("default", redis=redis_client, prefix=prefix)
    with pytest.raises(EnqueueError, match=fragment):
        q.enqueue("core.echo", {}, **options)
    with pytest.raises(EnqueueError, match="task"):
        q.enqueue("", {})
    with pytest.raises(EnqueueError, match="'task'"):
        q.enqueue_many([{"params": {}}])
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []


def test_bad_queue_and_prefix_names_are_refused(redis_client: redis.Redis) -> None:
    for name in ("", "a{b}", "with space"):
        with pytest.raises(ValueError, match="invalid queue name"):
            Queue(name, redis=redis_client)
    with pytest.raises(ValueError, match="invalid prefix name"):
        Queue("ok", redis=redis_client, prefix="p{x}")


def test_unknown_task_is_accepted_at_enqueue_and_fails_clearly_at_run(q: Queue) -> None:
    with core_worker(q):
        job = q.enqueue("no.such.task", {"a": 1})
        with pytest.raises(JobFailed, match=r"unknown task 'no\.such\.task'"):
            job.result(timeout=10)
        assert q.enqueue("core.echo", {"still": "working"}).result(timeout=10) == {
            "still": "working"
        }
    assert q.job(job.id).attempts == 1, "an unknown task is not retried"
