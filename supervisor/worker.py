"""``Worker``: runs jobs from one or more queues with M threads, in one process.

Threads, each with one job:
- fetcher: claims batches (claim.lua) up to the free capacity plus a small
  prefetch; when nothing is ready it hands the wait to an idle executor.
- executors (M): run tasks and hand outcomes to the acker. When the queues are
  empty, one idle executor blocks in Redis (BLPOP on the queues' notify lists,
  the claim pipelined behind it) and runs the first job it gets itself: on an
  idle worker no thread hand-off lies between the wake-up and the task.
- acker: sends outcomes in batches, one pipeline of complete.lua / fail.lua
  calls, retrying (never dropping) while Redis is away.
- lease keeper: extends the leases of held jobs and fails jobs past their timeout.

The prefork supervisor runs one Worker in each child; it also runs standalone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue as queue_module
import random
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from supervisor.connection import connect
from supervisor.job import Job
from supervisor.keys import DEFAULT_PREFIX
from supervisor.queue import ClaimedJob, Queue, default_owner
from supervisor.task import TaskRegistry, load_app

log = logging.getLogger("qsupervise.worker")

DEFAULT_LEASE_MS = 30_000
DEFAULT_IDLE_BLOCK_S = 5.0  # longest BLPOP; bounds how late a due delayed job starts
DEFAULT_HARD_TIMEOUT_GRACE_S = 30.0
ACK_BATCH = 500
ACK_LINGER_S = 0.002  # most an ack waits to share a round trip with others
TIMEOUT_CHECK_S = 0.25  # how often job timeouts and heartbeat timeouts are checked
PREFETCH_HORIZON_S = 0.05  # adaptive prefetch holds about this much work per worker
PREFETCH_MAX_FACTOR = 10  # ... and at most this many jobs per thread
DURATION_EWMA_WEIGHT = 0.05
REDIS_RETRY_MAX_S = 5.0
ACK_REFUSED_GIVE_UP_S = 60.0  # acks refused by Redis (OOM, READONLY) this long: recycle
ERRORS_REDIS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

_current = threading.local()


class _WaitForWork:
    """Inbox item: the executor that takes it blocks in Redis until work comes."""


_WAIT_FOR_WORK = _WaitForWork()


# Compact separators and no NaN (not JSON); built once: json.dumps with options
# would build a new encoder for every job.
_RESULT_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def current_job() -> Job | None:
    """The job the calling executor thread is running, or None."""
    handle: Job | None = getattr(_current, "handle", None)
    running = getattr(_current, "running", None)
    if handle is None and running is not None:
        worker, claimed = running
        handle = _current.handle = worker.job_handle(claimed)
    return handle


@dataclass(slots=True)
class _Held:
    """A job this worker holds a lease on: prefetched, running, or awaiting ack."""

    job: ClaimedJob
    started: float | None = None  # monotonic; None while prefetched
    timed_out: bool = False
    last_beat: float = 0.0  # monotonic: start, or the task's last heartbeat/progress


@dataclass(slots=True)
class _Outcome:
    queue: str
    job_id: str
    token: str
    result: str | None = None  # JSON text when completed
    error: str = ""
    traceback: str = ""
    allow_retry: bool = True


@dataclass
class WorkerSnapshot:
    """What a worker is doing, for heartbeats and process titles."""

    threads: int
    busy: int
    done: int
    failed: int
    current: list[tuple[str, str, str, float]] = field(default_factory=list)
    last_task: str | None = None
    last_duration_s: float | None = None
    progressing: bool = True
    finished: bool = False


class _Backoff:
    """Exponential backoff for reconnecting to Redis."""

    def __init__(self, stop: threading.Event) -> None:
        self.delay = 0.05
        self.stop = stop

    def wait(self, what: str, exc: Exception) -> None:
        if isinstance(exc, ERRORS_REDIS):
            log.warning("redis unavailable (%s): %s; retrying in %.2fs", what, exc, self.delay)
        else:
            log.warning("%s failed: %s; retrying in %.2fs", what, exc, self.delay)
        self.stop.wait(self.delay)
        self.delay = min(self.delay * 2, REDIS_RETRY_MAX_S)

    def reset(self) -> None:
        self.delay = 0.05


class Worker:
    """Run jobs from ``queues`` with ``concurrency`` threads.

    ``registry`` is a ``TaskRegistry`` (or give ``app``, module paths for
    ``load_app``). ``owner`` identifies this process in leases (default
    ``host/pid/random``). ``weights`` ({"high": 3, "low": 1}) serves queues in a
    weighted random order; without it, queues are served in strict order.
    ``max_jobs`` makes the worker stop claiming after that many jobs (recycling).
    """

    def __init__(
        self,
        queues: Sequence[str] | str,
        *,
        concurrency: int = 10,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        registry: TaskRegistry | None = None,
        app: str | None = None,
        owner: str | None = None,
        weights: dict[str, int] | None = None,
        lease_ms: int = DEFAULT_LEASE_MS,
        prefetch: int | None = None,
        max_jobs: int | None = None,
        idle_block_s: float = DEFAULT_IDLE_BLOCK_S,
        hard_timeout_grace_s: float = DEFAULT_HARD_TIMEOUT_GRACE_S,
    ) -> None:
        names = [q.strip() for q in queues.split(",")] if isinstance(queues, str) else list(queues)
        if not names:
            raise ValueError("a worker needs at least one queue")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if registry is None:
            registry = load_app(app or "tasks")
        self.registry = registry
        self.concurrency = concurrency
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        self.fixed_prefetch = prefetch
        self._duration_ewma: float | None = None  # seconds, of recent jobs
        self.owner = owner or default_owner()
        self.lease_ms = lease_ms
        self.max_jobs = max_jobs
        self.idle_block_s = idle_block_s
        self.hard_timeout_grace_s = hard_timeout_grace_s
        self.weights = weights
        self.redis = redis_client if redis_client is not None else connect(redis_url)
        # BLPOP needs a connection of its own that may wait without a read timeout.
        self._block_redis = redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=self.redis.connection_pool.connection_class,
                **{
                    **self.redis.connection_pool.connection_kwargs,
                    "socket_timeout": None,
                },
            )
        )
        self.queues = {name: Queue(name, redis=self.redis, prefix=prefix) for name in names}
        self._scripts = self.queues[names[0]].scripts  # runs pipelines of any queue's calls
        self._order = names

        self._lock = threading.Lock()
        self._capacity = threading.Condition(self._lock)
        self._held: dict[tuple[str, str], _Held] = {}
        self._outstanding = 0  # claimed and not yet returned by an executor
        self._fetch_wait: tuple[int, int] | None = None  # (limit, batch) the fetcher waits on
        self._claimed_total = 0
        self._inbox: queue_module.SimpleQueue[ClaimedJob | _WaitForWork | None] = (
            queue_module.SimpleQueue()
        )
        self._waiting_for_work = False  # an executor holds (or will take) the wait
        self._wait_due_at: float | None = None  # monotonic time the next delayed job is due
        self._outbox: queue_module.SimpleQueue[_Outcome | None] = queue_module.SimpleQueue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._executors_done = threading.Event()  # wakes the lease keeper to exit
        self._block_client_id: int | None = None
        self._threads: list[threading.Thread] = []
        self._executors: list[threading.Thread] = []
        self._support: list[threading.Thread] = []
        self._done = 0
        self._failed = 0
        self._last_task: str | None = None
        self._last_duration: float | None = None
        self._running: dict[str, tuple[ClaimedJob, float]] = {}  # thread name -> job

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> Worker:
        """Register task defaults, then start all threads; returns at once."""
        for q in self.queues.values():
            q.register_tasks(self.registry)
        for i in range(self.concurrency):
            t = threading.Thread(target=self._executor_loop, name=f"executor-{i}", daemon=True)
            self._executors.append(t)
        self._support = [
            threading.Thread(target=self._fetcher_loop, name="fetcher", daemon=True),
            threading.Thread(target=self._acker_loop, name="acker", daemon=True),
            threading.Thread(target=self._keeper_loop, name="lease-keeper", daemon=True),
        ]
        self._threads = self._executors + self._support
        for t in self._threads:
            t.start()
        log.info(
            "worker %s started: queues=%s threads=%d",
            self.owner,
            ",".join(self._order),
            self.concurrency,
        )
        return self

    def run(self) -> None:
        """Start and block until stopped; in the main thread, SIGTERM/SIGINT drain."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        self.start()
        while not self._stopping.wait(0.5) and not self.snapshot().finished:
            pass
        self.drain(timeout=30.0)

    def drain(self, timeout: float) -> bool:
        """Stop claiming, give back prefetched jobs, wait up to ``timeout`` s for
        running jobs to finish and be acked. True if all finished in time."""
        self._begin_stop()
        deadline = time.monotonic() + timeout
        with self._capacity:
            while self._outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._capacity.wait(left)
            finished = self._outstanding == 0
        self._finish_threads(deadline)
        return finished

    def stop(self) -> None:
        """Fast stop: stop claiming and give back prefetched jobs; running jobs are
        left to their threads (the supervisor reaps them if the process exits)."""
        self._begin_stop()
        self._finish_threads(time.monotonic() + 1.0)

    def wait_stopped(self, timeout: float) -> bool:
        """True once every thread has ended (after drain/stop or max_jobs)."""
        return self._stopped.wait(timeout)

    def _begin_stop(self) -> None:
        if self._stopping.is_set() and not self._inbox.empty():
            self._give_back_prefetched()
            return
        self._stopping.set()
        self._unblock_fetcher()
        with self._capacity:
            self._capacity.notify_all()
        self._give_back_prefetched()

    def _finish_threads(self, deadline: float) -> None:
        for _ in self._executors:
            self._inbox.put(None)
        for t in self._executors:
            t.join(max(0.0, deadline - time.monotonic()))
        if not self._executors_alive():
            self._executors_done.set()
        self._outbox.put(None)
        for t in self._support:
            t.join(max(0.1, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._threads):
            self._stopped.set()
        self._block_redis.close()

    def _unblock_fetcher(self) -> None:
        client_id = self._block_client_id
        if client_id is None:
            return
        # On failure the fetcher still notices the stop at its next wake-up.
        with contextlib.suppress(redis.exceptions.RedisError):
            self.redis.client_unblock(client_id)

    def _give_back_prefetched(self) -> None:
        by_queue: dict[str, list[tuple[str, str]]] = {}
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue_module.Empty:
                break
            if not isinstance(job, ClaimedJob):
                continue
            by_queue.setdefault(job.queue, []).append((job.id, job.token))
            with self._capacity:
                self._held.pop((job.queue, job.id), None)
                self._outstanding -= 1
                self._capacity.notify_all()
        for name, held in by_queue.items():
            try:
                self.queues[name].release(held, mode="giveback")
            except redis.exceptions.RedisError as exc:
                # Not lost: their leases lapse and the sweep puts them back.
                log.warning("could not give back %d jobs to %s: %s", len(held), name, exc)

    # -- introspection --------------------------------------------------------------
    def snapshot(self) -> WorkerSnapshot:
        now = time.monotonic()
        with self._lock:
            running = list(self._running.values())
            stuck = any(
                h.started is not None
                and h.job.timeout > 0
                and now - h.started > h.job.timeout + self.hard_timeout_grace_s
                for h in self._held.values()
            )
            alive = all(t.is_alive() for t in self._support) or self._stopping.is_set()
            finished = (
                self.max_jobs is not None
                and self._claimed_total >= self.max_jobs
                and self._outstanding == 0
            )
            return WorkerSnapshot(
                threads=self.concurrency,
                busy=len(running),
                done=self._done,
                failed=self._failed,
                current=[(j.queue, j.id, j.task, now - started) for j, started in running],
                last_task=self._last_task,
                last_duration_s=self._last_duration,
                progressing=alive and not stuck,
                finished=finished,
            )

    # -- fetcher ----------------------------------------------------------------------
    def _queue_order(self) -> list[str]:
        if not self.weights:
            return self._order
        names = list(self._order)
        weights = [max(self.weights.get(n, 1), 0) + 1e-9 for n in names]
        ordered: list[str] = []
        while names:
            pick = random.choices(range(len(names)), weights)[0]
            ordered.append(names.pop(pick))
            weights.pop(pick)
        return ordered

    @property
    def prefetch(self) -> int:
        """Jobs claimed beyond the free threads. Fixed when given; else adaptive:
        about PREFETCH_HORIZON_S worth of work at the recent job duration, so quick
        jobs come in large batches and slow ones are not hoarded from other workers."""
        if self.fixed_prefetch is not None:
            return self.fixed_prefetch
        ewma = self._duration_ewma
        if ewma is None:
            return max(1, self.concurrency // 2)
        wanted = self.concurrency * PREFETCH_HORIZON_S / max(ewma, 1e-6)
        return int(min(wanted, PREFETCH_MAX_FACTOR * self.concurrency))

    def _free_slots(self) -> int:
        """Wait until there is room to claim (or stopping); return how many to claim.

        Claims come in batches: while prefetched jobs still wait for a thread, the
        fetcher waits until half the capacity is free, so one round trip brings
        many jobs. With nothing prefetched it claims whatever fits at once, so an
        idle thread never waits for a batch to fill."""
        limit = self.concurrency + self.prefetch
        batch = max(1, limit // 2)
        with self._capacity:
            while not self._stopping.is_set() and not self._room_to_claim(limit, batch):
                self._fetch_wait = (limit, batch)
                self._capacity.wait(1.0)
            self._fetch_wait = None
            return self._claimable(limit)

    def _claimable(self, limit: int) -> int:
        """Called with the lock held: how many jobs fit under ``limit`` (and max_jobs)."""
        want = limit - self._outstanding
        if self.max_jobs is not None:
            want = min(want, self.max_jobs - self._claimed_total)
        return want

    def _room_to_claim(self, limit: int, batch: int) -> bool:
        """Called with the lock held: may the fetcher claim now?"""
        free = limit - self._outstanding
        return free >= batch or (free > 0 and self._inbox.qsize() == 0)

    def fetch_once(self) -> int:
        """One fetcher iteration: claim what fits; if nothing is ready, hand the
        wait for work to an idle executor and wait until it is over. Returns the
        number of jobs this thread claimed."""
        want = self._free_slots()
        if self._stopping.is_set() or want <= 0:
            if want <= 0 and self.max_jobs is not None:
                self._stopping.wait(0.5)  # recycling: nothing more to claim, ever
            return 0
        claimed = 0
        next_due: float | None = None
        for name in self._queue_order():
            if claimed >= want:
                break
            jobs, due = self.queues[name].claim(self.owner, want - claimed, self.lease_ms)
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
            claimed += self._take(jobs)
        if claimed == 0:
            self._hand_over_wait(next_due)
        return claimed

    def _hand_over_wait(self, next_due: float | None) -> None:
        """Post the wait for work to the executors and block until it ends. The
        token queues behind any prefetched jobs: a thread waits in Redis only
        once nothing is left here."""
        with self._capacity:
            # Absolute: the token may wait in the inbox while every thread is busy.
            self._wait_due_at = None if next_due is None else time.monotonic() + next_due
            self._waiting_for_work = True
        self._inbox.put(_WAIT_FOR_WORK)
        with self._capacity:
            while self._waiting_for_work and not self._stopping.is_set():
                self._capacity.wait(1.0)

    def _wait_for_work(self) -> ClaimedJob | None:
        """Run by an idle executor that took the wait token: block in Redis until a
        queue has work or the next delayed job is due; hold what the pipelined claim
        took, queue all but the first for the other threads, and return the first
        for this thread to run. Never raises: the fetcher retries after a failure."""
        try:
            if self._stopping.is_set():
                return None
            with self._capacity:
                want = self._claimable(self.concurrency + self.prefetch)
                due_at = self._wait_due_at
            if want <= 0:
                return None
            due = None if due_at is None else max(due_at - time.monotonic(), 0.0)
            jobs = self._block_for_work(due, want)
            if not jobs:
                return None
            self._hold(jobs)
            for job in jobs[1:]:
                self._inbox.put(job)
            return jobs[0]
        except ERRORS_REDIS as exc:
            self._block_client_id = None
            log.warning("redis unavailable (wait for work): %s", exc)
            self._stopping.wait(0.05)  # the fetcher's claim then backs off, if still down
            return None
        except Exception as exc:  # a bug here must not end an executor thread
            log.exception("wait for work failed: %s", exc)
            return None
        finally:
            with self._capacity:
                self._waiting_for_work = False
                self._capacity.notify_all()  # the fetcher claims again

    def _hold(self, jobs: Sequence[ClaimedJob]) -> None:
        with self._capacity:
            for job in jobs:
                self._held[(job.queue, job.id)] = _Held(job)
            self._outstanding += len(jobs)
            self._claimed_total += len(jobs)

    def _take(self, jobs: Sequence[ClaimedJob]) -> int:
        """Hold freshly claimed jobs and hand them to the executors."""
        if jobs:
            self._hold(jobs)
            for job in jobs:
                self._inbox.put(job)
            # Let a woken executor have the GIL now rather than when this thread next
            # blocks on I/O (up to the 5 ms switch interval later).
            time.sleep(0)
        return len(jobs)

    def _block_for_work(self, next_due: float | None, want: int) -> list[ClaimedJob]:
        """Block in Redis until a queue has work (or the next delayed job is due).

        With one queue, the claim is pipelined behind the BLPOP: Redis runs it the
        moment the BLPOP returns, so a wake-up and its claim cost one round trip.
        Returns what that claim took."""
        timeout = self.idle_block_s if next_due is None else min(next_due, self.idle_block_s)
        if timeout < 0.01:
            return []
        if self._block_client_id is None:
            self._block_client_id = int(self._block_redis.client_id())
        keys = [self.queues[name].keys.notify for name in self._order]
        if len(self._order) > 1:
            popped = self._block_redis.blpop(keys, timeout=timeout)
            jobs: list[ClaimedJob] = []
        else:
            queue = self.queues[self._order[0]]
            with self._block_redis.pipeline(transaction=False) as pipe:
                pipe.blpop(keys, timeout=timeout)
                queue.claim_on(pipe, self.owner, want, self.lease_ms)
                popped, reply = queue.scripts.execute(pipe)
            jobs, _ = queue.parse_claim(reply)
        if self._stopping.is_set():
            if popped:  # the wake-up was meant for a worker that will claim: pass it on
                self.redis.rpush(popped[0], popped[1])
            if jobs:
                self.queues[jobs[0].queue].release([(j.id, j.token) for j in jobs])
            return []
        return jobs

    def _fetcher_loop(self) -> None:
        backoff = _Backoff(self._stopping)
        while not self._stopping.is_set():
            try:
                self.fetch_once()
                backoff.reset()
            except ERRORS_REDIS as exc:
                self._block_client_id = None
                backoff.wait("fetch", exc)
            except Exception as exc:  # a bug here must not silently stop claiming
                log.exception("claim failed: %s", exc)
                backoff.wait("fetch", exc)

    # -- executors --------------------------------------------------------------------
    def _executor_loop(self) -> None:
        name = threading.current_thread().name
        while True:
            item = self._inbox.get()
            if item is None:
                return
            if isinstance(item, _WaitForWork):
                job = self._wait_for_work()
                if job is None:
                    continue
            else:
                job = item
            started = time.monotonic()
            with self._lock:
                held = self._held.get((job.queue, job.id))
                if held is not None:
                    held.started = held.last_beat = started
                self._running[name] = (job, started)
            outcome = self.execute(job)
            duration = time.monotonic() - started
            self._outbox.put(outcome)
            with self._capacity:
                self._running.pop(name, None)
                self._outstanding -= 1
                if outcome.result is not None:
                    self._done += 1
                else:
                    self._failed += 1
                self._last_task = job.task
                self._last_duration = duration
                ewma = self._duration_ewma
                self._duration_ewma = (
                    duration if ewma is None else ewma + DURATION_EWMA_WEIGHT * (duration - ewma)
                )
                # Wake only whoever can act on it (every wake-up is a context switch):
                # the fetcher once a batch fits, a drain once nothing is left.
                waiting = self._fetch_wait
                if self._outstanding == 0 or (
                    waiting is not None and self._room_to_claim(*waiting)
                ):
                    self._capacity.notify_all()

    def job_handle(self, job: ClaimedJob) -> Job:
        """The ``Job`` a task sees: what the claim returned, plus its lease token."""
        fields = {
            "id": job.id,
            "task": job.task,
            "params": job.params,
            "state": "active",
            "attempts": str(job.attempts),
            "max_retries": str(job.max_retries),
            "deaths": str(job.deaths),
            "resource_id": job.resource_id,
        }
        return Job(
            self.queues[job.queue],
            job.id,
            fields,
            token=job.token,
            on_heartbeat=lambda: self._task_heartbeat(job),
        )

    def _task_heartbeat(self, job: ClaimedJob) -> None:
        held = self._held.get((job.queue, job.id))
        if held is not None:
            held.last_beat = time.monotonic()

    def execute(self, job: ClaimedJob) -> _Outcome:
        """Run one claimed job's task; never raises. Returns its outcome."""
        outcome = _Outcome(job.queue, job.id, job.token)
        spec = self.registry.get(job.task)
        if spec is None:
            outcome.error = f"unknown task {job.task!r} (not in the worker's task modules)"
            outcome.allow_retry = False
            return outcome
        try:
            params = json.loads(job.params) if job.params else {}
        except ValueError as exc:
            outcome.error = f"malformed job: params are not valid JSON ({exc})"
            outcome.allow_retry = False
            return outcome
        # The Job handle is built only for tasks that take it (or call current_job()).
        handle = self.job_handle(job) if spec.wants_job else None
        _current.running, _current.handle = (self, job), handle
        try:
            result = spec.func(params, handle) if spec.wants_job else spec.func(params)
        except BaseException as exc:  # SystemExit too (argparse, sys.exit): keep the thread
            outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:1000]
            outcome.traceback = traceback.format_exc()
            return outcome
        finally:
            _current.running = _current.handle = None
        try:
            outcome.result = _RESULT_ENCODER.encode(result)
        except (TypeError, ValueError) as exc:
            outcome.error = f"result of {job.task!r} is not JSON-serialisable: {exc}"
            outcome.allow_retry = False
        return outcome

    # -- acker ------------------------------------------------------------------------
    def _acker_loop(self) -> None:
        backoff = _Backoff(threading.Event())  # acks are retried even while stopping
        closing = False
        while not closing:
            first = self._outbox.get()
            if first is None:
                closing = True
                batch: list[_Outcome] = []
            else:
                batch = [first]
            # While more jobs are running, linger a moment so one round trip acks
            # many (an idle worker's lone job is acked at once). The acker sleeps
            # through the linger and then takes what came: woken once per batch,
            # not once per outcome.
            if not closing and self._outstanding > len(batch):
                time.sleep(ACK_LINGER_S)
            while len(batch) < ACK_BATCH and not closing:
                try:
                    item = self._outbox.get_nowait()
                except queue_module.Empty:
                    break
                if item is None:
                    closing = True
                else:
                    batch.append(item)
            refused_since: float | None = None
            while batch:
                try:
                    self.ack(batch)
                    backoff.reset()
                    break
                except ERRORS_REDIS as exc:
                    backoff.wait("ack", exc)
                except redis.exceptions.ResponseError as exc:
                    # Refused, e.g. OOM or READONLY while a failover settles: retried.
                    # Refused for too long it is not passing: the acker ends, the
                    # heartbeats stop and the supervisor recycles this process (its
                    # jobs are reaped, nothing lost).
                    now = time.monotonic()
                    refused_since = refused_since or now
                    if now - refused_since > ACK_REFUSED_GIVE_UP_S:
                        log.error("Redis refuses acks for %.0f s: %s", now - refused_since, exc)
                        raise
                    backoff.wait("ack", exc)

    def ack(self, outcomes: Sequence[_Outcome]) -> None:
        """Send outcomes to Redis in one pipeline round trip, then forget the jobs."""
        by_queue: dict[str, tuple[list[Any], list[Any]]] = {}
        for o in outcomes:
            done, failed = by_queue.setdefault(o.queue, ([], []))
            if o.result is not None:
                done.append((o.job_id, o.token, o.result))
            else:
                failed.append((o.job_id, o.token, o.error, o.traceback, o.allow_retry))
        with self.redis.pipeline(transaction=False) as pipe:
            for name, (done, failed) in by_queue.items():
                if done:
                    self.queues[name].complete(done, client=pipe)
                if failed:
                    self.queues[name].fail(failed, client=pipe)
            self._scripts.execute(pipe)
        with self._lock:
            for o in outcomes:
                self._held.pop((o.queue, o.job_id), None)

    # -- lease keeper -------------------------------------------------------------------
    def _keeper_loop(self) -> None:
        # Timeouts are checked often (no Redis involved); leases renewed at a third
        # of their length, so a renewal can fail twice before a lease lapses.
        renew_every = max(self.lease_ms / 3000, 0.05)
        next_renewal = time.monotonic() + renew_every
        backoff = _Backoff(self._stopping)
        while not self._executors_done.wait(min(TIMEOUT_CHECK_S, renew_every)):
            now = time.monotonic()
            renew = now >= next_renewal
            try:
                self.keep_leases(now, renew=renew)
                backoff.reset()
                if renew:
                    next_renewal = now + renew_every
            except (*ERRORS_REDIS, redis.exceptions.ResponseError) as exc:
                backoff.wait("lease", exc)

    def _executors_alive(self) -> bool:
        return any(t.is_alive() for t in self._executors)

    def keep_leases(self, now: float | None = None, *, renew: bool = True) -> None:
        """Fail running jobs past their timeout or heartbeat timeout; with ``renew``,
        extend the leases of the others (one iteration)."""
        now = time.monotonic() if now is None else now
        by_queue: dict[str, list[str]] = {}
        with self._lock:
            for (name, job_id), held in self._held.items():
                if held.timed_out:
                    continue
                job = held.job
                started = held.started
                if started is not None and job.timeout > 0 and now - started > job.timeout:
                    held.timed_out = True
                    self._outbox.put(
                        _Outcome(
                            job.queue, job.id, job.token, error=f"timed out after {job.timeout:g} s"
                        )
                    )
                    continue
                spec = self.registry.get(job.task)
                silence = now - held.last_beat
                if (
                    started is not None
                    and spec
                    and spec.heartbeat_timeout
                    and (silence > spec.heartbeat_timeout)
                ):
                    held.timed_out = True
                    error = (
                        f"no heartbeat for {silence:.1f} s "
                        f"(heartbeat_timeout {spec.heartbeat_timeout:g} s): hung"
                    )
                    self._outbox.put(_Outcome(job.queue, job.id, job.token, error=error))
                    continue
                by_queue.setdefault(name, []).append(job_id)
        if not by_queue or not renew:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for name, ids in by_queue.items():
                self.queues[name].extend_leases(self.owner, ids, self.lease_ms, client=pipe)
            replies = self._scripts.execute(pipe)
        with self._lock:
            for name, lost in zip(by_queue, replies, strict=True):
                for job_id in lost:
                    # A job acked between the snapshot above and the renewal is not
                    # lost: it is gone from the held set by now.
                    if (name, job_id) in self._held:
                        log.warning(
                            "lost the lease of job %s in %s (swept or reaped)", job_id, name
                        )


@contextmanager
def running_worker(*args: Any, drain_timeout: float = 10.0, **kwargs: Any) -> Iterator[Worker]:
    """``with running_worker(["q"], app="tasks") as w:`` starts a worker and drains
    it on exit: handy in scripts and tests."""
    worker = Worker(*args, **kwargs).start()
    try:
        yield worker
    finally:
        worker.drain(drain_timeout)
