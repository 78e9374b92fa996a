"""qsupervise: a Redis job queue with a prefork supervisor. No job silently lost.

Public API: ``Queue``, ``task``, ``Job``, ``Worker``, ``current_job``,
``load_app``, ``connect`` and the errors below. See README.md.
"""

from supervisor.connection import ConfigurationError, connect
from supervisor.job import Job, JobError, JobFailed, JobNotFound
from supervisor.queue import PRIORITIES, EnqueueError, Queue
from supervisor.task import AppLoadError, TaskRegistry, TaskSpec, load_app, task
from supervisor.worker import Worker, WorkerSnapshot, current_job

__version__ = "0.1.0"

__all__ = [
    "PRIORITIES",
    "AppLoadError",
    "ConfigurationError",
    "EnqueueError",
    "Job",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "Queue",
    "TaskRegistry",
    "TaskSpec",
    "Worker",
    "WorkerSnapshot",
    "__version__",
    "connect",
    "current_job",
    "load_app",
    "task",
]
