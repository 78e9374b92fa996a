"""A task's heartbeat_timeout: a running job silent for longer is failed as hung
(without waiting for its timeout); heartbeats and progress keep it alive."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from supervisor import JobFailed, Queue, load_app
from supervisor.worker import running_worker

APPS = Path(__file__).parent / "apps"


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("hb", redis=redis_client, prefix=prefix)


@pytest.fixture
def tasks() -> Iterator[object]:
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    import qs_heartbeat_tasks

    qs_heartbeat_tasks.release.clear()
    yield qs_heartbeat_tasks
    qs_heartbeat_tasks.release.set()


def test_silent_job_is_failed_as_hung_and_a_beating_one_completes(q: Queue, tasks: object) -> None:
    registry = load_app("qs_heartbeat_tasks")
    with running_worker(
        [q.name],
        concurrency=2,
        redis_client=q.redis,
        prefix=q.keys.prefix,
        registry=registry,
        idle_block_s=0.2,
        drain_timeout=5.0,
    ):
        silent = q.enqueue("hb.silent", {})
        beating = q.enqueue("hb.beating", {"beats": 8})  # ~1.2 s, beats every 0.15 s

        assert beating.result(timeout=10) == "alive"
        with pytest.raises(JobFailed) as failed:
            silent.result(timeout=10)
        assert "no heartbeat for" in failed.value.reason
        assert "heartbeat_timeout 0.5 s" in failed.value.reason
        tasks.release.set()  # type: ignore[attr-defined]
    stored = q.job(silent.id)
    assert stored.state == "failed"
    assert q.job(beating.id).state == "completed"
