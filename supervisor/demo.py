"""``python -m supervisor.demo``: see qsupervise work, end to end.

Uses ``$REDIS_URL`` if set, else starts a private redis-server (never 6379);
runs ``qsupervise`` on the example tasks in tasks/, enqueues a mixed batch and
shows the queue's counts and the supervisor's processes live until the batch is
done, then drains the supervisor with SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

import psutil
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from supervisor.embedded import RedisServer
from supervisor.queue import Queue

QUEUE = "default"


def demo_batch(size: int) -> list[dict[str, Any]]:
    """A mix of the example tasks: mostly quick, some CPU, a few slow, a few failing."""
    jobs: list[dict[str, Any]] = []
    for i in range(size):
        if i % 50 == 0:
            jobs.append({"task": "progress", "params": {"steps": 10, "step_s": 0.2}})
        elif i % 97 == 0:
            jobs.append({"task": "fail", "params": {"message": f"demo failure {i}"}})
        elif i % 5 == 0:
            jobs.append({"task": "cpu", "params": {"ms": 20}})
        elif i % 7 == 0:
            jobs.append({"task": "sleep", "params": {"seconds": 0.5}})
        else:
            jobs.append({"task": "echo", "params": {"i": i}})
    return jobs


def process_table(root_pid: int) -> Table:
    table = Table(title="processes (as `ps` shows them)", expand=True)
    table.add_column("pid", justify="right")
    table.add_column("title")
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children()]
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        try:
            table.add_row(str(proc.pid), " ".join(proc.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return table


def counts_table(queue: Queue, started: float) -> Table:
    counts = queue.counts()
    table = Table(title=f"queue {queue.name!r} after {time.monotonic() - started:.1f}s")
    for state in counts:
        table.add_column(state, justify="right")
    table.add_row(*(str(v) for v in counts.values()))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in the demo batch")
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    console = Console()

    with ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            server = stack.enter_context(RedisServer())
            redis_url = server.url
            console.print(f"started a private redis-server at {redis_url}")
        queue = Queue(QUEUE, redis_url=redis_url, prefix="qsdemo")
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor.cli",
                "--children",
                str(args.children),
                "--threads",
                str(args.threads),
                "--app",
                "tasks",
                "--queues",
                QUEUE,
                "--redis-url",
                redis_url,
                "--prefix",
                "qsdemo",
            ],
            start_new_session=True,
        )
        stack.callback(_stop, supervisor)
        jobs = demo_batch(args.jobs)
        t0 = time.monotonic()
        queue.enqueue_many(jobs)
        console.print(
            f"enqueued {len(jobs)} jobs in {time.monotonic() - t0:.3f}s; "
            f"qsupervise pid {supervisor.pid}"
        )
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4) as live:
            while supervisor.poll() is None:
                counts = queue.counts()
                live.update(Group(counts_table(queue, started), process_table(supervisor.pid)))
                if counts["completed"] + counts["failed"] >= len(jobs):
                    break
                time.sleep(0.25)  # display refresh pace, not synchronisation
        if supervisor.poll() is not None:
            console.print(f"[red]qsupervise exited early with status {supervisor.returncode}")
            return 1
        for job in queue.failed(0, 2):
            console.print(f"failed job {job.id} ({job.task}): {job.error}")
        console.print(f"done: {queue.counts()} — sending SIGTERM to drain the supervisor")
    return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
