"""Shared driver machinery: the workloads, timing, process control and memory sampling.

Every driver (``<system>_driver.py``) runs under its own system's interpreter (a private
virtualenv for peers, the project's interpreter for qsupervise and the floor) and imports
this module, which needs only the standard library, ``redis`` and ``psutil``. A driver
defines an ``Adapter`` subclass (how to enqueue, how to start workers, how the system
itself counts completed jobs) and calls :func:`main`. The result is one JSON line on
stdout; everything else goes to stderr.

The task bodies every system runs are in ``_tasks.py`` (``do_*``), so each system executes the
same work: one Redis INCR of the shared counter per job (the verification counter), a
timestamp push for latency jobs, a 10 ms sleep for I/O jobs, a fixed loop for CPU jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import psutil
import redis
from _tasks import COUNTER_KEY, LATENCY_KEY, URL_ENV

POLL_S = 0.005  # completion polling period: 5 ms resolution on runs of seconds
GRACE_S = 3.0  # SIGTERM -> SIGKILL grace when stopping a worker group


# ---------------------------------------------------------------- adapter contract


class BenchError(RuntimeError):
    """A failure of one system's run, reported in its row instead of crashing the run."""


class Adapter:
    """What a driver must say about its system.

    ``start_workers`` returns the Popen objects it started; each must be started through
    :meth:`spawn` so its process group is recorded and always killed.
    """

    name = "?"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url: str = args.redis_url
        self.r = redis.Redis.from_url(self.url)
        self.enqueued = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    # -- to implement
    def versions(self) -> dict[str, str]:
        raise NotImplementedError

    def enqueue_bulk(self, task: str, params: Sequence[dict[str, Any]]) -> None:
        """Enqueue many jobs the fastest way the system offers (bulk API when it has one)."""
        raise NotImplementedError

    def enqueue_one(self, task: str, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def completed(self) -> int:
        """Jobs finished, as the system itself records it."""
        raise NotImplementedError

    def start_workers(self, mode: str, processes: int) -> None:
        """mode: 'default' (throughput, latency, memory), 'io' (20 at once), 'cpu' (1 each)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release client resources (event loops, pools)."""

    # -- shared
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        here = os.path.dirname(os.path.abspath(__file__))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [here, os.path.dirname(here), env.get("PYTHONPATH", "")] if p
        )
        env[URL_ENV] = self.url
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(
        self, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = self.env()
        env.update(extra_env or {})
        log = open(self.args.log, "ab") if self.args.log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=os.path.dirname(os.path.abspath(__file__)),
            start_new_session=True,  # its own process group: killed as a whole
        )
        if log is not subprocess.DEVNULL:
            log.close()
        self.procs.append(proc)
        if self.args.pgid_file:
            with open(self.args.pgid_file, "a") as fh:
                fh.write(f"{proc.pid}\n")
        return proc

    def stop_workers(self) -> None:
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)  # also the group's leftovers (forks, horses)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=GRACE_S)
        self.procs = []

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.poll()
            if code is not None:
                raise BenchError(f"worker process {proc.pid} exited with {code} (see --log)")


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ---------------------------------------------------------------- measurements


def wait_completed(
    a: Adapter, target: int, timeout: float, cap_s: float = 0.0, by_counter: bool = True
) -> dict[str, float]:
    """Poll until the system reports ``target`` completed jobs.

    Returns monotonic times: ``first`` (the counter first moved) and ``done``, the counter
    reading at ``first`` and ``completed`` (= target unless ``cap_s`` seconds ran out
    first: --quick caps slow systems and reports the rate over what they finished).
    Without ``by_counter`` (tasks that do no I/O) the first completion marks ``first``.
    Fails if nothing progresses for ``timeout`` seconds.
    """
    first = None
    first_count = 0
    start = last_progress = time.monotonic()
    last = -1
    while True:
        now = time.monotonic()
        done = a.completed()
        if first is None:
            c = int(a.r.get(COUNTER_KEY) or 0) if by_counter else done
            if c > 0:
                first, first_count = now, c
        capped = cap_s > 0 and now - start > cap_s and first is not None and done > first_count
        if done >= target or capped:
            if first is None:
                first, first_count = now, done
            return {
                "first": first,
                "first_count": first_count,
                "done": now,
                "completed": min(done, target),
            }
        if done != last:
            last, last_progress = done, now
        elif now - last_progress > timeout:
            raise BenchError(f"stalled at {done}/{target} completed for {timeout:.0f}s")
        if int(now * 10) % 10 == 0:
            a.check_alive()
        time.sleep(POLL_S)


def verify_counter(a: Adapter, n: int, partial: bool = False) -> dict[str, Any]:
    # A task INCRs before its system records completion, so the counter is final here
    # (and may run ahead of a capped, partial count).
    c = int(a.r.get(COUNTER_KEY) or 0)
    out: dict[str, Any] = {"counter": c}
    if c < n:
        raise BenchError(f"system says {n} completed but the task counter is {c}")
    if c > n and not partial:
        out["duplicates"] = c - n
    return out


def enqueue_timed(a: Adapter, task: str, params: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    a.enqueue_bulk(task, params)
    elapsed = time.perf_counter() - t0
    a.enqueued += len(params)
    return elapsed


def drain(
    a: Adapter,
    task: str,
    params: list[dict[str, Any]],
    mode: str,
    processes: int,
    verify: bool = True,
) -> dict[str, Any]:
    """Enqueue everything, then start the workers and time until all are completed.
    ``verify``: the task INCRs the verification counter (checked against the count)."""
    n = len(params)
    enq_s = enqueue_timed(a, task, params)
    t_start = time.monotonic()
    a.start_workers(mode, processes)
    t = wait_completed(a, n, a.args.stall_timeout, a.args.max_drain_s, by_counter=verify)
    done = int(t["completed"])
    out: dict[str, Any] = {
        "n": n,
        "enqueue_per_s": n / enq_s,
        "startup_s": t["first"] - t_start,
        "total_per_s": done / (t["done"] - t_start),
    }
    drain_s = t["done"] - t["first"]
    remaining = done - t["first_count"]
    out["drain_per_s"] = (
        remaining / drain_s if drain_s > 0 and remaining > 0 else out["total_per_s"]
    )
    if done < n:
        out["completed_fraction"] = done / n
    if verify:
        out.update(verify_counter(a, done, partial=done < n))
    return out


def warm_up(a: Adapter) -> None:
    """One latency job through started workers: returns once they really consume."""
    a.enqueue_one("latency", {"i": -1})
    a.enqueued += 1
    got = a.r.blpop([LATENCY_KEY], timeout=a.args.stall_timeout)
    if got is None:
        a.check_alive()
        raise BenchError("workers did not run a warm-up job")
    wait_completed(a, a.enqueued, a.args.stall_timeout)


def latency_samples(a: Adapter, samples: int) -> list[float]:
    lat: list[float] = []
    for i in range(samples):
        t0 = time.time()
        a.enqueue_one("latency", {"i": i})
        a.enqueued += 1
        got = a.r.blpop([LATENCY_KEY], timeout=a.args.stall_timeout)
        if got is None:
            a.check_alive()
            raise BenchError(f"latency job {i} never started")
        idx, ts = got[1].decode().split(":", 1)
        if int(idx) != i:
            raise BenchError(f"latency job {idx} started when {i} was expected")
        lat.append(float(ts) - t0)
        wait_completed(a, a.enqueued, a.args.stall_timeout)  # idle again before the next one
        time.sleep(0.01)
    return lat


def memory(a: Adapter) -> dict[str, Any]:
    """RSS and USS of every process of the worker groups, split into master and children.

    A started process with descendants is a master; its descendants are children. Started
    processes without descendants (e.g. N independent arq workers) are all children.
    """
    masters: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []

    def sample(p: psutil.Process) -> dict[str, Any]:
        m = p.memory_full_info()
        return {
            "pid": p.pid,
            "cmd": " ".join(p.cmdline())[:80],
            "rss_mib": m.rss / 2**20,
            "uss_mib": m.uss / 2**20,
        }

    for proc in a.procs:
        try:
            top = psutil.Process(proc.pid)
            kids = top.children(recursive=True)
            if kids:
                masters.append(sample(top))
                children.extend(sample(k) for k in kids)
            else:
                children.append(sample(top))
        except psutil.NoSuchProcess:
            continue
    out: dict[str, Any] = {"processes": masters + children, "n_children": len(children)}
    if masters:
        out["master_rss_mib"] = sum(m["rss_mib"] for m in masters)
        out["master_uss_mib"] = sum(m["uss_mib"] for m in masters)
    if children:
        out["child_rss_mib"] = statistics.mean(c["rss_mib"] for c in children)
        out["child_uss_mib"] = statistics.mean(c["uss_mib"] for c in children)
    out["total_uss_mib"] = sum(p["uss_mib"] for p in masters + children)
    return out


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


# ---------------------------------------------------------------- workloads


def wl_throughput(a: Adapter) -> dict[str, Any]:
    n = a.args.n
    return drain(a, "noop", [{} for _ in range(n)], "default", a.args.processes)


def wl_throughput_bare(a: Adapter) -> dict[str, Any]:
    """No-op jobs whose task does no I/O, counted by the system's own completions: the
    lifecycle's cost alone, to compare with the Redis floor (qsupervise only)."""
    n = a.args.n
    return drain(a, "noop_bare", [{} for _ in range(n)], "default", a.args.processes, verify=False)


def wl_io(a: Adapter) -> dict[str, Any]:
    n = a.args.n
    return drain(a, "sleep", [{"seconds": 0.01} for _ in range(n)], "io", a.args.processes)


def wl_cpu(a: Adapter) -> dict[str, Any]:
    n = a.args.n
    out = drain(a, "cpu", [{"iters": a.args.cpu_iters} for _ in range(n)], "cpu", a.args.processes)
    out["processes"] = a.args.processes
    return out


def latency_metrics(lat: list[float]) -> dict[str, Any]:
    """p50, p99 and max in ms of latency samples in seconds."""
    return {
        "latency_p50_ms": statistics.median(lat) * 1000,
        "latency_p99_ms": quantile(lat, 0.99) * 1000,
        "latency_max_ms": max(lat) * 1000,
        "samples": len(lat),
    }


def wl_latency(a: Adapter) -> dict[str, Any]:
    """Idle latency alone (the floor's: it has no memory workload)."""
    a.start_workers("latency", a.args.processes)
    warm_up(a)
    time.sleep(0.5)
    return latency_metrics(latency_samples(a, a.args.samples))


def wl_live(a: Adapter) -> dict[str, Any]:
    """Idle latency and memory share one worker start: idle memory, latency, N jobs, memory."""
    a.start_workers("default", a.args.processes)
    warm_up(a)
    time.sleep(0.5)
    out: dict[str, Any] = {"memory_idle": memory(a)}
    out.update(latency_metrics(latency_samples(a, a.args.samples)))
    n = a.args.n
    a.r.set(COUNTER_KEY, 0)
    chunk = 1000  # enqueued in slices so the workers run while we produce
    for start in range(0, n, chunk):
        enqueue_timed(a, "noop", [{} for _ in range(min(chunk, n - start))])
    before = a.enqueued - n
    t = wait_completed(a, a.enqueued, a.args.stall_timeout, a.args.max_drain_s)
    done = int(t["completed"]) - before
    out.update(verify_counter(a, done, partial=done < n))
    time.sleep(0.5)
    out["memory_after"] = memory(a)
    out["memory_after_jobs"] = done
    return out


WORKLOADS: dict[str, Callable[[Adapter], dict[str, Any]]] = {
    "throughput": wl_throughput,
    "throughput_bare": wl_throughput_bare,
    "io": wl_io,
    "cpu": wl_cpu,
    "live": wl_live,
    "latency": wl_latency,
}


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", default=os.environ.get(URL_ENV, ""))
    p.add_argument("--workload", choices=[*WORKLOADS, "versions"], required=True)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=10, help="threads per process for 'io'")
    p.add_argument("--default-threads", type=int, default=0, help="0: the system's default")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--cpu-iters", type=int, default=20_000)
    p.add_argument("--stall-timeout", type=float, default=30.0)
    p.add_argument("--max-drain-s", type=float, default=0.0, help="cap a drain (0: none)")
    p.add_argument("--pgid-file", default="")
    p.add_argument("--log", default="", help="append worker stdout/stderr here")
    p.add_argument("--qs-mode", choices=["supervisor", "workers"], default="supervisor")
    return p.parse_args(argv)


def main(adapter_cls: type[Adapter], argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the finally that stops the workers

    signal.signal(signal.SIGTERM, on_term)
    a: Adapter | None = None
    result: dict[str, Any]
    try:
        a = adapter_cls(args)
        if args.workload == "versions":
            result = {"ok": True, "versions": a.versions()}
        else:
            result = {"ok": True, "metrics": WORKLOADS[args.workload](a)}
    except BenchError as exc:
        result = {"ok": False, "error": str(exc)}
    except KeyboardInterrupt:
        result = {"ok": False, "error": "interrupted"}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if a is not None:
            a.stop_workers()
            with contextlib.suppress(Exception):
                a.close()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
