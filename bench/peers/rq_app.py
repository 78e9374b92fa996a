"""RQ tasks: plain functions, enqueued by dotted path."""

from _tasks import do_cpu, do_latency, do_noop, do_sleep


def noop() -> int:
    return do_noop()


def latency(i: int) -> int:
    return do_latency(i)


def sleep(seconds: float) -> int:
    return do_sleep(seconds)


def cpu(iters: int) -> int:
    return do_cpu(iters)
