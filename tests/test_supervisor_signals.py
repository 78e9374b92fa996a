"""Signals to a live master under load: TERM drains, INT stops fast, HUP reloads code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import psutil
from supervisor_harness import APPS, Recorder, Start, enqueue_records
from waiting import wait_for

from supervisor.queue import Queue


def result_version(q: Queue, job_id: str) -> int | None:
    job = q.get(job_id)
    if job is None or job.state != "completed":
        return None
    return int(json.loads(job.fields["result"])["version"])


def test_term_drains_running_jobs_and_leaves_queued_ones(
    start: Start, q: Queue, rec: Recorder
) -> None:
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "2", "--prefetch", "1")
    sup.wait_children(2)
    ids = enqueue_records(q, 10, seconds=2.0)
    wait_for(lambda: len(rec.started()) == 4, 10, lambda: f"4 jobs should start: {q.counts()}")
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(12) == 0, sup.log()
    started = rec.started()
    assert len(started) == 4, "nothing new may be claimed after TERM"
    assert set(rec.ended()) == set(started), "every in-flight job finishes"
    for n in started:
        job = q.get(f"job-{n}")
        assert job is not None and job.state == "completed"
    counts = q.counts()
    assert counts["queued"] == 6 and counts["active"] == 0 and counts["failed"] == 0, counts
    assert {j.id for j in q.jobs("queued")} == set(ids) - {f"job-{n}" for n in started}
    assert "TERM: draining 2 children" in sup.log()


def test_int_stops_fast_and_puts_running_jobs_back(start: Start, q: Queue, rec: Recorder) -> None:
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "2", "--prefetch", "0")
    sup.wait_children(2)
    ids = enqueue_records(q, 4, seconds=60, retry_seconds=0.1)
    wait_for(lambda: len(rec.started()) == 4, 10, lambda: f"4 jobs should start: {q.counts()}")
    sup.signal(signal.SIGINT)
    assert sup.wait_exit(8) == 0, sup.log()
    counts = q.counts()
    assert counts["active"] == 0 and counts["failed"] == 0, counts
    assert counts["delayed"] + counts["queued"] == 4, counts
    for job_id in ids:
        job = q.get(job_id)
        assert job is not None and "fast shutdown" in str(job.fields), job.fields


def test_hup_reloads_changed_code_without_losing_or_failing_jobs(
    start: Start, q: Queue, rec: Recorder, tmp_path: Path
) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    module = apps / "qs_test_app.py"
    shutil.copy(APPS / "qs_test_app.py", module)
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "2", app_dir=apps)
    old = sup.wait_children(2)

    enqueued: list[str] = []
    stop = threading.Event()

    def produce() -> None:  # continuous load, one job every 20 ms
        n = 0
        while not stop.wait(0.02):
            enqueued.extend(enqueue_records(q, 1, seconds=0.05, start=n))
            n += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_for(lambda: q.counts()["completed"] >= 20, 10, lambda: f"load: {q.counts()}")
        module.write_text(module.read_text().replace("VERSION = 1", "VERSION = 2"))
        sup.signal(signal.SIGHUP)
        wait_for(
            lambda: any(result_version(q, j) == 2 for j in list(enqueued)[-50:]),
            15,
            lambda: f"new code should answer: {q.counts()}\n{sup.log()}",
        )
        wait_for(
            lambda: not (old & sup.child_pids()),
            15,
            lambda: f"old generation should exit: {sup.children_titles()}\n{sup.log()}",
        )
        cut = len(enqueued)  # jobs enqueued from now on can only meet new code
        wait_for(
            lambda: sum(result_version(q, j) == 2 for j in list(enqueued)) >= 20,
            10,
            lambda: f"more load on the new code: {q.counts()}",
        )
    finally:
        stop.set()
        producer.join()
    wait_for(
        lambda: q.counts()["completed"] == len(enqueued),
        15,
        lambda: f"all {len(enqueued)} should complete: {q.counts()}",
    )
    assert q.counts()["failed"] == 0
    assert all(n == 1 for n in rec.runs().values()), "no job ran twice"
    versions = [result_version(q, j) for j in enqueued]
    assert all(v == 2 for v in versions[cut:]), "after the reload only new code runs"
    assert "reload: generation 2 ready" in sup.log()
    wait_for(lambda: "gen=2 children=2/2" in sup.title(), 5, sup.title)


def _masters_in_group(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if (
                os.getpgid(p.pid) == pgid
                and " ".join(p.cmdline()).startswith("qsupervise master")
                and p.status() != psutil.STATUS_ZOMBIE
            ):
                out.append(p)
        except (psutil.Error, ProcessLookupError):
            continue
    return out


def test_usr2_starts_a_new_master_and_the_old_one_drains(
    start: Start, q: Queue, rec: Recorder
) -> None:
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "2", "--prefetch", "0")
    old_children = sup.wait_children(2)
    ids = enqueue_records(q, 4, seconds=1.5)
    wait_for(lambda: len(rec.started()) == 4, 10, lambda: f"4 jobs should start: {q.counts()}")
    sup.signal(signal.SIGUSR2)
    assert sup.wait_exit(15) == 0, sup.log()  # the old master drained and left
    new = wait_for(
        lambda: [p for p in _masters_in_group(sup.pid) if p.pid != sup.pid],
        5,
        "a new master should be running",
    )
    new_children = {c.pid for c in new[0].children()}
    assert len(new_children) == 2 and not (new_children & old_children)
    wait_for(
        lambda: all(q.get(j).state == "completed" for j in ids),
        10,  # type: ignore[union-attr]
        lambda: f"in-flight jobs finish: {q.counts()}",
    )
    more = enqueue_records(q, 4, seconds=0.0, start=100)
    wait_for(
        lambda: all(q.get(j).state == "completed" for j in more),
        10,  # type: ignore[union-attr]
        lambda: f"the new master serves: {q.counts()}",
    )
    assert q.counts()["failed"] == 0
    assert all(n == 1 for n in rec.runs().values())
    log = sup.log()
    assert "USR2: upgrading: started new master pid" in log
    assert "is ready; draining this one" in log
