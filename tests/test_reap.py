"""reap_owner: a dead child's jobs, and only its, are recovered; a shutdown the
supervisor ordered does not count a death, a crash does."""

from __future__ import annotations

import pytest
import redis
from store_helpers import LONG_LEASE_MS, OWNER_A, OWNER_B, assert_consistent

from supervisor import Queue


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


def test_reap_counts_a_death_for_a_crash(q: Queue) -> None:
    q.enqueue("core.echo", {}, job_id="crashed", retries=2, backoff="fixed", backoff_s=0)
    q.enqueue("core.echo", {}, job_id="other", retries=2)
    q.claim(OWNER_A, 1, LONG_LEASE_MS)
    q.claim(OWNER_B, 1, LONG_LEASE_MS)

    assert q.reap_owner(OWNER_A, "child pid 1 killed by signal 9") == 1

    crashed, other = q.job("crashed"), q.job("other")
    assert crashed.state == "delayed"
    assert crashed.deaths == 1
    assert crashed.history[-1]["error"] == "child pid 1 killed by signal 9"
    assert other.state == "active", "another owner's job must not move"
    assert_consistent(q)


def test_reap_after_an_ordered_shutdown_retries_without_counting_a_death(q: Queue) -> None:
    q.enqueue("core.echo", {}, job_id="cut-short", retries=5, backoff="fixed", backoff_s=0)
    for round_ in range(4):  # more rounds than the poison-pill limit of 3
        jobs, _ = q.claim(OWNER_A, 1, LONG_LEASE_MS)
        assert [j.id for j in jobs] == ["cut-short"], f"round {round_}: job not claimable"
        assert q.reap_owner(OWNER_A, "shutdown", max_deaths=3, count_death=False) == 1
        job = q.job("cut-short")
        assert job.state == "delayed", f"round {round_}: {job.state} ({job.error})"
        assert job.deaths == 0
        q.redis.zadd(q.keys.delayed, {"cut-short": 0})  # due now: the next claim promotes it
    assert q.job("cut-short").attempts == 4
    assert_consistent(q)


def test_reap_without_retries_left_fails_with_the_reason(q: Queue) -> None:
    q.enqueue("core.echo", {}, job_id="last-try", retries=0)
    q.claim(OWNER_A, 1, LONG_LEASE_MS)
    assert q.reap_owner(OWNER_A, "shutdown", count_death=False) == 1
    job = q.job("last-try")
    assert (job.state, job.error) == ("failed", "shutdown")
    assert q.counts()["failed"] == 1
