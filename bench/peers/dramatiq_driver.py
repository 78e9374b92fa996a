"""Dramatiq driver: `dramatiq dramatiq_app -p P -t T` (T: 8, its default; 10 for I/O; 1 for CPU).

Completion: a message's body stays in the ``dramatiq:bench.msgs`` hash until it is acked,
so completed = enqueued - HLEN. No bulk enqueue API: one ``send`` per job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, main

MSGS = "dramatiq:bench.msgs"


class DramatiqAdapter(Adapter):
    name = "dramatiq"

    def __init__(self, args):  # type: ignore[no-untyped-def]
        super().__init__(args)
        os.environ["BENCH_REDIS_URL"] = self.url
        import dramatiq_app

        self.broker = dramatiq_app.broker
        self.actors = {n: getattr(dramatiq_app, n) for n in ("noop", "latency", "sleep", "cpu")}

    def versions(self) -> dict[str, str]:
        return {"dramatiq": version("dramatiq"), "redis-py": version("redis")}

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        actor = self.actors[task]
        for p in params:
            actor.send_with_options(kwargs=p)

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.actors[task].send_with_options(kwargs=params)

    def completed(self) -> int:
        return self.enqueued - int(self.r.hlen(MSGS))

    def start_workers(self, mode: str, processes: int) -> None:
        threads = {"io": self.args.threads, "cpu": 1}.get(mode, self.args.default_threads or 8)
        dramatiq = os.path.join(os.path.dirname(sys.executable), "dramatiq")
        self.spawn(
            [dramatiq, "dramatiq_app", "-p", str(processes), "-t", str(threads), "-Q", "bench"]
        )

    def close(self) -> None:
        self.broker.close()


if __name__ == "__main__":
    main(DramatiqAdapter)
