"""Crash safety with real worker processes: SIGKILL in the middle of a job loses nothing.

Each worker is a separate Python process (``Worker(...).run()``) in its own session,
killed with ``killpg`` on teardown. Its tasks (tests/apps/qs_crash_tasks.py) count every
run in a hash apart from the job hashes, so the runs that really happened can be
compared with what the store recorded: a job runs again only after a recorded death
(``attempts``, ``deaths`` and a ``history`` entry naming the dead owner).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from waiting import wait_for

from supervisor.queue import Queue

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
APP = "qs_crash_tasks"
TASK = "crash.mark"
QUEUE = "crash"

# Runs in the worker process: one Worker, as an application would run it.
WORKER_SCRIPT = """
import json, logging, sys
from supervisor import Worker
cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.WARNING,
                    format="%(asctime)s pid=%(process)d %(threadName)s %(message)s")
worker = Worker([cfg["queue"]], concurrency=cfg["concurrency"], redis_url=cfg["redis_url"],
                prefix=cfg["prefix"], app=cfg["app"], lease_ms=cfg["lease_ms"],
                idle_block_s=0.5)
for queue in worker.queues.values():
    queue.keep_completed = -1  # the tests count every completed job: keep them all
print("worker", worker.owner, flush=True)
worker.run()
"""


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    client_name: str  # the name its Redis connections carry (CLIENT LIST)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process group and wait until the worker is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Start worker processes on queue ``crash``; all are killed on teardown."""
    started: list[WorkerProcess] = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(APPS), str(REPO)]))
    env.pop("REDIS_URL", None)

    def start(concurrency: int = 4, lease_ms: int = 2000) -> WorkerProcess:
        client_name = f"crash-worker-{len(started)}"
        separator = "&" if "?" in redis_url else "?"
        cfg = {
            "queue": QUEUE,
            "concurrency": concurrency,
            "redis_url": f"{redis_url}{separator}client_name={client_name}",
            "prefix": prefix,
            "app": APP,
            "lease_ms": lease_ms,
        }
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, json.dumps(cfg)],
                cwd=str(REPO),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(proc, log_path, client_name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.kill()


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue(QUEUE, redis=redis_client, prefix=prefix, keep_completed=None)


def runs_of(q: Queue) -> dict[str, int]:
    """Job id -> runs that started (written by the task, apart from the store)."""
    raw: dict[str, str] = q.redis.hgetall(f"{q.keys.base}:test:runs")  # type: ignore[assignment]
    return {job_id: int(n) for job_id, n in raw.items()}


def held_by(q: Queue, pid: int) -> set[str]:
    """Ids of the active jobs whose owner is the process ``pid`` (``host/pid/nonce``)."""
    ids: list[str] = q.redis.zrange(q.keys.active, 0, -1)  # type: ignore[assignment]
    with q.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(q.keys.job(job_id), "owner")
        owners = pipe.execute()
    return {
        job_id
        for job_id, owner in zip(ids, owners, strict=True)
        if owner and owner.split("/")[1] == str(pid)
    }


def logs(*workers: WorkerProcess) -> str:
    return "\n".join(f"--- worker pid {w.pid} ---\n{w.log()[-3000:]}" for w in workers)


# -- (a) one job, one SIGKILL -----------------------------------------------------------


def test_job_of_a_sigkilled_worker_is_swept_to_retry_and_completed_by_another(
    start_worker: StartWorker, q: Queue
) -> None:
    job = q.enqueue(TASK, {"hold_s": 60})
    first = start_worker(concurrency=2, lease_ms=1000)
    wait_for(
        lambda: runs_of(q).get(job.id) == 1,
        20,
        lambda: f"the first worker never started the job\n{logs(first)}",
    )
    owner = q.job(job.id).fields["owner"]
    assert owner.split("/")[1] == str(first.pid), f"owner {owner} is not pid {first.pid}"

    first.kill()  # mid-job: the task is inside its 60 s hold

    # Nothing has happened to the job yet: it is still active, held by the dead owner.
    dead = q.job(job.id)
    assert (dead.state, dead.fields["owner"], dead.attempts) == ("active", owner, 1)
    lease_deadline = q.redis.zscore(q.keys.active, job.id)
    assert lease_deadline is not None

    swept = wait_for(q.sweep, 10, "the sweep never recovered the job after its lease expired")
    assert swept == 1
    assert q.sweep() == 0, "a second sweep moved the job again"

    recovered = q.job(job.id)
    assert recovered.state == "delayed"
    assert (recovered.attempts, recovered.deaths) == (1, 1)
    assert "owner" not in recovered.fields and "lease" not in recovered.fields
    assert recovered.error == f"lease expired, owner {owner}"
    [entry] = recovered.history
    assert entry["attempt"] == 1
    assert entry["error"] == f"lease expired, owner {owner}"
    assert entry["at"] >= lease_deadline, "swept before its lease expired"
    assert q.redis.zscore(q.keys.delayed, job.id) is not None
    assert q.redis.zscore(q.keys.active, job.id) is None

    second = start_worker(concurrency=2, lease_ms=1000)
    try:
        result = job.result(timeout=20)
    except TimeoutError:
        pytest.fail(f"the second worker did not complete the job\n{logs(first, second)}")
    assert result == {"run": 2, "pid": second.pid}

    done = q.job(job.id)
    assert done.state == "completed"
    assert (done.attempts, done.deaths) == (2, 1)
    assert [h["error"] for h in done.history] == [f"lease expired, owner {owner}"]
    assert runs_of(q) == {job.id: 2}
    assert q.counts() == {
        "queued": 0, "delayed": 0, "active": 0, "completed": 1,
        "failed": 0, "stalled": 0, "cancelled": 0,
    }  # fmt: skip
    assert q.totals() == {"processed": 1, "failures": 0}


# -- (b) the lifecycle under load, with workers killed midway -------------------------


def kill_midway(q: Queue, victim: WorkerProcess, after: int, workers: list[WorkerProcess]) -> None:
    """SIGKILL ``victim`` once ``after`` jobs are completed, at a moment it holds jobs."""

    def ready() -> bool:
        return q.redis.zcard(q.keys.completed) >= after and bool(held_by(q, victim.pid))

    wait_for(
        ready,
        60,
        lambda: (
            f"waiting for {after} completed jobs and the victim holding jobs; "
            f"counts {q.counts()}\n{logs(*workers)}"
        ),
    )
    victim.kill()
    # A claim the victim sent just before dying can still sit in Redis's input buffer;
    # Redis runs it before it notices the closed socket. Only once the victim's
    # connections are gone is the set of jobs it holds final.
    wait_for(
        lambda: not any(c.get("name") == victim.client_name for c in q.redis.client_list()),
        10,
        f"the killed worker's Redis connections ({victim.client_name}) did not close",
    )


def run_lifecycle(
    q: Queue,
    start_worker: StartWorker,
    *,
    total: int,
    processes: int,
    kill_at: list[float],
    replace_killed: bool,
    timeout: float,
) -> None:
    """Enqueue ``total`` jobs, run them on ``processes`` worker processes, SIGKILL one
    worker each time the completed count passes a fraction in ``kill_at`` (starting a
    replacement if asked), sweep until everything is done, then check the outcome."""
    ids = [f"job-{n}" for n in range(total)]
    for start in range(0, total, 1000):
        q.enqueue_many([{"task": TASK, "job_id": job_id} for job_id in ids[start : start + 1000]])
    workers = [start_worker(concurrency=4, lease_ms=2000) for _ in range(processes)]

    def completed() -> int:
        return int(q.redis.zcard(q.keys.completed))

    killed: dict[str, set[str]] = {}  # "/pid/" of each killed worker -> jobs it held at death
    for i, fraction in enumerate(kill_at):
        victim = workers[i]
        kill_midway(q, victim, int(fraction * total), workers)
        killed[f"/{victim.pid}/"] = held_by(q, victim.pid)  # final: its owner is dead
        if replace_killed:
            workers.append(start_worker(concurrency=4, lease_ms=2000))

    swept = 0

    def all_done() -> bool:
        nonlocal swept
        swept += q.sweep()
        return completed() == total

    wait_for(
        all_done,
        timeout,
        lambda: f"{completed()}/{total} completed; counts {q.counts()}\n{logs(*workers)}",
    )

    # No loss, no duplicate completion.
    assert q.counts() == {
        "queued": 0, "delayed": 0, "active": 0, "completed": total,
        "failed": 0, "stalled": 0, "cancelled": 0,
    }  # fmt: skip
    assert set(q.job_ids("completed")) == set(ids)
    assert q.totals() == {"processed": total, "failures": 0}, "a complete was applied twice"

    # Every job ran; a job ran again only as a recorded retry after its worker died.
    runs = runs_of(q)
    assert set(runs) == set(ids), f"never ran: {sorted(set(ids) - set(runs))[:10]}"
    held_at_death = set().union(*killed.values())
    assert swept >= len(held_at_death) > 0
    recovered: set[str] = set()
    with q.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(q.keys.job(job_id), ["state", "attempts", "deaths", "history"])
        rows = pipe.execute()
    for job_id, (state, attempts_s, deaths_s, history_s) in zip(ids, rows, strict=True):
        attempts, deaths = int(attempts_s), int(deaths_s or 0)
        history: list[dict[str, Any]] = json.loads(history_s) if history_s else []
        assert state == "completed"
        assert runs[job_id] <= attempts, f"{job_id} ran {runs[job_id]}x in {attempts} attempts"
        assert deaths == attempts - 1 == len(history), (job_id, attempts, deaths, history)
        for entry in history:
            assert entry["error"].startswith("lease expired, owner "), (job_id, entry)
            assert any(pid in entry["error"] for pid in killed), (
                f"{job_id} was recovered from a live worker: {entry}"
            )
        if attempts > 1:
            recovered.add(job_id)
    assert recovered == held_at_death, (
        f"recovered {len(recovered)} jobs, the killed workers held {len(held_at_death)}: "
        f"{sorted(recovered ^ held_at_death)[:10]}"
    )


def test_ten_thousand_jobs_four_workers_one_sigkilled(start_worker: StartWorker, q: Queue) -> None:
    run_lifecycle(
        q, start_worker, total=10_000, processes=4, kill_at=[0.3], replace_killed=False,
        timeout=90,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hundred_thousand_jobs_with_repeated_kills_and_replacements(
    start_worker: StartWorker, q: Queue
) -> None:
    run_lifecycle(
        q, start_worker, total=100_000, processes=4, kill_at=[0.2, 0.4, 0.6, 0.8],
        replace_killed=True, timeout=800,
    )  # fmt: skip
