"""qsupervise tasks for the benchmark: the same bodies as every peer's (peers/_tasks.py).

Loaded by workers with ``--app tasks_bench`` (bench/ and bench/peers/ on PYTHONPATH).
"""

from typing import Any

from _tasks import do_cpu, do_latency, do_noop, do_sleep

from supervisor import task


@task(name="noop", retries=0)
def noop(params: Any) -> int:
    return do_noop()


@task(name="noop_bare", retries=0)
def noop_bare(params: Any) -> int:
    """No I/O at all: the 'qsupervise (bare)' row, compared with the Redis floor."""
    return 1


@task(name="latency", retries=0)
def latency(params: dict[str, Any]) -> int:
    return do_latency(params["i"])


@task(name="sleep", retries=0)
def sleep(params: dict[str, Any]) -> int:
    return do_sleep(params["seconds"])


@task(name="cpu", retries=0)
def cpu(params: dict[str, Any]) -> int:
    return do_cpu(params["iters"])
