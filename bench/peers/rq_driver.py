"""RQ driver: `rq worker-pool -n P` (default Worker: one fork per job), results kept.

Completion: the queue's FinishedJobRegistry. Bulk enqueue: Queue.enqueue_many in one
pipeline per 1,000 jobs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, main
from rq import Queue

QUEUE = "bench"
CHUNK = 1000


class RQAdapter(Adapter):
    name = "rq"

    def __init__(self, args):  # type: ignore[no-untyped-def]
        super().__init__(args)
        self.q = Queue(QUEUE, connection=self.r)

    def versions(self) -> dict[str, str]:
        return {"rq": version("rq"), "redis-py": version("redis")}

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(params), CHUNK):
            datas = [
                Queue.prepare_data(f"rq_app.{task}", kwargs=p)
                for p in params[start : start + CHUNK]
            ]
            with self.r.pipeline() as pipe:
                self.q.enqueue_many(datas, pipeline=pipe)
                pipe.execute()

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.q.enqueue(f"rq_app.{task}", kwargs=params)

    def completed(self) -> int:
        return self.q.finished_job_registry.count

    def start_workers(self, mode: str, processes: int) -> None:
        # RQ has no threads: its concurrency knob is the number of workers.
        n = self.args.processes * self.args.threads if mode == "io" else processes
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        self.spawn([rq, "worker-pool", "-n", str(n), "-u", self.url, "-q", QUEUE])


if __name__ == "__main__":
    main(RQAdapter)
