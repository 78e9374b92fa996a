"""qsupervise driver (the project's own interpreter).

``--qs-mode supervisor``: ``qsupervise --children P --threads T --app tasks_bench``;
``--qs-mode workers``: P independent processes each running ``Worker(...).run()``, for
when the supervisor is broken or to measure its overhead.

Completion: ``Queue.totals()["processed"]`` (``counts()["completed"]`` is trimmed to
``keep_completed``, 10,000 by default, so it cannot count a 20,000-job run).
Bulk enqueue: ``enqueue_many`` in batches of 1,000 (one Lua call each).
Threads: 10 (qsupervise's default) for throughput/latency, 10 for I/O, 1 for CPU.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, BenchError, main

QUEUE = "bench"
CHUNK = 1000
WORKER_CODE = (
    "import sys; from supervisor.task import load_app; from supervisor.worker import Worker; "
    "Worker([sys.argv[1]], concurrency=int(sys.argv[2]), redis_url=sys.argv[3], "
    "registry=load_app('tasks_bench')).run()"
)


class QsAdapter(Adapter):
    name = "qsupervise"

    def __init__(self, args):  # type: ignore[no-untyped-def]
        super().__init__(args)
        try:
            from supervisor.queue import Queue
        except ImportError as exc:
            raise BenchError(f"qsupervise core API not importable yet: {exc}") from None
        self.q = Queue(QUEUE, redis_url=self.url)

    def versions(self) -> dict[str, str]:
        import supervisor

        return {
            "qsupervise": getattr(supervisor, "__version__", version("qsupervise")),
            "redis-py": version("redis"),
        }

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(params), CHUNK):
            self.q.enqueue_many(
                [{"task": task, "params": p} for p in params[start : start + CHUNK]]
            )

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.q.enqueue(task, params)

    def completed(self) -> int:
        return int(self.q.totals()["processed"])

    def start_workers(self, mode: str, processes: int) -> None:
        threads = {"io": self.args.threads, "cpu": 1}.get(mode, self.args.default_threads or 10)
        if self.args.qs_mode == "workers":
            for _ in range(processes):
                self.spawn([sys.executable, "-c", WORKER_CODE, QUEUE, str(threads), self.url])
            return
        exe = shutil.which("qsupervise")
        argv = [exe] if exe else [sys.executable, "-m", "supervisor.cli"]
        self.spawn(
            [
                *argv,
                "--children",
                str(processes),
                "--threads",
                str(threads),
                "--app",
                "tasks_bench",
                "--queues",
                QUEUE,
                "--redis-url",
                self.url,
                "--log-level",
                "warning",
            ]
        )


if __name__ == "__main__":
    main(QsAdapter)
