"""Test mode for your own tests (Kue's ``testMode``): enqueue without Redis.

While ``capture()`` is active, ``Queue.enqueue`` and ``Queue.enqueue_many`` validate
each job exactly as in production (JSON params, size limit, options: the same
``EnqueueError``) but record it in memory instead of writing to Redis::

    from supervisor import Queue, testing

    def test_signup_sends_a_welcome_mail():
        with testing.capture() as jobs:
            signup("ann@example.com")        # calls Queue("email").enqueue("send_welcome", ...)
        [job] = jobs.for_task("send_welcome")
        assert job.params == {"to": "ann@example.com"}
        assert job.options == {"priority": "high"}

With ``run_inline=True`` each job also runs at once, in the calling thread, through
the real task function (``app``: task module paths as for ``Worker``, default
``"tasks"``, or a ``TaskRegistry``). Params and result make the JSON round trip they
make in production, so a result that is not JSON fails the job as it would there::

    with testing.capture(run_inline=True, app="myapp.tasks") as jobs:
        job = Queue("email").enqueue("send_welcome", {"to": "ann@example.com"})
        assert job.result() == {"sent": True}

Each recorded job is a ``CapturedJob``, a ``Job`` that lives in memory: ``state``,
``params``, ``attempts``, ``error``, ``history``, ``result()``, ``logs()`` work as
usual; inside an inline task ``job.progress()``, ``job.log()``, ``job.heartbeat()``
and ``current_job()`` do too. Inline runs are like a worker's, minus time: a failing
task is retried at once up to its retries (no backoff wait), timeouts and delays are
not applied, a job enqueued by a running task runs after it. Unique ids behave as in
the store: enqueueing an id still queued in the capture returns it with
``duplicate`` True and records nothing new.

Only enqueueing is captured; every other ``Queue`` method still talks to Redis.
Enqueues from any thread are captured while a capture is active (threads that did not
inherit its context go to the most recently entered one); a capture entered in a
context (an asyncio task, a thread) receives that context's enqueues.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from supervisor import keys as k
from supervisor import worker as worker_module
from supervisor.job import Job, JobFailed
from supervisor.queue import ENQUEUE_FIELDS, JobArgs, Queue
from supervisor.task import TaskRegistry, load_app

__all__ = ["Capture", "CapturedJob", "capture"]

# The fields of one job in Queue._job_args's list, in enqueue.lua's order.
_ARG_NAMES = (
    "id",
    "task",
    "params",
    "priority",
    "run_at_ms",
    "delay_ms",
    "max_retries",
    "backoff_type",
    "backoff_ms",
    "backoff_max_ms",
    "timeout",
    "resource_id",
    "remove_on_complete",
    "front",
)
assert len(_ARG_NAMES) == ENQUEUE_FIELDS
_STORED = tuple(n for n in _ARG_NAMES if n not in ("run_at_ms", "delay_ms"))
_CURRENT_JOB_ATTRIBUTES = ("job", "handle")  # of supervisor.worker._current


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class CapturedJob(Job):
    """A job recorded by ``capture()``: its fields live in memory, never in Redis.

    ``options`` are the enqueue options as given (``priority``, ``delay``, ...)."""

    options: dict[str, Any] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)

    @property
    def queue_name(self) -> str:
        return self.queue.name

    def refresh(self) -> CapturedJob:
        return self  # the fields are the job: nothing to re-read

    def logs(self) -> list[str]:
        return list(self.log_lines)

    def result(self, timeout: float | None = None) -> Any:
        """The result of an inline run; raises ``JobFailed`` if it failed, and
        ``TimeoutError`` if it never ran (captured with ``run_inline=False``)."""
        if self.state == k.COMPLETED:
            return json.loads(self.fields["result"])
        if self.state in (k.FAILED, k.CANCELLED):
            raise JobFailed(self.id, self.state, self.error or self.state)
        raise TimeoutError(
            f"job {self.id} was captured, not run (state {self.state}): use "
            "capture(run_inline=True) or Capture.run_pending()"
        )

    # -- inside an inline run ------------------------------------------------
    def progress(self, done: float, total: float | None = None, data: Any = None) -> bool:
        self._require_lease()
        self.fields["progress"] = json.dumps({"done": done, "total": total, "data": data})
        return True

    def log(self, line: str) -> None:
        self.log_lines.append(line)
        del self.log_lines[: -self.queue.max_log_lines]

    def heartbeat(self) -> bool:
        self._require_lease()
        return True

    def stall(self, reason: str = "stalled by task") -> bool:
        self._require_lease()
        self._add_history({"at": _now_ms(), "stalled": reason})
        self.fields.update(state=k.STALLED, error=reason)
        self.token = None  # what the task returns now is ignored, as in production
        return True

    def release(self) -> bool:
        self._require_lease()
        self.fields["cancels"] = str(self.cancels + 1)
        self.fields["state"] = k.QUEUED
        self.token = None
        return True

    def _add_history(self, entry: dict[str, Any]) -> None:
        self.fields["history"] = json.dumps([*self.history, entry])


class Capture:
    """The jobs enqueued while it is active (see the module docstring)."""

    def __init__(self, run_inline: bool = False, app: str | TaskRegistry | None = None) -> None:
        self.run_inline = run_inline
        self.app = app
        self.jobs: list[CapturedJob] = []
        self.active = False
        self._registry: TaskRegistry | None = app if isinstance(app, TaskRegistry) else None
        self._lock = threading.RLock()
        self._draining = False
        self._token: Token[Capture | None] | None = None

    # -- the context manager ----------------------------------------------------
    def __enter__(self) -> Capture:
        if self.active:
            raise RuntimeError("this capture is already active")
        if self.run_inline:
            self.registry()  # a task module that cannot load fails here, not mid-test
        _install(self)
        self._token = _current.set(self)
        self.active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.active = False
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        _uninstall(self)

    # -- reading what was captured ------------------------------------------------
    def __iter__(self) -> Iterator[CapturedJob]:
        return iter(list(self.jobs))

    def __len__(self) -> int:
        return len(self.jobs)

    def for_task(self, task: str) -> list[CapturedJob]:
        """The captured jobs of ``task``, in enqueue order."""
        return [job for job in self.jobs if job.task == task]

    def for_queue(self, queue: str) -> list[CapturedJob]:
        """The captured jobs enqueued on the queue named ``queue``."""
        return [job for job in self.jobs if job.queue.name == queue]

    def clear(self) -> None:
        with self._lock:
            self.jobs.clear()

    # -- running ------------------------------------------------------------------
    def registry(self) -> TaskRegistry:
        """The tasks inline runs use: ``app`` (loaded once; default ``"tasks"``)."""
        if self._registry is None:
            assert not isinstance(self.app, TaskRegistry)
            self._registry = load_app(self.app or "tasks")
        return self._registry

    def run_pending(self) -> list[CapturedJob]:
        """Run every captured job still queued or delayed, inline, in enqueue order
        (and those they enqueue); returns the jobs run."""
        return self._drain()

    def _drain(self) -> list[CapturedJob]:
        with self._lock:
            if self._draining:
                return []  # the outer drain picks the new jobs up after this one
            self._draining = True
        ran: list[CapturedJob] = []
        seen: set[int] = set()
        try:
            while True:
                with self._lock:
                    pending = [
                        j
                        for j in self.jobs
                        if j.state in (k.QUEUED, k.DELAYED) and id(j) not in seen
                    ]
                if not pending:
                    return ran
                for job in pending:
                    seen.add(id(job))
                    _run_inline(self.registry(), job)
                    ran.append(job)
        finally:
            with self._lock:
                self._draining = False

    # -- recording (called through Queue.enqueue_many) -------------------------------
    def _enqueue_many(self, queue: Queue, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        validated: list[tuple[JobArgs, dict[str, Any]]] = []
        for spec in jobs:  # all are validated before any is recorded, as in production
            validated.append(queue._validate(spec))
        out: list[Job] = []
        with self._lock:
            for args, options in validated:
                existing = self._pending(queue, args[0])
                if existing is not None:
                    out.append(CapturedJob(queue, existing.id, existing.fields, duplicate=True))
                    continue
                job = CapturedJob(queue, args[0], _fields(args), options=options)
                self.jobs.append(job)
                out.append(job)
        if self.run_inline:
            self._drain()
        return out

    def _pending(self, queue: Queue, job_id: str) -> CapturedJob | None:
        for job in self.jobs:
            if (
                job.id == job_id
                and job.queue.keys == queue.keys
                and job.state in (k.QUEUED, k.DELAYED, k.ACTIVE, k.STALLED)
            ):
                return job
        return None


def capture(run_inline: bool = False, app: str | TaskRegistry | None = None) -> Capture:
    """Record enqueued jobs in memory instead of Redis while the ``with`` block runs;
    with ``run_inline`` also run each at once through its task (``app``: task module
    paths, default ``"tasks"``, or a ``TaskRegistry``). See the module docstring."""
    return Capture(run_inline=run_inline, app=app)


def _fields(args: Sequence[Any]) -> dict[str, str]:
    """A job hash as enqueue.lua would write it, on this process's clock."""
    given = dict(zip(_ARG_NAMES, args, strict=True))
    now = _now_ms()
    delay_ms, run_at = int(given["delay_ms"]), int(given["run_at_ms"])
    if delay_ms > 0:
        run_at = now + delay_ms
    fields = {name: str(given[name]) for name in _STORED}
    fields.update(
        state=k.DELAYED if run_at > now else k.QUEUED,
        attempts="0",
        created_at=str(now),
        run_at=str(run_at),
    )
    return fields


def _run_inline(registry: TaskRegistry, job: CapturedJob) -> None:
    """Run ``job`` as a worker would (same error texts), retrying at once while its
    retries allow. The job ends completed, failed, stalled or queued (released)."""
    spec = registry.get(job.task)
    retries = job.max_retries
    if retries < 0:
        retries = spec.retries if spec is not None else 0
    job.fields["max_retries"] = str(retries)
    while True:
        attempt = job.attempts + 1
        job.fields.update(state=k.ACTIVE, attempts=str(attempt), started_at=str(_now_ms()))
        job.token = f"inline:{attempt}"
        result, error, tb, allow_retry = _execute(spec, job)
        if job.token is None:
            return  # the task stalled or released its job: its outcome is ignored
        job.token = None
        now = str(_now_ms())
        if not error:
            job.fields.update(state=k.COMPLETED, result=result, finished_at=now)
            return
        job._add_history({"attempt": attempt, "at": int(now), "error": error})
        job.fields.update(error=error, traceback=tb)
        if not (allow_retry and attempt <= retries):
            job.fields.update(state=k.FAILED, finished_at=now, failures=str(job.failures + 1))
            return


def _execute(spec: Any, job: CapturedJob) -> tuple[str, str, str, bool]:
    """One run, as ``Worker.execute``: returns (result JSON, error, traceback,
    allow_retry); an empty error means success."""
    if spec is None:
        return "", f"unknown task {job.task!r} (not in the worker's task modules)", "", False
    params = json.loads(job.fields["params"])
    # current_job() reads the worker's thread-local; both names it has used are set.
    current = worker_module._current
    previous = {name: getattr(current, name, None) for name in _CURRENT_JOB_ATTRIBUTES}
    for name in _CURRENT_JOB_ATTRIBUTES:
        setattr(current, name, job)
    try:
        result = spec.func(params, job) if spec.wants_job else spec.func(params)
    except (Exception, SystemExit) as exc:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:1000]
        return "", error, traceback.format_exc(), True
    finally:
        for name, value in previous.items():
            setattr(current, name, value)
    try:
        return json.dumps(result, separators=(",", ":"), allow_nan=False), "", "", True
    except (TypeError, ValueError) as exc:
        return "", f"result of {job.task!r} is not JSON-serialisable: {exc}", "", False


# -- the seam: Queue.enqueue_many, replaced while any capture is active ----------------

_current: ContextVar[Capture | None] = ContextVar("qsupervise_capture", default=None)
_active: list[Capture] = []  # entered and not yet exited, innermost last
_install_lock = threading.Lock()
_saved_enqueue_many: Callable[..., list[Job]] | None = None


def _receiver() -> Capture | None:
    """The capture that receives an enqueue made now: this context's, else the most
    recently entered one (a thread that did not inherit the context)."""
    mine = _current.get()
    if mine is not None and mine.active:
        return mine
    with _install_lock:
        return _active[-1] if _active else None


def _captured_enqueue_many(self: Queue, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
    capture = _receiver()
    if capture is None:  # a capture just ended while this call started
        assert _saved_enqueue_many is not None
        return _saved_enqueue_many(self, jobs)
    return capture._enqueue_many(self, jobs)


_captured_enqueue_many.__doc__ = Queue.enqueue_many.__doc__


def _install(capture: Capture) -> None:
    global _saved_enqueue_many
    with _install_lock:
        if not _active:
            _saved_enqueue_many = Queue.__dict__["enqueue_many"]
            Queue.enqueue_many = _captured_enqueue_many  # type: ignore[method-assign]
        _active.append(capture)


def _uninstall(capture: Capture) -> None:
    with _install_lock:
        if capture in _active:
            _active.remove(capture)
        if not _active and _saved_enqueue_many is not None:
            Queue.enqueue_many = _saved_enqueue_many  # type: ignore[method-assign]
