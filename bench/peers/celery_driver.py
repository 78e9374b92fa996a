"""Celery driver: `celery worker -P prefork -c P` (I/O: P workers `-P threads -c 10`).

Completion: with late acks a message leaves the kombu ``unacked`` hash only once its task
has run, so completed = enqueued - (queue length + unacked). No bulk enqueue API: one
``apply_async`` per job over one producer connection.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, main

QUEUE = "bench"
FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]


class CeleryAdapter(Adapter):
    name = "celery"

    def __init__(self, args):  # type: ignore[no-untyped-def]
        super().__init__(args)
        os.environ["BENCH_REDIS_URL"] = self.url
        import celery_app

        self.app = celery_app.app
        self.tasks = {n: getattr(celery_app, n) for n in ("noop", "latency", "sleep", "cpu")}

    def versions(self) -> dict[str, str]:
        return {
            "celery": version("celery"),
            "kombu": version("kombu"),
            "redis-py": version("redis"),
        }

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        t = self.tasks[task]
        with self.app.producer_or_acquire() as producer:
            for p in params:
                t.apply_async(kwargs=p, producer=producer)

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.tasks[task].apply_async(kwargs=params)

    def completed(self) -> int:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.llen(QUEUE)
            pipe.hlen("unacked")
            queued, unacked = pipe.execute()
        return self.enqueued - queued - unacked

    def start_workers(self, mode: str, processes: int) -> None:
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        base = [celery, "-A", "celery_app", "worker", "-Q", QUEUE, *FLAGS]
        if mode == "io":
            for i in range(processes):
                self.spawn(
                    [*base, "-P", "threads", "-c", str(self.args.threads), "-n", f"io{i}@%h"]
                )
        else:
            self.spawn([*base, "-P", "prefork", "-c", str(processes)])

    def close(self) -> None:
        self.app.close()


if __name__ == "__main__":
    main(CeleryAdapter)
