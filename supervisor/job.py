"""A job as stored in Redis, and the handle a running task gets.

Wire format: one hash per job, ``<prefix>:{<queue>}:job:<id>``, all values text
(README, "Job wire format"). ``params`` and ``result`` are JSON text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.queue import Queue


class JobError(Exception):
    """Base class of job errors."""


class JobFailed(JobError):
    """The job ended in failed (or cancelled); ``reason`` says why."""

    def __init__(self, job_id: str, state: str, reason: str) -> None:
        super().__init__(f"job {job_id} {state}: {reason}")
        self.job_id = job_id
        self.state = state
        self.reason = reason


class JobNotFound(JobError):
    """No job with that id (never enqueued, deleted, or removed on completion)."""


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(float(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _json(value: str | None) -> Any:
    if value in (None, ""):
        return None
    try:
        return json.loads(value)  # type: ignore[arg-type]
    except ValueError:
        return value


@dataclass
class Job:
    """One job. ``fields`` is the raw hash; properties decode it.

    Inside a task, the job passed as second argument also has ``progress()``,
    ``log()`` and ``heartbeat()``, which act while this worker holds its lease.
    """

    queue: Queue
    id: str
    fields: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    #: True when ``enqueue`` found this id already queued/delayed/active/stalled.
    duplicate: bool = False
    #: Set by the worker running the job: called on heartbeat() and progress(),
    #: the task's proof of life for its ``heartbeat_timeout``.
    on_heartbeat: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    # -- stored fields ------------------------------------------------------
    @property
    def state(self) -> str:
        return self.fields.get("state", "")

    @property
    def task(self) -> str:
        return self.fields.get("task", "")

    @property
    def params(self) -> Any:
        return _json(self.fields.get("params"))

    @property
    def priority(self) -> int:
        return _int(self.fields.get("priority"))

    @property
    def attempts(self) -> int:
        return _int(self.fields.get("attempts"))

    @property
    def max_retries(self) -> int:
        return _int(self.fields.get("max_retries"), -1)

    @property
    def deaths(self) -> int:
        return _int(self.fields.get("deaths"))

    @property
    def failures(self) -> int:
        return _int(self.fields.get("failures"))

    @property
    def cancels(self) -> int:
        return _int(self.fields.get("cancels"))

    @property
    def resource_id(self) -> str | None:
        return self.fields.get("resource_id") or None

    @property
    def error(self) -> str | None:
        return self.fields.get("error") or None

    @property
    def traceback(self) -> str | None:
        return self.fields.get("traceback") or None

    @property
    def history(self) -> list[dict[str, Any]]:
        value = _json(self.fields.get("history"))
        return value if isinstance(value, list) else []

    @property
    def progress_info(self) -> Any:
        return _json(self.fields.get("progress"))

    @property
    def created_at(self) -> float | None:
        ms = _int(self.fields.get("created_at"))
        return ms / 1000 if ms else None

    @property
    def finished_at(self) -> float | None:
        ms = _int(self.fields.get("finished_at"))
        return ms / 1000 if ms else None

    @property
    def run_at(self) -> float | None:
        ms = _int(self.fields.get("run_at"))
        return ms / 1000 if ms else None

    def to_dict(self) -> dict[str, Any]:
        """All fields, decoded: for admin tools and the JSON API."""
        out: dict[str, Any] = dict(self.fields)
        for name in ("params", "result", "progress", "history"):
            if name in out:
                out[name] = _json(out[name])
        out["queue"] = self.queue.name
        return out

    def refresh(self) -> Job:
        """Re-read the job's fields from Redis; raises JobNotFound if it is gone."""
        fields: dict[str, str] = self.queue.redis.hgetall(self.queue.keys.job(self.id))  # type: ignore[assignment]
        if not fields:
            raise JobNotFound(f"job {self.id} not found in queue {self.queue.name}")
        self.fields = fields
        return self

    def logs(self) -> list[str]:
        lines = self.queue.redis.lrange(self.queue.keys.job_log(self.id), 0, -1)
        return [str(line) for line in lines]

    # -- waiting for the outcome -------------------------------------------
    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result (RPC style).

        Raises ``JobFailed`` if it failed or was cancelled, ``TimeoutError`` if it
        has not ended within ``timeout`` seconds, ``JobNotFound`` if there is no
        such job (a job removed on completion cannot be waited for).
        """
        channel = self.queue.keys.job_done_channel(self.id)
        pubsub = self.queue.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel)
        try:
            # Subscribed first, then read: an outcome between the two is not missed.
            outcome = self._stored_outcome()
            deadline = None if timeout is None else time.monotonic() + timeout
            while outcome is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"job {self.id} did not finish within {timeout}s (state {self.state})"
                    )
                message = pubsub.get_message(timeout=min(remaining or 1.0, 1.0))
                if message is not None and message["type"] == "message":
                    outcome = json.loads(message["data"])
                elif message is None:
                    outcome = self._stored_outcome()  # also covers a missed publish
        finally:
            pubsub.close()
        return self._outcome_value(outcome)

    def _stored_outcome(self) -> dict[str, Any] | None:
        self.refresh()
        if self.state == "completed":
            return {"state": "completed", "result": _json(self.fields.get("result"))}
        if self.state in ("failed", "cancelled"):
            return {"state": self.state, "error": self.error or self.state}
        return None

    def _outcome_value(self, outcome: dict[str, Any]) -> Any:
        if outcome.get("state") == "completed":
            self.fields["state"] = "completed"
            return outcome.get("result")
        state = str(outcome.get("state"))
        self.fields["state"] = state
        raise JobFailed(self.id, state, str(outcome.get("error") or state))

    # -- inside a running task ------------------------------------------------
    def _require_lease(self) -> str:
        if self.token is None:
            raise JobError("progress/heartbeat/stall work only inside the task running the job")
        return self.token

    def progress(self, done: float, total: float | None = None, data: Any = None) -> bool:
        """Record progress ``done`` of ``total`` (plus any JSON ``data``) and publish
        a ``progress`` event. False if this worker no longer holds the job.
        Counts as a heartbeat."""
        payload = json.dumps({"done": done, "total": total, "data": data})
        if self.on_heartbeat is not None:
            self.on_heartbeat()
        return bool(
            self.queue.scripts.call(
                "progress",
                self.queue.keys.script_keys,
                [*self.queue.script_prefix_args, self.id, self._require_lease(), payload],
            )
        )

    def log(self, line: str) -> None:
        """Append a log line to the job (kept with the job, capped in length)."""
        key = self.queue.keys.job_log(self.id)
        with self.queue.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, line)
            pipe.ltrim(key, -self.queue.max_log_lines, -1)
            pipe.execute()

    def heartbeat(self) -> bool:
        """Extend this job's lease now; False if the worker no longer holds it.
        Also the proof of life a task with ``heartbeat_timeout`` must give."""
        owner = self._require_lease().rsplit(":", 1)[0]
        if self.on_heartbeat is not None:
            self.on_heartbeat()
        lost = self.queue.extend_leases(owner, [self.id])
        return not lost

    def stall(self, reason: str = "stalled by task") -> bool:
        """Move this running job to the stalled holding area (retry it from there)."""
        return self.queue.stall(self.id, reason, token=self._require_lease())

    def release(self) -> bool:
        """Give this running job back to the front of the queue, counting a cancel
        (Thoonk's cancel). Its result, if the task goes on, is then ignored."""
        return self.queue.release([(self.id, self._require_lease())], mode="cancel") == 1
