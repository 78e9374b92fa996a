"""Children and masters that die or hang: their jobs, and only theirs, are recovered."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import redis
from supervisor_harness import APPS, Recorder, Start, Supervisor, enqueue_records
from waiting import wait_for

from supervisor.embedded import RedisServer
from supervisor.queue import Queue

HOST = socket.gethostname()


def owned_by(q: Queue, ids: list[str], pid: int) -> set[str]:
    """Ids of the jobs that child ``pid`` holds (claimed under its owner id)."""
    out = set()
    for job_id in ids:
        job = q.get(job_id)
        if job is not None and job.fields.get("owner", "").startswith(f"{HOST}/{pid}/"):
            out.add(job_id)
    return out


def test_sigkill_of_a_child_recovers_only_its_jobs(start: Start, q: Queue, rec: Recorder) -> None:
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "3", "--prefetch", "0")
    pids = sup.wait_children(2)
    ids = enqueue_records(q, 6, seconds=30, retry_seconds=0.1)
    wait_for(lambda: len(rec.started()) == 6, 10, lambda: f"6 jobs should start: {q.counts()}")
    victim = next(iter(pids))
    victims = owned_by(q, ids, victim)
    others = set(ids) - victims
    assert len(victims) == 3 and len(others) == 3
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: f"reaped child pid {victim} (signal 9), moved 3 jobs" in sup.log(), 5, sup.log)
    for job_id in victims:
        job = q.get(job_id)
        assert job is not None and job.deaths == 1, job
        assert f"child pid {victim} killed by signal 9" in str(job.fields), job.fields
    for job_id in others:
        job = q.get(job_id)
        assert job is not None and job.deaths == 0 and job.state == "active", job
    # A replacement child appears and re-runs the recovered jobs (quickly, on retry).
    wait_for(
        lambda: len(sup.ready_children()) == 2 and victim not in sup.child_pids(),
        10,
        lambda: f"replacement expected: {sup.children_titles()}",
    )
    wait_for(
        lambda: all(q.get(j).state == "completed" for j in victims),
        10,  # type: ignore[union-attr]
        lambda: f"recovered jobs should complete: {q.counts()}",
    )
    assert all(rec.runs()[j.removeprefix("job-")] == 2 for j in victims)
    assert all(q.get(j).state == "active" for j in others)  # type: ignore[union-attr]


def test_hung_child_is_killed_after_heartbeat_timeout(
    start: Start, q: Queue, rec: Recorder
) -> None:
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "2", "--prefetch", "0")
    pids = sup.wait_children(2)
    ids = enqueue_records(q, 4, seconds=30, retry_seconds=0.1)
    wait_for(lambda: len(rec.started()) == 4, 10, lambda: f"4 jobs should start: {q.counts()}")
    victim = next(iter(pids))
    victims = owned_by(q, ids, victim)
    assert len(victims) == 2
    os.kill(victim, signal.SIGSTOP)
    wait_for(
        lambda: victim not in sup.child_pids(),
        8,
        lambda: f"stopped child {victim} should be killed\n{sup.log()}",
    )
    assert f"child 1 pid {victim}" in sup.log() or f"pid {victim} silent" in sup.log()
    wait_for(lambda: f"reaped child pid {victim} (signal 9), moved 2 jobs" in sup.log(), 5, sup.log)
    for job_id in victims:
        job = q.get(job_id)
        assert job is not None and job.deaths == 1
        assert "no heartbeat" in str(job.fields), job.fields
    wait_for(
        lambda: all(q.get(j).state == "completed" for j in victims),
        10,  # type: ignore[union-attr]
        lambda: f"recovered jobs should complete: {q.counts()}",
    )
    for job_id in set(ids) - victims:
        job = q.get(job_id)
        assert job is not None and job.deaths == 0 and job.state == "active"


def test_killed_master_jobs_are_recovered_by_another_masters_sweep(
    start: Start, q: Queue, rec: Recorder
) -> None:
    first = start(
        "--app",
        "qs_test_app",
        "--children",
        "2",
        "--threads",
        "2",
        "--prefetch",
        "0",
        "--graceful-timeout",
        "0.5",
        "--sweep-interval",
        "0.5",
    )
    first.wait_children(2)
    ids = enqueue_records(q, 4, seconds=30, retry_seconds=0.1)
    wait_for(lambda: len(rec.started()) == 4, 10, lambda: f"4 jobs should start: {q.counts()}")
    orphans = first.child_pids()
    first.signal(signal.SIGKILL)
    # Orphaned children notice their master is gone, drain for --graceful-timeout, exit.
    wait_for(
        lambda: not any(_exists(pid) for pid in orphans),
        10,
        lambda: f"orphaned children should exit: {orphans}\n{first.log()}",
    )
    assert q.counts()["active"] == 4  # nobody reaped them: their master is dead
    second = start(
        "--app", "qs_test_app", "--children", "1", "--threads", "4", "--sweep-interval", "0.5"
    )
    wait_for(
        lambda: all(q.get(j).state == "completed" for j in ids),
        20,  # type: ignore[union-attr]
        lambda: f"swept jobs should complete: {q.counts()}\n{second.log()}",
    )
    # Leases expire a little apart, so the sweep may take them in more than one pass.
    swept = re.findall(r"sweep: moved (\d+) jobs with expired leases", second.log())
    assert sum(map(int, swept)) == 4, second.log()
    assert all(n == 2 for n in rec.runs().values())


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_redis_restart_while_running(
    fresh_redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    server = fresh_redis_server
    sup = Supervisor(
        server.url,
        prefix,
        tmp_path / "qsupervise.log",
        ["--app", "qs_test_app", "--children", "2", "--threads", "2"],
        APPS,
    )
    try:
        sup.wait_children(2)
        pids = sup.child_pids()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        q = Queue("default", redis=client, prefix=prefix)
        rec = Recorder(client, prefix)
        enqueue_records(q, 5, seconds=0.0)
        wait_for(lambda: len(rec.ended()) == 5, 10, lambda: f"first batch: {q.counts()}")
        server.restart()  # all data gone: the jobs below are enqueued on an empty server
        client = redis.Redis.from_url(server.url, decode_responses=True)
        q = Queue("default", redis=client, prefix=prefix)
        rec = Recorder(client, prefix)
        enqueue_records(q, 5, seconds=0.0, start=100)
        wait_for(
            lambda: len(rec.ended()) == 5,
            30,
            lambda: f"second batch after restart: {q.counts()}\n{sup.log()}",
        )
        assert q.counts()["completed"] == 5
        # Nobody was killed for being silent while Redis was away.
        assert sup.child_pids() == pids, sup.log()
        wait_for(
            lambda: any(k.startswith(f"{prefix}:proc:") for k in client.keys(f"{prefix}:*")),
            5,
            "heartbeats should resume",
        )
    finally:
        sup.kill()


def test_poison_pill_fails_after_killing_its_child_three_times(start: Start, q: Queue) -> None:
    sup = start("--app", "qs_test_app", "--children", "1", "--threads", "1")
    sup.wait_children(1)
    job = q.enqueue("suicide", {})
    wait_for(
        lambda: q.get(job.id).state == "failed",
        20,  # type: ignore[union-attr]
        lambda: f"the poison pill should fail: {q.get(job.id)}\n{sup.log()}",
    )
    failed = q.get(job.id)
    assert failed is not None and failed.deaths == 3
    assert "killed its worker 3 times" in (failed.error or ""), failed.fields
    assert sup.log().count("killed by signal 9") == 3
    sup.wait_children(1)  # and the master goes on with a fresh child
