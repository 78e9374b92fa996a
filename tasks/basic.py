"""Small example tasks: echo, sleep, fail, crash."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from supervisor import task


@task(name="echo", timeout=30, retries=2)
def echo(params: dict[str, Any]) -> dict[str, Any]:
    """Return the params unchanged."""
    return params


@task(name="sleep", timeout=120)
def sleep(params: dict[str, Any]) -> dict[str, float]:
    """Sleep ``seconds`` (default 1) and report how long it slept."""
    seconds = float(params.get("seconds", 1.0))
    time.sleep(seconds)
    return {"slept": seconds}


@task(name="fail", retries=0)
def fail(params: dict[str, Any]) -> None:
    """Always raise, with ``message``."""
    raise RuntimeError(params.get("message", "this task always fails"))


@task(name="crash", retries=1, backoff="fixed", backoff_s=0.1)
def crash(params: dict[str, Any]) -> None:
    """Kill the process running it (``signal``, default SIGKILL): a worker crash."""
    os.kill(os.getpid(), int(params.get("signal", signal.SIGKILL)))
