"""arq functions and worker settings (async; the counter INCR goes through arq's own pool).

``max_jobs`` comes from BENCH_ARQ_MAX_JOBS (default: arq's 10). Logging is kept at WARNING
like every other system here (arq's CLI logs two INFO lines per job).
"""

import asyncio
import logging
import os
import time

from _tasks import COUNTER_KEY, LATENCY_KEY, URL_ENV, burn
from arq.connections import RedisSettings


async def noop(ctx: dict) -> int:  # type: ignore[type-arg]
    await ctx["redis"].incr(COUNTER_KEY)
    return 1


async def latency(ctx: dict, i: int) -> int:  # type: ignore[type-arg]
    started = time.time()
    await ctx["redis"].rpush(LATENCY_KEY, f"{i}:{started!r}")
    return 1


async def sleep(ctx: dict, seconds: float) -> int:  # type: ignore[type-arg]
    await asyncio.sleep(seconds)
    await ctx["redis"].incr(COUNTER_KEY)
    return 1


async def cpu(ctx: dict, iters: int) -> int:  # type: ignore[type-arg]
    burn(iters)
    await ctx["redis"].incr(COUNTER_KEY)
    return 1


class WorkerSettings:
    functions = [noop, latency, sleep, cpu]
    redis_settings = RedisSettings.from_dsn(os.environ[URL_ENV])
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))


def run() -> None:
    from arq.worker import run_worker

    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    run()
