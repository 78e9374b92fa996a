"""Test mode (supervisor.testing): enqueues recorded in memory, optionally run inline,
and the pytest fixtures the package registers as a plugin."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from supervisor import (
    AppLoadError,
    EnqueueError,
    Job,
    JobFailed,
    Queue,
    TaskRegistry,
    current_job,
    task,
    testing,
)
from supervisor.embedded import free_port
from supervisor.task import TASK_ATTRIBUTE
from supervisor.worker import running_worker

pytest_plugins = ["pytester"]


@task(name="tm.echo", retries=0)
def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


@task(name="tm.types", retries=0)
def types(params: dict[str, Any]) -> Any:
    return {"param_types": sorted(type(v).__name__ for v in params.values()), "pair": (1, 2)}


@task(name="tm.flaky", retries=2, backoff="fixed", backoff_s=60)
def flaky(params: dict[str, Any], job: Job) -> dict[str, int]:
    if job.attempts < int(params["succeed_on"]):
        raise RuntimeError(f"attempt {job.attempts} fails")
    return {"attempts": job.attempts}


@task(name="tm.fail", retries=0)
def fail(params: dict[str, Any]) -> None:
    raise ValueError("no good\nsecond line")


@task(name="tm.bad_result", retries=3)
def bad_result(params: dict[str, Any]) -> Any:
    return {"when": dt.date(2024, 1, 1)}


@task(name="tm.progress", retries=0)
def progress(params: dict[str, Any], job: Job) -> dict[str, Any]:
    for i in range(1, 4):
        job.progress(i, 3, {"step": i})
        job.log(f"step {i}")
    running = current_job()
    return {"same_job": running is job, "heartbeat": job.heartbeat()}


@task(name="tm.fan_out", retries=0)
def fan_out(params: dict[str, Any], job: Job) -> dict[str, Any]:
    q = Queue("fanned", redis_url=params["url"])
    children = [q.enqueue("tm.echo", {"child": n}) for n in range(int(params["n"]))]
    # A job enqueued by a running task runs after it, as a worker would run it.
    return {"children": [c.id for c in children], "states": [c.state for c in children]}


@task(name="tm.stall", retries=0)
def stall(params: dict[str, Any], job: Job) -> str:
    job.stall("waiting for a human")
    return "ignored"


REGISTRY = TaskRegistry(
    [
        getattr(f, TASK_ATTRIBUTE)
        for f in (echo, types, flaky, fail, bad_result, progress, fan_out, stall)
    ]
)


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("tm", redis=redis_client, prefix=prefix)


def keys_under(r: redis.Redis, prefix: str) -> list[str]:
    return sorted(r.scan_iter(match=f"{prefix}:*", count=1000))


# -- recording ------------------------------------------------------------------------


def test_enqueues_are_recorded_and_nothing_reaches_redis(
    q: Queue, redis_client: redis.Redis, prefix: str
) -> None:
    with testing.capture() as jobs:
        one = q.enqueue("send_welcome", {"to": "ann@example.com"}, priority="high")
        many = q.enqueue_many(
            [
                {"task": "resize", "params": {"w": 10}, "job_id": "img-1"},
                {"task": "resize", "params": {"w": 20}, "delay": 30},
            ]
        )
    assert keys_under(redis_client, prefix) == []
    assert [j.task for j in jobs] == ["send_welcome", "resize", "resize"]
    assert list(jobs) == [one, *many] and len(jobs) == 3
    assert one.params == {"to": "ann@example.com"}
    assert one.options == {"priority": "high"}
    assert (one.state, one.priority, one.duplicate) == ("queued", 10, False)
    assert len(one.id) == 32
    assert many[0].id == "img-1" and many[0].options == {"job_id": "img-1"}
    assert many[1].state == "delayed" and many[1].options == {"delay": 30}
    assert jobs.for_task("resize") == many
    assert jobs.for_queue("tm") == [one, *many] and jobs.for_queue("other") == []
    assert isinstance(one, Job) and one.queue is q


def test_no_redis_is_needed(prefix: str) -> None:
    nowhere = Queue("tm", redis_url=f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    with testing.capture() as jobs:
        nowhere.enqueue("send_welcome", {"to": "bob"})
    assert [j.params for j in jobs] == [{"to": "bob"}]


def test_enqueue_goes_to_redis_again_after_the_capture(q: Queue) -> None:
    original = Queue.__dict__["enqueue_many"]
    with testing.capture():
        assert Queue.__dict__["enqueue_many"] is not original
    assert Queue.__dict__["enqueue_many"] is original
    job = q.enqueue("tm.echo", {"x": 1})
    assert q.job(job.id).state == "queued"


def test_bad_jobs_are_refused_as_in_production(q: Queue) -> None:
    small = Queue("tm", redis=q.redis, prefix=q.keys.prefix, max_job_bytes=100)
    with testing.capture() as jobs:
        with pytest.raises(EnqueueError, match="not JSON-serialisable"):
            q.enqueue("tm.echo", {"when": dt.date(2024, 1, 1)})
        with pytest.raises(EnqueueError, match="over the limit of 100 bytes"):
            small.enqueue_many(
                [{"task": "tm.echo", "params": {}}, {"task": "tm.echo", "params": {"b": "x" * 200}}]
            )
        with pytest.raises(EnqueueError, match="bad enqueue option"):
            q.enqueue("tm.echo", {}, colour="red")
        with pytest.raises(EnqueueError, match="priority"):
            q.enqueue("tm.echo", {}, priority="urgent")
        with pytest.raises(EnqueueError, match="each job needs a 'task'"):
            q.enqueue_many([{"params": {}}])
    assert len(jobs) == 0, "a refused batch recorded a job"


def test_a_unique_id_still_queued_is_a_duplicate(q: Queue) -> None:
    with testing.capture() as jobs:
        first = q.enqueue("tm.echo", {"n": 1}, job_id="order-42")
        again = q.enqueue("tm.echo", {"n": 2}, job_id="order-42")
        other_queue = Queue("other", redis=q.redis, prefix=q.keys.prefix)
        elsewhere = other_queue.enqueue("tm.echo", {"n": 3}, job_id="order-42")
    assert (first.duplicate, again.duplicate, elsewhere.duplicate) == (False, True, False)
    assert again.params == {"n": 1}
    assert [j.params for j in jobs] == [{"n": 1}, {"n": 3}]


def test_result_of_a_job_that_did_not_run_says_so(q: Queue) -> None:
    with testing.capture():
        job = q.enqueue("tm.echo", {})
    with pytest.raises(TimeoutError, match="captured, not run"):
        job.result(timeout=1)


def test_enqueues_from_another_thread_are_captured(q: Queue) -> None:
    with testing.capture() as jobs:
        worker = threading.Thread(target=q.enqueue, args=("tm.echo", {"from": "thread"}))
        worker.start()
        worker.join(10)
    assert [j.params for j in jobs] == [{"from": "thread"}]


def test_nested_captures_and_asyncio_tasks_keep_their_own_jobs(q: Queue) -> None:
    with testing.capture() as outer:
        q.enqueue("tm.echo", {"n": "outer-1"})
        with testing.capture() as inner:
            q.enqueue("tm.echo", {"n": "inner"})
        q.enqueue("tm.echo", {"n": "outer-2"})

        async def enqueue_in_own_capture(name: str) -> list[Any]:
            with testing.capture() as mine:
                await asyncio.sleep(0)  # let the other task interleave
                q.enqueue("tm.echo", {"n": name})
                await asyncio.sleep(0)
            return [j.params["n"] for j in mine]

        async def both() -> list[list[Any]]:
            return list(
                await asyncio.gather(enqueue_in_own_capture("a"), enqueue_in_own_capture("b"))
            )

        assert asyncio.run(both()) == [["a"], ["b"]]
    assert [j.params["n"] for j in outer] == ["outer-1", "outer-2"]
    assert [j.params["n"] for j in inner] == ["inner"]


# -- running inline ------------------------------------------------------------------


def test_inline_runs_the_real_task_with_a_json_round_trip(q: Queue) -> None:
    with testing.capture(run_inline=True, app=REGISTRY) as jobs:
        job = q.enqueue("tm.types", {"a": (1, 2), "b": 1.5})
    assert job.state == "completed" and job.attempts == 1
    assert job.result() == {"param_types": ["float", "list"], "pair": [1, 2]}
    assert job.result() is not job.result(), "each result() decodes the stored JSON"
    assert list(jobs) == [job]


def test_inline_failures_match_a_real_worker(q: Queue, redis_url: str) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("tm.fail", {}),
        ("tm.bad_result", {}),
        ("no.such.task", {}),
        ("tm.flaky", {"succeed_on": 9}),
    ]
    with testing.capture(run_inline=True, app=REGISTRY):
        inline = [q.enqueue(name, params) for name, params in cases]
    real = [q.enqueue(name, params, retries=2 if name == "tm.flaky" else None, backoff_s=0.01)
            for name, params in cases]  # fmt: skip
    with running_worker(
        ["tm"], redis_url=redis_url, prefix=q.keys.prefix, registry=REGISTRY, idle_block_s=0.2
    ):
        for job in real:
            with pytest.raises(JobFailed):
                job.result(timeout=10)
    for mine, theirs in zip(inline, real, strict=True):
        stored = q.job(theirs.id)
        assert mine.state == stored.state == "failed"
        assert mine.error == stored.error, mine.task
        assert mine.attempts == stored.attempts, mine.task
        assert [h["error"] for h in mine.history] == [h["error"] for h in stored.history]
        assert mine.failures == stored.failures == 1
    assert inline[0].error == "ValueError: no good"
    assert "raise ValueError" in (inline[0].traceback or "")
    with pytest.raises(JobFailed, match="no good"):
        inline[0].result()


def test_inline_retries_at_once_until_the_task_succeeds(q: Queue) -> None:
    with testing.capture(run_inline=True, app=REGISTRY):
        job = q.enqueue("tm.flaky", {"succeed_on": 3})
    assert job.result() == {"attempts": 3}
    assert [h["error"] for h in job.history] == [
        "RuntimeError: attempt 1 fails",
        "RuntimeError: attempt 2 fails",
    ]


def test_inline_task_reports_progress_and_logs_in_memory(
    q: Queue, redis_client: redis.Redis, prefix: str
) -> None:
    with testing.capture(run_inline=True, app=REGISTRY):
        job = q.enqueue("tm.progress")
    assert job.result() == {"same_job": True, "heartbeat": True}
    assert job.progress_info == {"done": 3, "total": 3, "data": {"step": 3}}
    assert job.logs() == ["step 1", "step 2", "step 3"]
    assert current_job() is None
    assert keys_under(redis_client, prefix) == []


def test_inline_stall_ignores_the_result(q: Queue) -> None:
    with testing.capture(run_inline=True, app=REGISTRY):
        job = q.enqueue("tm.stall")
    assert (job.state, job.error) == ("stalled", "waiting for a human")
    assert "result" not in job.fields


def test_jobs_enqueued_by_an_inline_task_run_after_it(q: Queue, prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # never contacted
    with testing.capture(run_inline=True, app=REGISTRY) as jobs:
        parent = q.enqueue("tm.fan_out", {"url": url, "n": 2})
    assert [j.task for j in jobs] == ["tm.fan_out", "tm.echo", "tm.echo"]
    assert parent.result() == {
        "children": [j.id for j in jobs][1:],
        "states": ["queued", "queued"],
    }
    assert [j.result() for j in jobs.for_queue("fanned")] == [{"child": 0}, {"child": 1}]


def test_run_pending_runs_what_was_captured(q: Queue) -> None:
    with testing.capture(app=REGISTRY) as jobs:
        first = q.enqueue("tm.echo", {"n": 1})
        later = q.enqueue("tm.echo", {"n": 2}, delay=3600)
        assert first.state == "queued" and later.state == "delayed"
        assert jobs.run_pending() == [first, later]
        assert jobs.run_pending() == []
    assert [first.result(), later.result()] == [{"n": 1}, {"n": 2}]


def test_inline_loads_task_modules_by_path_and_fails_early_on_a_bad_one(q: Queue) -> None:
    with testing.capture(run_inline=True, app="tasks") as jobs:
        assert q.enqueue("echo", {"x": 1}).result() == {"x": 1}
    assert len(jobs) == 1
    with (
        pytest.raises(AppLoadError, match="no_such_module"),
        testing.capture(run_inline=True, app="no_such_module"),
    ):
        pytest.fail("entered a capture whose task modules cannot load")
    assert Queue.__dict__["enqueue_many"].__module__ == "supervisor.queue"


# -- the pytest plugin ------------------------------------------------------------------


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    pytester.makepyfile(
        user_tasks="""
        from supervisor import task

        @task(name="greet", retries=0)
        def greet(params):
            return {"hello": params["name"]}
        """,
        test_user="""
        from supervisor import Queue

        def test_capture(qsupervise_capture):
            job = Queue("mail", redis_url="redis://127.0.0.1:1/0").enqueue("greet", {"name": "ann"})
            assert [j.task for j in qsupervise_capture] == ["greet"]
            assert job.state == "queued"

        def test_inline(qsupervise_inline):
            job = Queue("mail", redis_url="redis://127.0.0.1:1/0").enqueue("greet", {"name": "bob"})
            assert job.result() == {"hello": "bob"}
        """,
    )
    pytester.makeini("[pytest]\nqsupervise_app = user_tasks\n")
    yield pytester


def test_fixtures_come_with_the_installed_package(user_project: pytest.Pytester) -> None:
    # No conftest names them: the fixtures are found through the pytest11 entry point.
    result = user_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
