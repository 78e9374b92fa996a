"""huey tasks on RedisHuey (blocking pops, results kept: the completion record)."""

import os

from _tasks import URL_ENV, do_cpu, do_latency, do_noop, do_sleep
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ[URL_ENV])


@huey.task(name="noop")
def noop() -> int:
    return do_noop()


@huey.task(name="latency")
def latency(i: int) -> int:
    return do_latency(i)


@huey.task(name="sleep")
def sleep(seconds: float) -> int:
    return do_sleep(seconds)


@huey.task(name="cpu")
def cpu(iters: int) -> int:
    return do_cpu(iters)
