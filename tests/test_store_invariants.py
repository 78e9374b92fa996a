"""A hypothesis state machine over the store's transitions on real Redis.

Random sequences of enqueue / claim / complete / fail / release / stall / sweep /
reap / cancel / retry / delete, with stale tokens and expired leases mixed in.
After every step: each job id is in exactly one state index (or blocked), its
hash agrees, counts (total and by task) equal the index sizes (store_helpers'
``assert_consistent``), and the processed / failures totals match the transitions
that completed or failed a job. Each step also checks the transition's answer against
the state the job was in before it.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from store_helpers import OWNER_A, OWNER_B, assert_consistent, state_of

from supervisor import Queue
from supervisor.queue import ClaimedJob

IDS = [f"j{i}" for i in range(4)]
OWNERS = [OWNER_A, OWNER_B]
PENDING = ("queued", "delayed", "active", "stalled")
LONG_MS, EXPIRED_MS = 60_000, 0
MAX_DEATHS = 2
RESOURCES = [None, "r1", "r1", "r2"]  # weighted: most jobs contend for r1


class StoreMachine(RuleBasedStateMachine):
    redis_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.prefix = f"sm{uuid.uuid4().hex[:10]}"
        self.q = Queue("sm", redis=self.client, prefix=self.prefix, keep_completed=3)
        self.claims: list[ClaimedJob] = []  # every claim made; their tokens may be stale
        self.processed = 0  # what totals() must say, counted from the transitions' answers
        self.failures = 0

    def teardown(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.client.delete(*keys)
        self.client.close()

    def holds(self, claimed: ClaimedJob) -> bool:
        lease = self.client.hmget(self.q.keys.job(claimed.id), "state", "lease")
        return lease == ["active", claimed.token]

    # -- producing and claiming -------------------------------------------------
    @initialize(resources=st.lists(st.sampled_from(RESOURCES), min_size=4, max_size=4))
    def start_with_every_id_queued(self, resources: list[str | None]) -> None:
        """Every run starts with work, mostly contending for resources."""
        jobs = self.q.enqueue_many(
            [
                {
                    "task": "core.echo",
                    "job_id": job_id,
                    "resource_id": resource,
                    "retries": 1,
                    "backoff": "fixed",
                    "backoff_s": 0,
                }
                for job_id, resource in zip(IDS, resources, strict=True)
            ]
        )
        assert [j.state for j in jobs] == ["queued"] * len(IDS)

    @rule(
        job_id=st.sampled_from(IDS),
        resource=st.sampled_from(RESOURCES),
        delayed=st.booleans(),
        retries=st.integers(0, 2),
        priority=st.sampled_from(["low", "normal", "high"]),
    )
    def enqueue(
        self, job_id: str, resource: str | None, delayed: bool, retries: int, priority: str
    ) -> None:
        before = state_of(self.q, job_id)
        job = self.q.enqueue(
            "core.echo",
            job_id=job_id,
            resource_id=resource,
            delay=60 if delayed else None,
            retries=retries,
            backoff="fixed",
            backoff_s=0,
            priority=priority,
        )
        if before in PENDING:
            assert job.duplicate and job.state == before
            assert state_of(self.q, job_id) == before
        else:
            assert not job.duplicate
            assert job.state == state_of(self.q, job_id) == ("delayed" if delayed else "queued")

    @rule(
        ids=st.lists(st.sampled_from(IDS), min_size=2, max_size=4, unique=True),
        resource=st.sampled_from([None, "r1", "r1"]),
    )
    def enqueue_many(self, ids: list[str], resource: str | None) -> None:
        before = {job_id: state_of(self.q, job_id) for job_id in ids}
        jobs = self.q.enqueue_many(
            [{"task": "core.echo", "job_id": i, "resource_id": resource} for i in ids]
        )
        for job in jobs:
            assert job.duplicate == (before[job.id] in PENDING)

    @rule(owner=st.sampled_from(OWNERS), n=st.integers(1, 3), expired=st.booleans())
    def claim(self, owner: str, n: int, expired: bool) -> None:
        jobs, _ = self.q.claim(owner, n, EXPIRED_MS if expired else LONG_MS)
        assert len(jobs) <= n
        for job in jobs:
            assert state_of(self.q, job.id) == "active"
            assert job.token == f"{owner}:{job.attempts}"
        self.claims.extend(jobs)

    @rule()
    def claim_all(self) -> None:
        self.claim(OWNER_B, 10, expired=False)

    # -- a worker's outcomes, possibly with a stale token ------------------------
    @precondition(lambda self: self.claims)
    @rule(pick=st.data())
    def complete(self, pick: st.DataObject) -> None:
        claimed = pick.draw(st.sampled_from(self.claims))
        holds = self.holds(claimed)
        assert self.q.complete([(claimed.id, claimed.token, "null")]) == int(holds)
        self.processed += holds
        if holds:
            assert state_of(self.q, claimed.id) in ("completed", None)  # None: trimmed

    @precondition(lambda self: self.claims)
    @rule(pick=st.data(), allow_retry=st.booleans())
    def fail(self, pick: st.DataObject, allow_retry: bool) -> None:
        claimed = pick.draw(st.sampled_from(self.claims))
        holds = self.holds(claimed)
        (answer,) = self.q.fail([(claimed.id, claimed.token, "err", "", allow_retry)])
        if not holds:
            assert answer == "stale"
        else:
            retry = allow_retry and claimed.attempts <= claimed.max_retries
            assert answer == ("delayed" if retry else "failed")
            assert state_of(self.q, claimed.id) == answer
            self.failures += answer == "failed"

    @precondition(lambda self: self.claims)
    @rule(pick=st.data(), mode=st.sampled_from(["giveback", "cancel"]))
    def release(self, pick: st.DataObject, mode: str) -> None:
        claimed = pick.draw(st.sampled_from(self.claims))
        holds = self.holds(claimed)
        assert self.q.release([(claimed.id, claimed.token)], mode=mode) == int(holds)

    @precondition(lambda self: self.claims)
    @rule(pick=st.data(), by_operator=st.booleans())
    def stall(self, pick: st.DataObject, by_operator: bool) -> None:
        claimed = pick.draw(st.sampled_from(self.claims))
        if by_operator:  # no token: whoever holds the job
            active = state_of(self.q, claimed.id) == "active"
            assert self.q.stall(claimed.id) == active
        else:
            holds = self.holds(claimed)
            assert self.q.stall(claimed.id, "by task", token=claimed.token) == holds

    # -- recovery ------------------------------------------------------------------
    @rule()
    def sweep(self) -> None:
        active_before = set(self.client.zrange(self.q.keys.active, 0, -1))
        moved = self.q._run("sweep", [MAX_DEATHS, 100])
        assert set(moved) <= active_before
        for job_id in moved:
            assert state_of(self.q, job_id) in ("delayed", "failed")
            self.failures += state_of(self.q, job_id) == "failed"

    @rule(owner=st.sampled_from(OWNERS))
    def reap(self, owner: str) -> None:
        owned = {
            job_id
            for job_id in self.client.zrange(self.q.keys.active, 0, -1)
            if self.client.hget(self.q.keys.job(job_id), "owner") == owner
        }
        assert self.q.reap_owner(owner, "died", max_deaths=MAX_DEATHS) == len(owned)
        for job_id in owned:
            assert state_of(self.q, job_id) in ("delayed", "failed")
            self.failures += state_of(self.q, job_id) == "failed"

    # -- administration ------------------------------------------------------------
    def pick_job(self, data: st.DataObject) -> str:
        """Any id, or (half the time, when there is one) a job waiting for its resource."""
        blocked = self.client.zrange(self.q.keys.blocked, 0, -1)
        if blocked and data.draw(st.booleans()):
            return data.draw(st.sampled_from(blocked))
        return data.draw(st.sampled_from(IDS))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = self.pick_job(data)
        before = state_of(self.q, job_id)
        assert self.q.cancel(job_id) == (before in ("queued", "delayed"))

    @rule(job_id=st.sampled_from([*IDS, None]))
    def retry(self, job_id: str | None) -> None:
        if job_id is None:  # all failed and all stalled jobs
            failed = self.client.zcard(self.q.keys.failed)
            stalled = self.client.zcard(self.q.keys.stalled)
            assert self.q.retry_failed() == failed
            assert self.q.retry_stalled() == stalled
        else:
            before = state_of(self.q, job_id)
            assert self.q.retry(job_id) == (before in ("failed", "stalled", "cancelled"))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        job_id = self.pick_job(data)
        before = state_of(self.q, job_id)
        assert self.q.delete(job_id) == (before is not None and before != "active")
        if before not in (None, "active"):
            assert self.q.get(job_id) is None

    @rule()
    def claim_while_paused(self) -> None:
        self.q.pause()
        assert self.q.claim(OWNER_A, 10, LONG_MS)[0] == []
        assert self.client.exists(self.q.keys.notify) == 0
        self.q.resume()

    # -- the invariant ---------------------------------------------------------------
    @invariant()
    def store_is_consistent(self) -> None:
        assert_consistent(self.q)
        assert self.q.totals() == {"processed": self.processed, "failures": self.failures}


def test_store_state_machine(redis_url: str, slow: bool) -> None:
    """A few seconds by default; ``--slow`` explores ten times as many runs."""
    StoreMachine.redis_url = redis_url
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=400 if slow else 40,
            stateful_step_count=50 if slow else 30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )
