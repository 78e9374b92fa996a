"""CPU-bound and progress-reporting example tasks."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from supervisor import Job, task


@task(name="cpu", timeout=60)
def cpu(params: dict[str, Any]) -> dict[str, Any]:
    """Burn CPU for about ``ms`` milliseconds (default 5) hashing, and return the digest."""
    deadline = time.perf_counter() + float(params.get("ms", 5)) / 1000
    digest = b"qsupervise"
    rounds = 0
    while time.perf_counter() < deadline:
        digest = hashlib.sha256(digest).digest()
        rounds += 1
    return {"rounds": rounds, "digest": digest.hex()[:16]}


@task(name="progress", timeout=300)
def progress(params: dict[str, Any], job: Job) -> dict[str, int]:
    """Work in ``steps`` steps of ``step_s`` seconds, reporting progress and logging."""
    steps = int(params.get("steps", 10))
    for i in range(1, steps + 1):
        time.sleep(float(params.get("step_s", 0.05)))
        job.progress(i, steps, {"step": i})
        job.log(f"step {i}/{steps} done")
    return {"steps": steps}
