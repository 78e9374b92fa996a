"""Tasks for the crash-safety tests (tests/test_crash_safety.py), run in worker processes.

Every run is counted in ``<prefix>:{<queue>}:test:runs`` (HINCRBY per job id), apart
from the job hashes, so a test can compare the runs that happened with the attempts
the store recorded. Records go through the running job's own Redis client: no
environment needed, and they share the queue's hash tag.
"""

from __future__ import annotations

import os
import time
from typing import Any

from supervisor import Job, task


def runs_key(job: Job) -> str:
    """Key of the HASH job id -> number of runs that started."""
    return f"{job.queue.keys.base}:test:runs"


@task(name="crash.mark", timeout=120, retries=3, backoff="fixed", backoff_s=0.05)
def mark(params: dict[str, Any], job: Job) -> dict[str, Any]:
    """Count this run. The first run then holds for ``hold_s`` seconds (a job long
    enough to be killed in the middle of); re-runs return at once."""
    runs = int(job.queue.redis.hincrby(runs_key(job), job.id, 1))
    if runs == 1:
        time.sleep(float(params.get("hold_s", 0)))
    return {"run": runs, "pid": os.getpid()}
