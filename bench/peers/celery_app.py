"""Celery app: Redis broker, late acks (at-least-once, like qsupervise), no result backend."""

import os

from _tasks import URL_ENV, do_cpu, do_latency, do_noop, do_sleep
from celery import Celery

app = Celery("bench", broker=os.environ[URL_ENV])
app.conf.update(
    task_default_queue="bench",
    task_acks_late=True,  # acked after the task ran: the unacked hash empties on completion
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> int:
    return do_noop()


@app.task(name="latency")
def latency(i: int) -> int:
    return do_latency(i)


@app.task(name="sleep")
def sleep(seconds: float) -> int:
    return do_sleep(seconds)


@app.task(name="cpu")
def cpu(iters: int) -> int:
    return do_cpu(iters)
