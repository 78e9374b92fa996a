"""Every Redis key name qsupervise uses is made here, and only here.

All keys of one queue carry the queue's name as a Redis Cluster hash tag,
``<prefix>:{<queue>}:...``, so every Lua script of a queue touches one slot.
Process registry keys (heartbeats of masters and children) are not tied to a
queue and live under ``<prefix>:proc:...``.

The layout is documented, key by key, in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

DEFAULT_PREFIX = "qs"

# Job states, as stored in the job hash field ``state``.
QUEUED = "queued"
DELAYED = "delayed"
ACTIVE = "active"
COMPLETED = "completed"
FAILED = "failed"
STALLED = "stalled"
CANCELLED = "cancelled"
STATES: tuple[str, ...] = (QUEUED, DELAYED, ACTIVE, COMPLETED, FAILED, STALLED, CANCELLED)


def _check_name(kind: str, name: str) -> str:
    if not name or any(c in name for c in "{}\n\r\0 "):
        raise ValueError(f"invalid {kind} name {name!r}: no braces, spaces or control characters")
    return name


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one queue. ``base`` is ``<prefix>:{<queue>}``."""

    prefix: str
    queue: str

    def __post_init__(self) -> None:
        _check_name("queue", self.queue)
        _check_name("prefix", self.prefix)

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}"

    # -- per-state indexes (sorted sets of job ids) --------------------------
    @property
    def queued(self) -> str:
        """ZSET job id -> priority band + sequence; lowest score runs first."""
        return f"{self.base}:queued"

    @property
    def delayed(self) -> str:
        """ZSET job id -> run-at time in ms (Redis clock)."""
        return f"{self.base}:delayed"

    @property
    def active(self) -> str:
        """ZSET job id -> lease deadline in ms (Redis clock)."""
        return f"{self.base}:active"

    @property
    def completed(self) -> str:
        return f"{self.base}:completed"

    @property
    def failed(self) -> str:
        return f"{self.base}:failed"

    @property
    def stalled(self) -> str:
        return f"{self.base}:stalled"

    @property
    def cancelled(self) -> str:
        return f"{self.base}:cancelled"

    @property
    def blocked(self) -> str:
        """ZSET of queued jobs waiting for their resource to be free."""
        return f"{self.base}:blocked"

    @cached_property
    def script_keys(self) -> list[str]:
        """The key vector every Lua transition receives, in the order _lib.lua names.
        Built once (every script call passes it); callers must not change it."""
        return [
            self.queued,
            self.delayed,
            self.active,
            self.completed,
            self.failed,
            self.stalled,
            self.cancelled,
            self.blocked,
            self.notify,
            self.paused,
            self.resources,
            self.stats,
            self.seq,
            self.events,
            self.task_defaults,
        ]

    def state_index(self, state: str) -> str:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; states are {', '.join(STATES)}")
        return f"{self.base}:{state}"

    # -- coordination ---------------------------------------------------------
    @property
    def notify(self) -> str:
        """LIST of wake-up tokens that idle workers block on (BLPOP)."""
        return f"{self.base}:notify"

    @property
    def paused(self) -> str:
        """STRING present while the queue is paused fleet-wide."""
        return f"{self.base}:paused"

    @property
    def resources(self) -> str:
        """HASH resource id -> id of the job holding it."""
        return f"{self.base}:resources"

    @property
    def resource_wait_prefix(self) -> str:
        """Prefix of LIST ``<prefix><resource id>``: jobs waiting for a resource."""
        return f"{self.base}:rwait:"

    def resource_wait(self, resource_id: str) -> str:
        return f"{self.resource_wait_prefix}{resource_id}"

    @property
    def stats(self) -> str:
        """HASH of counters: ``<task>|<state>`` live counts, ``processed``, ``failures``."""
        return f"{self.base}:stats"

    @property
    def task_defaults(self) -> str:
        """HASH task name -> JSON defaults (retries, backoff, timeout), written by workers."""
        return f"{self.base}:tasks"

    @property
    def seq(self) -> str:
        """STRING counter giving FIFO order inside a priority band."""
        return f"{self.base}:seq"

    @property
    def events(self) -> str:
        """Pub/sub channel of the queue's job events (JSON messages)."""
        return f"{self.base}:events"

    # -- per job ------------------------------------------------------------
    @property
    def job_prefix(self) -> str:
        """Prefix of HASH ``<prefix><job id>``; Lua builds job keys from it."""
        return f"{self.base}:job:"

    def job(self, job_id: str) -> str:
        return f"{self.job_prefix}{job_id}"

    def job_log(self, job_id: str) -> str:
        """LIST of log lines of one job."""
        return f"{self.job_prefix}{job_id}:log"

    def job_done_channel(self, job_id: str) -> str:
        """Pub/sub channel on which a job's final outcome is published once."""
        return f"{self.job_prefix}{job_id}:done"


@dataclass(frozen=True)
class ProcessKeys:
    """Registry of live qsupervise processes (masters and children)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def registry(self) -> str:
        """ZSET process id -> last heartbeat time in ms (Redis clock)."""
        return f"{self.prefix}:procs"

    def process(self, process_id: str) -> str:
        """HASH describing one process; expires when heartbeats stop."""
        return f"{self.prefix}:proc:{process_id}"

    @property
    def queues(self) -> str:
        """SET of queue names known to this prefix (for admin tools and sweeps)."""
        return f"{self.prefix}:queues"

    @property
    def sweep_lock(self) -> str:
        """STRING ``SET NX PX`` lock so one master at a time runs the stale sweep."""
        return f"{self.prefix}:sweep-lock"
