"""Dramatiq actors on the Redis broker (default middleware, no retries for the benchmark)."""

import os

import dramatiq
from _tasks import URL_ENV, do_cpu, do_latency, do_noop, do_sleep
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ[URL_ENV])
dramatiq.set_broker(broker)
OPTS = {"queue_name": "bench", "max_retries": 0}


@dramatiq.actor(actor_name="noop", **OPTS)
def noop() -> int:
    return do_noop()


@dramatiq.actor(actor_name="latency", **OPTS)
def latency(i: int) -> int:
    return do_latency(i)


@dramatiq.actor(actor_name="sleep", **OPTS)
def sleep(seconds: float) -> int:
    return do_sleep(seconds)


@dramatiq.actor(actor_name="cpu", **OPTS)
def cpu(iters: int) -> int:
    return do_cpu(iters)
