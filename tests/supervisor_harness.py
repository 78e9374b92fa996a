"""Run ``qsupervise`` as a real process group for the subprocess tests.

The supervisor runs in its own session (``start_new_session=True``) and is
killed with ``killpg`` on teardown, children included. Its log goes to a file
(no pipe to fill up). Test task modules come from tests/apps (or a directory a
test writes), put on PYTHONPATH; byte-code caching is off so a rewritten module
is re-read by the next generation of children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis
from waiting import wait_for

from supervisor.queue import Queue

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"

# Short intervals so every lifecycle event happens within a second or two.
FAST_FLAGS = [
    "--heartbeat-interval",
    "0.2",
    "--heartbeat-timeout",
    "2",
    "--lease-timeout",
    "3",
    "--graceful-timeout",
    "10",
    "--log-level",
    "info",
]


class Supervisor:
    """One ``qsupervise`` master process (and, through psutil, its children)."""

    def __init__(
        self, redis_url: str, prefix: str, log_path: Path, args: list[str], app_dir: Path = APPS
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.log_path = log_path
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(app_dir), str(REPO)]),
            PYTHONDONTWRITEBYTECODE="1",
            QS_TEST_REDIS_URL=redis_url,
            QS_TEST_PREFIX=prefix,
        )
        env.pop("REDIS_URL", None)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor.cli",
                "--redis-url",
                redis_url,
                "--prefix",
                prefix,
                *FAST_FLAGS,
                *args,
            ],
            cwd=str(REPO),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    # -- observing ---------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [k for k in kids if _alive(k)]

    def child_pids(self) -> set[int]:
        return {k.pid for k in self.children()}

    def title(self, pid: int | None = None) -> str:
        try:
            return " ".join(psutil.Process(pid or self.pid).cmdline()).strip()
        except psutil.NoSuchProcess:
            return ""

    def wait_children(self, n: int, timeout: float = 15.0) -> set[int]:
        wait_for(
            lambda: len(self.ready_children()) == n,
            timeout,
            lambda: (
                f"{n} ready children expected, have {self.children_titles()}"
                f"\n--- log ---\n{self.log()}"
            ),
        )
        return self.child_pids()

    def ready_children(self) -> list[psutil.Process]:
        """Children past booting (their title shows busy=)."""
        return [k for k in self.children() if "busy=" in self.title(k.pid)]

    def children_titles(self) -> list[str]:
        return [self.title(k.pid) for k in self.children()]

    # -- acting ------------------------------------------------------------
    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"qsupervise still running after {timeout}s\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """Teardown: SIGKILL the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Recorder:
    """Reads what tests/apps/qs_test_app.py tasks wrote."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def _hash(self, name: str) -> dict[str, Any]:
        return dict(self.r.hgetall(f"{self.prefix}:test:{name}"))

    def started(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._hash("start").items()}

    def ended(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._hash("end").items()}

    def pids(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._hash("pid").items()}

    def runs(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._hash("runs").items()}


def enqueue_records(
    q: Queue, count: int, seconds: float, retry_seconds: float = 0.0, start: int = 0
) -> list[str]:
    ids = []
    for n in range(start, start + count):
        job = q.enqueue(
            "record",
            {"n": n, "seconds": seconds, "retry_seconds": retry_seconds},
            job_id=f"job-{n}",
        )
        ids.append(job.id)
    return ids


#: The ``start`` fixture (tests/conftest.py): runs one qsupervise, killed at teardown.
Start = Callable[..., Supervisor]
