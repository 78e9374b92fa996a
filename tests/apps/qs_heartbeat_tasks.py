"""Tasks for the heartbeat-timeout tests."""

from __future__ import annotations

import threading
from typing import Any

from supervisor import Job, task

#: Set by a test to let a hung task go (so its thread ends with the test).
release = threading.Event()


@task(name="hb.silent", heartbeat_timeout=0.5, retries=0)
def silent(params: dict[str, Any]) -> str:
    """Hangs without a heartbeat: must be failed as hung."""
    release.wait(30)
    return "late"


@task(name="hb.beating", heartbeat_timeout=0.5, retries=0)
def beating(params: dict[str, Any], job: Job) -> str:
    """Runs longer than its heartbeat timeout but beats often: must complete."""
    for i in range(int(params.get("beats", 8))):
        release.wait(0.15)
        if i % 2:
            job.heartbeat()
        else:
            job.progress(i, None)
    return "alive"
