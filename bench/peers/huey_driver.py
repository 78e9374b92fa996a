"""huey driver: `huey_consumer huey_app.huey -k process -w P` (I/O: `-k thread -w P*10`).

huey cannot mix processes and threads, so the I/O run is one process of 20 threads, its
own concurrency knob at 20. Completion: every task returns 1, which huey stores in the
``huey.results.bench`` hash, so completed = HLEN. No bulk enqueue API: one call per job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, main

RESULTS = "huey.results.bench"


class HueyAdapter(Adapter):
    name = "huey"

    def __init__(self, args):  # type: ignore[no-untyped-def]
        super().__init__(args)
        os.environ["BENCH_REDIS_URL"] = self.url
        import huey_app

        self.tasks = {n: getattr(huey_app, n) for n in ("noop", "latency", "sleep", "cpu")}

    def versions(self) -> dict[str, str]:
        return {"huey": version("huey"), "redis-py": version("redis")}

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        t = self.tasks[task]
        for p in params:
            t(**p)

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.tasks[task](**params)

    def completed(self) -> int:
        return int(self.r.hlen(RESULTS))

    def start_workers(self, mode: str, processes: int) -> None:
        consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
        if mode == "io":
            kind, workers = "thread", processes * self.args.threads
        else:
            kind, workers = "process", processes
        self.spawn([consumer, "huey_app.huey", "-k", kind, "-w", str(workers), "-q"])


if __name__ == "__main__":
    main(HueyAdapter)
