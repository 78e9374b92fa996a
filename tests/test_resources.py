"""Resource exclusivity: at most one running job per resource id; the others wait
their turn in the resource's list (not failed, not polled) and are handed on."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable

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
from waiting import wait_for

from supervisor import Queue
from supervisor.queue import ClaimedJob


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


def claim(q: Queue, n: int = 10, lease_ms: int = LONG_LEASE_MS) -> dict[str, ClaimedJob]:
    return {j.id: j for j in q.claim(OWNER_A, n, lease_ms)[0]}


def test_a_second_job_on_a_held_resource_waits_without_being_polled(q: Queue) -> None:
    q.enqueue("core.echo", job_id="j1", resource_id="r1")
    q.enqueue("core.echo", job_id="j2", resource_id="r1")
    q.enqueue("core.echo", job_id="j3", resource_id="r2")
    q.enqueue("core.echo", job_id="j4")
    jobs = claim(q)
    assert sorted(jobs) == ["j1", "j3", "j4"], "other resources and free jobs still run"
    assert q.redis.hgetall(q.keys.resources) == {"r1": "j1", "r2": "j3"}

    waiting = q.job("j2")
    assert (waiting.state, waiting.attempts, waiting.error) == ("queued", 0, None)
    assert index_of(q, "j2") == ["blocked"]
    assert q.redis.lrange(q.keys.resource_wait("r1"), 0, -1) == ["j2"]
    assert q.counts()["queued"] == 1, "a waiting job counts as queued"
    assert q.job_ids("queued") == ["j2"]
    assert q.redis.exists(q.keys.notify) == 0, "nothing ready: idle workers stay blocked"
    assert_consistent(q)

    # Claims while it waits do not see it at all (it is out of the ready set).
    for _ in range(3):
        assert claim(q) == {}
    assert q.job("j2").fields == waiting.fields

    q.complete([("j1", jobs["j1"].token, "null")])
    assert index_of(q, "j2") == ["queued"]
    assert q.redis.exists(q.keys.resource_wait("r1")) == 0
    assert q.redis.llen(q.keys.notify) == 1, "the handed-on job wakes a worker"
    assert sorted(claim(q)) == ["j2"]
    assert q.redis.hget(q.keys.resources, "r1") == "j2"
    assert_consistent(q)


def test_waiters_are_handed_the_resource_in_order_and_ahead_of_new_work(q: Queue) -> None:
    q.enqueue_many([{"task": "core.echo", "job_id": f"w{i}", "resource_id": "r"} for i in range(4)])
    held = claim(q)
    assert list(held) == ["w0"]
    assert q.redis.lrange(q.keys.resource_wait("r"), 0, -1) == ["w1", "w2", "w3"]
    order = []
    current = held["w0"]
    for _ in range(3):
        q.enqueue("core.echo")  # fresh work of the same priority
        q.complete([(current.id, current.token, "null")])
        nxt = q.claim(OWNER_A, 1, LONG_LEASE_MS)[0][0]
        order.append(nxt.id)
        current = nxt
    assert order == ["w1", "w2", "w3"]


End = Callable[[Queue, ClaimedJob], None]


def _sweep(q: Queue, job: ClaimedJob) -> None:
    deadline = int(q.redis.zscore(q.keys.active, job.id))
    wait_for(lambda: redis_ms(q.redis) > deadline, 5, "the holder's lease to expire")
    assert q.sweep() == 1


ENDINGS: dict[str, End] = {
    "complete": lambda q, j: q.complete([(j.id, j.token, "null")]),
    "fail-retry": lambda q, j: q.fail([(j.id, j.token, "e", "", True)]),
    "fail-final": lambda q, j: q.fail([(j.id, j.token, "e", "", False)]),
    "stall": lambda q, j: q.stall(j.id, "held", token=j.token),
    "release-giveback": lambda q, j: q.release([(j.id, j.token)], mode="giveback"),
    "release-cancel": lambda q, j: q.release([(j.id, j.token)], mode="cancel"),
    "sweep": _sweep,
    "reap": lambda q, j: q.reap_owner(OWNER_A, "child died"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_way_a_holder_ends_hands_the_resource_on(q: Queue, ending: str) -> None:
    q.enqueue("core.echo", job_id="holder", resource_id="r", retries=3, backoff_s=0.05)
    q.enqueue("core.echo", job_id="waiter", resource_id="r")
    holder = claim(q, lease_ms=50)["holder"]
    assert index_of(q, "waiter") == ["blocked"]

    ENDINGS[ending](q, holder)
    assert q.redis.hget(q.keys.resources, "r") is None
    assert index_of(q, "waiter") == ["queued"]
    assert_consistent(q)

    # The waiter runs next, even when the holder was given back to the front: it
    # waited longer. The holder, once ready, waits its turn.
    got = wait_for(lambda: claim(q), 5, "a job to be claimed")
    assert list(got) == ["waiter"]
    assert q.redis.hget(q.keys.resources, "r") == "waiter"
    if q.job("holder").state in ("queued", "delayed"):
        wait_for(
            lambda: not claim(q) and index_of(q, "holder") == ["blocked"],
            5,
            "the holder to wait its turn",
        )
    assert_consistent(q)


@pytest.mark.parametrize("remove", ["cancel", "delete"])
def test_a_waiting_job_can_be_cancelled_or_deleted(q: Queue, remove: str) -> None:
    q.enqueue("core.echo", job_id="holder", resource_id="r")
    q.enqueue("core.echo", job_id="gone", resource_id="r")
    q.enqueue("core.echo", job_id="next", resource_id="r")
    holder = claim(q)["holder"]
    assert q.cancel("gone") if remove == "cancel" else q.delete("gone")
    assert q.redis.lrange(q.keys.resource_wait("r"), 0, -1) == ["next"]
    assert_consistent(q)
    q.complete([(holder.id, holder.token, "null")])
    assert list(claim(q)) == ["next"], "the removed job is not handed the resource"
    assert q.get("gone") is None if remove == "delete" else q.job("gone").state == "cancelled"
    assert_consistent(q)


def test_jobs_on_one_resource_never_overlap_on_a_worker(q: Queue) -> None:
    jobs = q.enqueue_many(
        [
            {
                "task": "core.span",
                "params": {"seconds": 0.04},
                "job_id": f"{res}-{i}",
                "resource_id": res,
            }
            for i in range(5)
            for res in ("ra", "rb")
        ]
        + [
            {"task": "core.span", "params": {"seconds": 0.04}, "job_id": f"free-{i}"}
            for i in range(4)
        ]
    )
    with core_worker(q, concurrency=4):
        for job in jobs:
            job.result(timeout=20)
    spans = [json.loads(s) for s in q.redis.lrange(record_key(q, "spans"), 0, -1)]
    assert len(spans) == len(jobs)
    for res in ("ra", "rb"):
        runs = sorted(
            (start, end, job_id) for job_id, start, end in spans if job_id.startswith(res)
        )
        assert len(runs) == 5
        for (_, end, first), (start, _, second) in itertools.pairwise(runs):
            assert start >= end, f"{second} started at {start}, before {first} ended at {end}"
    assert q.counts()["completed"] == len(jobs)
    assert {q.job(j.id).attempts for j in jobs} == {1}, "no job was failed or retried"
    assert q.totals()["failures"] == 0
    assert q.redis.hlen(q.keys.resources) == 0
    assert_consistent(q)


def test_a_waiting_job_costs_the_worker_no_polling(q: Queue) -> None:
    gate = record_key(q, "gate:holder")
    with core_worker(q, concurrency=2, idle_block_s=1.0) as worker:
        calls = []
        wq = worker.queues[q.name]
        original = wq.claim

        def counting_claim(*args: object, **kwargs: object) -> object:
            calls.append(time.monotonic())
            return original(*args, **kwargs)  # type: ignore[arg-type]

        wq.claim = counting_claim  # type: ignore[method-assign]
        holder = q.enqueue("core.gate", {"wait_s": 20}, job_id="holder", resource_id="r")
        wait_for(lambda: q.redis.exists(record_key(q, "started:holder")), 10, "the holder to start")
        waiter = q.enqueue("core.span", {}, job_id="waiter", resource_id="r")
        wait_for(lambda: index_of(q, "waiter") == ["blocked"], 10, "the waiter to be blocked")
        calls.clear()
        time.sleep(1.0)  # an observation window: nothing should happen in it
        assert len(calls) <= 3, f"the idle fetcher claimed {len(calls)} times in 1 s"
        assert q.job("waiter").attempts == 0

        q.redis.rpush(gate, "open")
        assert holder.result(timeout=10) == {"opened": True}
        assert waiter.result(timeout=10) == {"id": "waiter"}
    assert int(q.job("waiter").fields["started_at"]) >= int(q.job("holder").fields["finished_at"])
