"""The Redis floor: the same enqueue -> claim -> ack lifecycle with nothing else.

Enqueue pipelines HSET job + ZADD queued (1,000 jobs per round trip). Each consumer
process claims 100 jobs per Lua call into an active zset with a lease, runs a no-op per
job (JSON decode and a function call), and acks the batch with one Lua call sent in the
same pipeline as the next claim. No retries, no heartbeats, no events: the ceiling on
this machine for a Python client, not a usable queue.

Idle latency (workload 2): the least a Redis queue can do. Enqueue is one RPUSH of the
job's JSON; each consumer process blocks in BLPOP on that list and runs the task as
soon as it pops it (no claim, no lease: a consumer killed there loses the job), then
counts it with one INCR.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import redis
from _common import Adapter, BenchError, main
from _tasks import COUNTER_KEY, URL_ENV, do_latency, do_noop

HERE = os.path.dirname(os.path.abspath(__file__))
QUEUED, ACTIVE, COMPLETED, SEQ, JOB = (
    "floor:queued",
    "floor:active",
    "floor:completed",
    "floor:seq",
    "floor:job:",
)
LIST, LIST_DONE = "floor:list", "floor:list-done"  # the idle-latency floor
CHUNK = 1000
BATCH = 100
LEASE_MS = 30_000


def _noop(params: dict[str, Any]) -> int:
    return 1


class FloorAdapter(Adapter):
    name = "floor"

    def versions(self) -> dict[str, str]:
        return {"floor": "bench", "redis-py": version("redis")}

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        if task != "noop":
            raise BenchError("the floor measures the no-op lifecycle only")
        for start in range(0, len(params), CHUNK):
            batch = params[start : start + CHUNK]
            last = self.r.incrby(SEQ, len(batch))
            with self.r.pipeline(transaction=False) as pipe:
                for seq, p in enumerate(batch, start=last - len(batch) + 1):
                    job_id = f"j{seq}"
                    pipe.hset(JOB + job_id, mapping={"task": task, "params": json.dumps(p)})
                    pipe.zadd(QUEUED, {job_id: seq})
                pipe.execute()

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        self.r.rpush(LIST, json.dumps({"task": task, "params": params}))

    def completed(self) -> int:
        return int(self.r.zcard(COMPLETED)) + int(self.r.get(LIST_DONE) or 0)

    def start_workers(self, mode: str, processes: int) -> None:
        role = {"default": "--consume", "latency": "--consume-list"}.get(mode)
        if role is None:
            raise BenchError(f"the floor has no {mode!r} workload")
        for _ in range(processes):
            self.spawn([sys.executable, os.path.join(HERE, "floor_driver.py"), role])


def consume() -> None:
    r = redis.Redis.from_url(os.environ[URL_ENV])
    with open(os.path.join(HERE, "floor_claim.lua")) as fh:
        claim = r.register_script(fh.read())
    with open(os.path.join(HERE, "floor_ack.lua")) as fh:
        ack = r.register_script(fh.read())
    pipe = r.pipeline(transaction=False)
    done: list[str] = []
    while True:
        if done:
            ack(keys=[ACTIVE, COMPLETED, COUNTER_KEY], args=done, client=pipe)
        claim(keys=[QUEUED, ACTIVE], args=[JOB, BATCH, LEASE_MS], client=pipe)
        reply = pipe.execute()[-1]
        done = []
        if not reply:
            r.blpop(["floor:notify"], timeout=0.05)  # idle: nothing pushes it, just a pause
            continue
        for i in range(0, len(reply), 2):
            _noop(json.loads(reply[i + 1]))
            done.append(reply[i])


def consume_list() -> None:
    """The idle-latency floor: BLPOP a job, run it, count it."""
    r = redis.Redis.from_url(os.environ[URL_ENV])
    tasks = {"latency": lambda p: do_latency(p["i"]), "noop": lambda p: do_noop()}
    while True:
        _, raw = r.blpop([LIST], timeout=0)  # no timeout: never None
        job = json.loads(raw)
        tasks[job["task"]](job["params"])
        r.incr(LIST_DONE)


if __name__ == "__main__":
    if "--consume" in sys.argv:
        consume()
    elif "--consume-list" in sys.argv:
        consume_list()
    else:
        main(FloorAdapter)
