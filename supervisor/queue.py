"""``Queue``: enqueue jobs and administer one queue. Every state change is one
Lua transition (supervisor/lua); reads are plain commands without side effects.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from supervisor import keys as k
from supervisor.connection import connect
from supervisor.job import Job, JobNotFound
from supervisor.scripts import Scripts
from supervisor.task import BACKOFF_TYPES, TaskSpec

PRIORITIES: dict[str, int] = {"low": -10, "normal": 0, "medium": 5, "high": 10, "critical": 15}
PRIORITY_RANGE = (-100, 100)
DEFAULT_MAX_JOB_BYTES = 512 * 1024
DEFAULT_KEEP_COMPLETED = 10_000
DEFAULT_COMPLETED_TTL_S = 24 * 3600.0
DEFAULT_MAX_DEATHS = 3
MAX_LOG_LINES = 1000
ENQUEUE_CHUNK = 1000  # jobs per enqueue.lua call
WIRE_FIELDS = 5  # per job in enqueue.lua's arguments
_BAD_ID_CHARS = '{}\n\r\0 "'
_BAD_NAME_CHARS = '"\\\n\r\0'
# Built once: json.dumps with options builds a new encoder on every call.
_PARAMS_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class JobArgs(NamedTuple):
    """One job's validated enqueue options (``Queue._job_args``)."""

    id: str
    task: str
    params: str  # JSON text
    priority: int
    run_at_ms: int  # absolute; 0 = none
    delay_ms: int  # from Redis's now; 0 = none
    max_retries: str  # "-1" = the task's default
    backoff_type: str  # "" = the task's default
    backoff_ms: int
    backoff_max_ms: int
    timeout: Any  # seconds; "-1" = the task's default
    resource_id: str
    remove_on_complete: str  # "1" / "0"
    front: str  # "1" / "0"


ENQUEUE_FIELDS = len(JobArgs._fields)


class EnqueueError(ValueError):
    """A job was refused at enqueue (bad params, too large, bad option); one line."""


class ClaimedJob(NamedTuple):
    """A job as a worker claimed it (claim.lua's reply). A tuple: made per job on
    the hot path, where a frozen dataclass costs several times more."""

    queue: str
    id: str
    task: str
    params: str
    attempts: int
    max_retries: int
    timeout: float
    resource_id: str
    token: str
    deaths: int


def _ms(seconds: float | None) -> int:
    return round(seconds * 1000) if seconds else 0


class Queue:
    """One named queue on Redis.

    ``Queue("email", redis_url="redis://127.0.0.1:6400/0")``, or ``redis=`` an
    existing client (it must decode responses), or neither to use ``$REDIS_URL``.
    ``prefix`` namespaces every key (Kue's prefix). ``max_job_bytes`` bounds the
    JSON params of one job. ``keep_completed`` / ``completed_ttl`` bound how many
    completed jobs are kept and for how long (seconds; None = no bound).
    """

    def __init__(
        self,
        name: str = "default",
        *,
        redis: redis.Redis | None = None,
        redis_url: str | None = None,
        prefix: str = k.DEFAULT_PREFIX,
        max_job_bytes: int = DEFAULT_MAX_JOB_BYTES,
        keep_completed: int | None = DEFAULT_KEEP_COMPLETED,
        completed_ttl: float | None = DEFAULT_COMPLETED_TTL_S,
    ) -> None:
        self.name = name
        self.keys = k.QueueKeys(prefix, name)
        self.process_keys = k.ProcessKeys(prefix)
        self.redis = redis if redis is not None else connect(redis_url)
        self.scripts = Scripts(self.redis)
        self.max_job_bytes = max_job_bytes
        self.keep_completed = -1 if keep_completed is None else keep_completed
        self.completed_ttl_ms = -1 if completed_ttl is None else _ms(completed_ttl)
        self.max_log_lines = MAX_LOG_LINES
        self.script_prefix_args = [self.keys.job_prefix, self.keys.resource_wait_prefix]
        self._registered = False
        self._valid_tasks: set[str] = set()  # task names already checked

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, prefix={self.keys.prefix!r})"

    def _run(self, name: str, args: Sequence[Any], client: Any = None) -> Any:
        return self.scripts.call(
            name, self.keys.script_keys, [*self.script_prefix_args, *args], client=client
        )

    def _register_queue(self) -> None:
        if not self._registered:
            self.redis.sadd(self.process_keys.queues, self.name)
            self._registered = True

    # -- producing --------------------------------------------------------------
    def _job_args(
        self,
        task: str,
        params: Any = None,
        *,
        job_id: str | None = None,
        resource_id: str | None = None,
        priority: int | str = 0,
        delay: float | dt.timedelta | None = None,
        run_at: float | dt.datetime | None = None,
        retries: int | None = None,
        backoff: str | None = None,
        backoff_s: float | None = None,
        backoff_max_s: float | None = None,
        timeout: float | None = None,
        remove_on_complete: bool = False,
        front: bool = False,
    ) -> JobArgs:
        """Validate one job's options; raises EnqueueError with one readable line."""
        if not (isinstance(task, str) and task in self._valid_tasks):
            if not isinstance(task, str) or not task or any(c in task for c in _BAD_NAME_CHARS):
                raise EnqueueError(f"task name {task!r} must be non-empty text without quotes")
            self._valid_tasks.add(task)
        if job_id is None:
            job_id = os.urandom(16).hex()
        elif not isinstance(job_id, str) or not job_id or any(c in job_id for c in _BAD_ID_CHARS):
            raise EnqueueError(f"job id {job_id!r} must be text without braces, quotes or spaces")
        if resource_id is not None and (not isinstance(resource_id, str) or not resource_id):
            raise EnqueueError("resource_id must be a non-empty string")
        try:
            encoded = _PARAMS_ENCODER.encode({} if params is None else params)
        except (TypeError, ValueError) as exc:
            raise EnqueueError(f"params of {task!r} are not JSON-serialisable: {exc}") from None
        if len(encoded) > self.max_job_bytes:
            raise EnqueueError(
                f"params of {task!r} are {len(encoded)} bytes, over the limit of "
                f"{self.max_job_bytes} bytes"
            )
        prio = PRIORITIES.get(priority) if isinstance(priority, str) else priority
        if (
            prio is None
            or not isinstance(prio, int)
            or isinstance(prio, bool)
            or not (PRIORITY_RANGE[0] <= prio <= PRIORITY_RANGE[1])
        ):
            raise EnqueueError(
                f"priority {priority!r} must be one of {', '.join(PRIORITIES)} or an int "
                f"in {PRIORITY_RANGE[0]}..{PRIORITY_RANGE[1]}"
            )
        if delay is not None and run_at is not None:
            raise EnqueueError("give delay or run_at, not both")
        delay_s = delay.total_seconds() if isinstance(delay, dt.timedelta) else delay
        run_at_s = run_at.timestamp() if isinstance(run_at, dt.datetime) else run_at
        if backoff is not None and backoff not in BACKOFF_TYPES:
            raise EnqueueError(f"backoff must be one of {BACKOFF_TYPES}, not {backoff!r}")
        if retries is not None and retries < 0:
            raise EnqueueError("retries must be >= 0")
        retries_field = "-1" if retries is None else str(retries)
        if retries is None and backoff is None and backoff_s is None and backoff_max_s is None:
            backoff_fields: tuple[str, int, int] = ("", 0, 0)  # the task's, fixed at claim
        else:
            backoff_fields = (
                backoff or "exponential",
                _ms(1.0 if backoff_s is None else backoff_s),
                _ms(3600.0 if backoff_max_s is None else backoff_max_s),
            )
        return JobArgs(
            job_id,
            task,
            encoded,
            prio,
            # floored, so a run_at of "now" is never ahead of Redis's (floored) clock
            math.floor(run_at_s * 1000) if run_at_s else 0,
            _ms(delay_s),
            retries_field,
            *backoff_fields,
            "-1" if timeout is None else timeout,
            resource_id or "",
            "1" if remove_on_complete else "0",
            "1" if front else "0",
        )

    def _validate(self, spec: Mapping[str, Any]) -> tuple[JobArgs, dict[str, Any]]:
        """One item of ``enqueue_many``: its validated arguments, and the options it
        gave besides task and params. Raises EnqueueError."""
        options = dict(spec)
        try:
            task = options.pop("task")
        except KeyError:
            raise EnqueueError("each job needs a 'task'") from None
        params = options.pop("params", None)
        try:
            return self._job_args(task, params, **options), options
        except TypeError as exc:
            raise EnqueueError(f"bad enqueue option: {exc}") from None

    @staticmethod
    def _wire(args: JobArgs) -> tuple[str, str, str, int, str]:
        """enqueue.lua's 5 fields of one job: options only when some differ from
        their defaults (most jobs), so the common case sends and stores little."""
        options: dict[str, Any] = {}
        if args.run_at_ms:
            options["run_at_ms"] = args.run_at_ms
        if args.delay_ms:
            options["delay_ms"] = args.delay_ms
        if args.max_retries != "-1":
            options["max_retries"] = int(args.max_retries)
        if args.backoff_type:
            options["backoff_type"] = args.backoff_type
            options["backoff_ms"] = args.backoff_ms
            options["backoff_max_ms"] = args.backoff_max_ms
        if args.timeout != "-1":
            options["timeout"] = args.timeout
        if args.resource_id:
            options["resource_id"] = args.resource_id
        if args.remove_on_complete == "1":
            options["remove_on_complete"] = 1
        if args.front == "1":
            options["front"] = 1
        wire_options = _PARAMS_ENCODER.encode(options) if options else ""
        return args.id, args.task, args.params, args.priority, wire_options

    def enqueue(self, task: str, params: Any = None, **options: Any) -> Job:
        """Enqueue one job of ``task`` with JSON ``params``; returns the ``Job``.

        Options: ``job_id`` (unique while queued/delayed/active/stalled: enqueueing
        it again returns the existing job, with ``job.duplicate`` True),
        ``resource_id`` (one running job per resource), ``priority`` (low, normal,
        medium, high, critical or -100..100), ``delay`` (seconds or timedelta) or
        ``run_at`` (epoch seconds or datetime), ``retries``, ``backoff``
        ("fixed"/"exponential"), ``backoff_s``, ``backoff_max_s``, ``timeout``
        (seconds), ``remove_on_complete``, ``front`` (to the front of its priority).
        Unset retries/backoff/timeout take the task's defaults when first claimed.
        """
        return self.enqueue_many([{"task": task, "params": params, **options}])[0]

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Enqueue many jobs in one round trip (one Lua call). Each item is a mapping
        with ``task``, ``params`` and any option of ``enqueue``. All are validated
        before any is sent: one bad job refuses the batch."""
        args: list[Any] = []
        ids: list[str] = []
        tasks: list[str] = []
        for spec in jobs:
            job_args, _ = self._validate(spec)
            ids.append(job_args.id)
            tasks.append(job_args.task)
            args.extend(self._wire(job_args))
        if not ids:
            return []
        self._register_queue()
        # One round trip; one Lua call per chunk so no single call blocks Redis long.
        chunk = ENQUEUE_CHUNK * WIRE_FIELDS
        if len(ids) <= ENQUEUE_CHUNK:
            replies = self._run("enqueue", [len(ids), *args])
        else:
            with self.redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(args), chunk):
                    part = args[start : start + chunk]
                    self._run("enqueue", [len(part) // WIRE_FIELDS, *part], client=pipe)
                replies = [r for chunk in self.scripts.execute(pipe) for r in chunk]
        out = []
        for job_id, task, reply in zip(ids, tasks, replies, strict=True):
            fields = {"id": job_id, "task": task}
            new = reply in ("new", "new-delayed")
            fields["state"] = {"new": k.QUEUED, "new-delayed": k.DELAYED}.get(reply, reply)
            out.append(Job(self, job_id, fields, duplicate=not new))
        return out

    # -- reading --------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        """The job with all its fields, or None."""
        fields: dict[str, str] = self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        return Job(self, job_id, fields) if fields else None

    def job(self, job_id: str) -> Job:
        """Like ``get`` but raises ``JobNotFound``."""
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found in queue {self.name}")
        return job

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state (queued includes jobs waiting for a resource)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for state in k.STATES:
                pipe.zcard(self.keys.state_index(state))
            pipe.zcard(self.keys.blocked)
            replies = pipe.execute()
        counts = dict(zip(k.STATES, (int(r) for r in replies), strict=False))
        counts[k.QUEUED] += int(replies[-1])
        return counts

    def counts_by_task(self, batch: int = 1000) -> dict[str, dict[str, int]]:
        """Counts per task name and state: ``{"echo": {"queued": 3, ...}}``.

        Read from the state indexes and job hashes in pipelined batches (not kept
        as counters: that would cost every transition on the hot path). O(jobs)."""
        out: dict[str, dict[str, int]] = {}
        for state in k.STATES:
            ids = self.job_ids(state)
            for i in range(0, len(ids), batch):
                with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in ids[i : i + batch]:
                        pipe.hget(self.keys.job(job_id), "task")
                    tasks = pipe.execute()
                for task in tasks:
                    if task is not None:
                        row = out.setdefault(str(task), dict.fromkeys(k.STATES, 0))
                        row[state] += 1
        return out

    def totals(self) -> dict[str, int]:
        """Counters since the queue began: ``processed`` and ``failures``."""
        stats = self.redis.hmget(self.keys.stats, ["processed", "failures"])
        return {"processed": int(stats[0] or 0), "failures": int(stats[1] or 0)}

    def job_ids(self, state: str, start: int = 0, end: int = -1) -> list[str]:
        """Ids in ``state``, oldest (or first to run) first (Kue's rangeByState)."""
        ids = [str(i) for i in self.redis.zrange(self.keys.state_index(state), start, end)]
        if state == k.QUEUED and end == -1:
            ids += [str(i) for i in self.redis.zrange(self.keys.blocked, 0, -1)]
        return ids

    def jobs(self, state: str, start: int = 0, end: int = -1, task: str | None = None) -> list[Job]:
        """Jobs in ``state`` with their fields, optionally only of one ``task``
        (Kue's rangeByType)."""
        ids = self.job_ids(state, start, end)
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            rows = pipe.execute()
        return [
            Job(self, job_id, fields)
            for job_id, fields in zip(ids, rows, strict=True)
            if fields and (task is None or fields.get("task") == task)
        ]

    def failed(self, start: int = 0, end: int = -1) -> list[Job]:
        """Failed jobs, oldest failure first, with reason, traceback and history."""
        return self.jobs(k.FAILED, start, end)

    # -- administering ---------------------------------------------------------
    def retry_failed(self, job_ids: Sequence[str] | None = None, limit: int = 10_000) -> int:
        """Move failed jobs (these ids, else up to ``limit`` oldest) back to queued."""
        return len(self._run("retry", [k.FAILED, limit, *(job_ids or [])]))

    def retry_stalled(self, job_ids: Sequence[str] | None = None, limit: int = 10_000) -> int:
        """Move stalled jobs back to queued."""
        return len(self._run("retry", [k.STALLED, limit, *(job_ids or [])]))

    def retry(self, job_id: str) -> bool:
        """Queue a failed, stalled or cancelled job again."""
        job = self.get(job_id)
        if job is None or job.state not in (k.FAILED, k.STALLED, k.CANCELLED):
            return False
        return bool(self._run("retry", [job.state, 1, job_id]))

    def delete_failed(self, job_ids: Sequence[str] | None = None, limit: int = 10_000) -> int:
        """Delete failed jobs (these ids, else up to ``limit`` oldest)."""
        return len(self._run("delete", [k.FAILED, limit, *(job_ids or [])]))

    def delete(self, job_id: str) -> bool:
        """Delete a job that is not active (retracts a queued or delayed job)."""
        return bool(self._run("delete", ["", 1, job_id]))

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or delayed job (it ends in cancelled). False otherwise."""
        return self._run("cancel", [job_id]) in (k.QUEUED, k.DELAYED)

    def stall(self, job_id: str, reason: str = "stalled by operator", token: str = "") -> bool:
        """Move an active job to the stalled holding area."""
        return bool(self._run("stall", [job_id, token, reason]))

    def pause(self) -> None:
        """Stop every worker of the fleet from claiming from this queue."""
        self.redis.set(self.keys.paused, "1")

    def resume(self) -> None:
        """Undo ``pause`` and wake idle workers (one atomic MULTI)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.paused)
            pipe.rpush(self.keys.notify, "1")
            pipe.execute()

    def is_paused(self) -> bool:
        return bool(self.redis.exists(self.keys.paused))

    # -- recovery (run by masters and sweepers) -----------------------------------
    def sweep(self, limit: int = 1000, max_deaths: int = DEFAULT_MAX_DEATHS) -> int:
        """Recover active jobs whose lease expired (owner dead or hung): retry or
        fail them with the reason. Safe to run from many processes at once."""
        return len(self._run("sweep", [max_deaths, limit]))

    def reap_owner(
        self,
        owner: str,
        reason: str,
        max_deaths: int = DEFAULT_MAX_DEATHS,
        *,
        count_death: bool = True,
    ) -> int:
        """Recover the active jobs of one dead owner (a child process) with ``reason``.
        ``count_death=False`` for a shutdown the supervisor ordered: the jobs are
        retried (if attempts remain) without counting towards the poison-pill limit."""
        return len(self._run("reap", [owner, reason, max_deaths, "1" if count_death else "0"]))

    # -- worker side -----------------------------------------------------------
    def register_tasks(self, specs: Iterable[TaskSpec]) -> None:
        """Publish task defaults so jobs enqueued without them get them at claim."""
        mapping = {spec.name: spec.defaults_json() for spec in specs}
        if mapping:
            self.redis.hset(self.keys.task_defaults, mapping=mapping)  # type: ignore[arg-type]
        self._register_queue()

    def claim(
        self, owner: str, count: int, lease_ms: int, promote_limit: int = 1000
    ) -> tuple[list[ClaimedJob], float | None]:
        """Claim up to ``count`` jobs for ``owner`` with a lease. Returns the jobs and
        seconds until the next delayed job is due (None: none delayed)."""
        reply = self._run("claim", [owner, count, lease_ms, promote_limit])
        return self.parse_claim(reply)

    def claim_on(
        self,
        pipe: redis.client.Pipeline,
        owner: str,
        count: int,
        lease_ms: int,
        promote_limit: int = 1000,
    ) -> None:
        """Queue a claim on ``pipe``; read its reply with ``parse_claim``."""
        self._run("claim", [owner, count, lease_ms, promote_limit], client=pipe)

    def parse_claim(self, reply: list[Any]) -> tuple[list[ClaimedJob], float | None]:
        due_ms = int(reply[0])
        jobs = [
            ClaimedJob(
                self.name,
                reply[i],
                reply[i + 1],
                reply[i + 2],
                int(reply[i + 3]),
                int(reply[i + 4]),
                float(reply[i + 5] or 0),
                reply[i + 6],
                reply[i + 7],
                int(reply[i + 8]),
            )
            for i in range(1, len(reply), 9)
        ]
        return jobs, (None if due_ms < 0 else due_ms / 1000)

    def complete(self, outcomes: Sequence[tuple[str, str, str]], client: Any = None) -> Any:
        """Ack finished jobs: (id, lease token, result JSON) each."""
        flat = [x for outcome in outcomes for x in outcome]
        return self._run(
            "complete",
            [self.keep_completed, self.completed_ttl_ms, len(outcomes), *flat],
            client=client,
        )

    def fail(self, outcomes: Sequence[tuple[str, str, str, str, bool]], client: Any = None) -> Any:
        """Record failures: (id, lease token, error, traceback, allow_retry) each."""
        flat: list[Any] = []
        for job_id, token, error, tb, allow_retry in outcomes:
            flat += [job_id, token, error, tb, "1" if allow_retry else "0"]
        return self._run("fail", [len(outcomes), *flat], client=client)

    def extend_leases(
        self, owner: str, job_ids: Sequence[str], lease_ms: int = 30_000, client: Any = None
    ) -> Any:
        """Extend leases of jobs ``owner`` holds; returns the ids it no longer holds."""
        return self._run("extend", [owner, lease_ms, *job_ids], client=client)

    def release(self, held: Sequence[tuple[str, str]], mode: str = "giveback") -> int:
        """Give active jobs (id, lease token) back to the front of the queue."""
        if mode not in ("giveback", "cancel"):
            raise ValueError("mode is 'giveback' or 'cancel'")
        flat = [x for pair in held for x in pair]
        return int(self._run("release", [mode, *flat])) if flat else 0


def default_owner(nonce: str | None = None) -> str:
    """An owner id for this process: ``host/pid/nonce``."""
    import socket

    return f"{socket.gethostname()}/{os.getpid()}/{nonce or os.urandom(4).hex()}"
