"""arq driver: P independent `arq` worker processes (arq has no supervisor of its own).

max_jobs: arq's default 10 (throughput, latency, CPU), 10 per process for I/O.
Completion: a job leaves the ``arq:queue`` zset when it finishes, so completed =
enqueued - ZCARD. Enqueue: ``enqueue_job`` coroutines gathered 500 at a time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, main
from arq.connections import RedisSettings, create_pool

CHUNK = 500


class ArqAdapter(Adapter):
    name = "arq"

    def __init__(self, args):  # type: ignore[no-untyped-def]
        super().__init__(args)
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(self.url)))

    def versions(self) -> dict[str, str]:
        return {"arq": version("arq"), "redis-py": version("redis")}

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        async def go() -> None:
            for start in range(0, len(params), CHUNK):
                await asyncio.gather(
                    *(self.pool.enqueue_job(task, **p) for p in params[start : start + CHUNK])
                )

        self.loop.run_until_complete(go())

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job(task, **params))

    def completed(self) -> int:
        return self.enqueued - int(self.r.zcard("arq:queue"))

    def start_workers(self, mode: str, processes: int) -> None:
        # CPU keeps the default 10: a blocking task runs alone anyway, and max_jobs=1 would
        # let arq start one job per poll_delay (0.5 s).
        max_jobs = self.args.threads if mode == "io" else (self.args.default_threads or 10)
        for _ in range(processes):
            self.spawn([sys.executable, "arq_app.py"], {"BENCH_ARQ_MAX_JOBS": str(max_jobs)})

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


if __name__ == "__main__":
    main(ArqAdapter)
