"""The child process: what runs after the master forks.

A child imports the task code (only here, never in the master), runs one
:class:`supervisor.worker.Worker` with M threads, and a heartbeat thread that
writes the child's process hash only while the worker's executors make
progress. Its main thread waits for signals and checks, once a second, whether
it should recycle itself (job count, memory) or has lost its master.

Exit codes are a protocol read by the master:

=====  ====================  ==============================================
code   name                  meaning
=====  ====================  ==============================================
0      EXIT_OK               drained or recycled cleanly; replace me
3      EXIT_BOOT_ERROR       unexpected error while starting; back off
4      EXIT_APP_LOAD_ERROR   the task code does not import; stop, do not fork-loop
5      EXIT_DRAIN_TIMEOUT    jobs still running at the graceful timeout
=====  ====================  ==============================================

Signals of a child (sent by the master; a terminal's Ctrl-C reaches it too):
TERM drains (stop claiming, give back prefetched jobs, finish running jobs up
to --graceful-timeout); INT/QUIT stop fast (give back prefetched jobs, exit
now; the master reaps the running ones); a second signal while draining stops
fast; USR1 reopens log files; HUP, TTIN, TTOU, USR2, WINCH are the master's
and are ignored here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import psutil
import redis

from .config import LOGGER_NAME, Config, reopen_log_files
from .heartbeat import ProcessRegistry
from .proctitle import booting_title, child_title, set_title

if TYPE_CHECKING:
    from .worker import Worker

EXIT_OK = 0
EXIT_BOOT_ERROR = 3
EXIT_APP_LOAD_ERROR = 4
EXIT_DRAIN_TIMEOUT = 5

DRAIN_SIGNALS = (signal.SIGTERM,)
FAST_STOP_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGWINCH)
REDIS_RETRY_MAX_S = 5.0
REDIS_SOCKET_TIMEOUT_S = 5.0  # a heartbeat never hangs longer than this on a dead link
TICK_S = 1.0  # how often the main thread refreshes the title and checks recycling

log = logging.getLogger(LOGGER_NAME)


def owner_id(pid: int, nonce: str, host: str | None = None) -> str:
    """The id a child claims jobs under: ``<host>/<pid>/<nonce>``."""
    return f"{host or socket.gethostname()}/{pid}/{nonce}"


@dataclass(frozen=True)
class ChildSpec:
    """What the master hands a child at fork time."""

    index: int
    generation: int
    nonce: str
    master_pid: int
    config: Config
    error_fd: int  # write end of the master's pipe for the one-line app load error


def child_main(spec: ChildSpec) -> NoReturn:
    """Entry point in the forked child, called with signals blocked. Never returns."""
    code = EXIT_BOOT_ERROR
    try:
        code = Child(spec).run()
    except BaseException:
        log.exception("child %d crashed", os.getpid())
    finally:
        for handler in log.handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(code)


class Child:
    """One child: worker + heartbeat thread; ``tick(now)`` is one main-loop pass."""

    def __init__(
        self,
        spec: ChildSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        rss_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.spec = spec
        self.config = spec.config
        self.clock = clock
        self.pid = os.getpid()
        self.owner = owner_id(self.pid, spec.nonce)
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.worker: Worker | None = None
        self.state = ""  # "", "draining", "stopping"
        self.started_ms = int(time.time() * 1000)
        self._drain_thread: threading.Thread | None = None
        self._drain_ok = True
        self._stop_beats = threading.Event()
        self._beat_failing = False
        self._not_progressing = False
        self._process = psutil.Process()
        self._rss_bytes = rss_bytes or (lambda: int(self._process.memory_info().rss))

    # -- signals: the handler only records ------------------------------------
    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signals.put_nowait(signum)

    def install_signals(self) -> None:
        for sig in (*DRAIN_SIGNALS, *FAST_STOP_SIGNALS, signal.SIGUSR1):
            signal.signal(sig, self._record)
        for sig in IGNORED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    # -- life ------------------------------------------------------------------
    def run(self) -> int:
        random.seed()
        self.install_signals()
        cfg = self.config
        set_title(booting_title(self.spec.index, self.spec.generation, cfg.app))
        try:
            from .task import load_app

            registry = load_app(cfg.app)
        except Exception as exc:  # AppLoadError, or anything the import raised
            self._report_app_error(exc)
            return EXIT_APP_LOAD_ERROR

        from .worker import Worker

        self.worker = Worker(
            cfg.queue_names,
            concurrency=cfg.threads,
            redis_url=cfg.redis_url,
            prefix=cfg.prefix,
            registry=registry,
            owner=self.owner,
            weights=cfg.weights,
            lease_ms=int(cfg.lease_timeout * 1000),
            max_jobs=cfg.max_jobs_per_child or None,
            prefetch=cfg.prefetch,
        )
        if not self._start_worker():
            return EXIT_OK
        beats = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beats.start()
        log.debug("child %d (pid %d) serving %s", self.spec.index, self.pid, cfg.queues)
        try:
            while True:
                code = self.tick(self.clock())
                if code is not None:
                    return code
                with contextlib.suppress(queue.Empty):
                    self.signals.put_nowait(self.signals.get(timeout=TICK_S))
        finally:
            self._stop_beats.set()

    def _start_worker(self) -> bool:
        """Start the worker, retrying with backoff while Redis is unreachable; False if
        told to stop meanwhile."""
        assert self.worker is not None
        delay = 0.1
        while True:
            try:
                self.worker.start()
                return True
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if delay == 0.1:
                    log.warning("child %d (pid %d): Redis unreachable at start (%s); retrying",
                                self.spec.index, self.pid, exc)
            try:
                signum = self.signals.get(timeout=delay)
            except queue.Empty:
                delay = min(delay * 2, REDIS_RETRY_MAX_S)
                continue
            if signum != signal.SIGUSR1:
                return False

    def tick(self, now: float) -> int | None:
        """Handle recorded signals, check master, recycling and drain; refresh the title."""
        assert self.worker is not None
        while True:
            try:
                signum = self.signals.get_nowait()
            except queue.Empty:
                break
            if signum in FAST_STOP_SIGNALS or (signum in DRAIN_SIGNALS and self.state):
                return self.stop_fast(signal.Signals(signum).name)
            if signum in DRAIN_SIGNALS:
                self.start_drain("SIGTERM")
            elif signum == signal.SIGUSR1:
                reopen_log_files()
        if not self.state and os.getppid() != self.spec.master_pid:
            self.start_drain("master is gone")
        snap = self.worker.snapshot()
        if not self.state and snap.finished:
            log.info("child %d (pid %d) recycled after %d jobs", self.spec.index, self.pid,
                     snap.done + snap.failed)
            self.worker.drain(self.config.graceful_timeout)  # flushes the last acks
            return EXIT_OK
        limit_mib = self.config.max_memory_per_child
        if not self.state and limit_mib:
            rss_mib = self._rss_bytes() / (1024 * 1024)
            if rss_mib > limit_mib:
                self.start_drain(f"recycling: rss {rss_mib:.0f} MiB > {limit_mib} MiB")
        if self._drain_thread is not None and not self._drain_thread.is_alive():
            return EXIT_OK if self._drain_ok else EXIT_DRAIN_TIMEOUT
        set_title(child_title(
            self.spec.index, self.spec.generation, busy=snap.busy, threads=snap.threads,
            done=snap.done, failed=snap.failed, last_task=snap.last_task,
            last_duration_s=snap.last_duration_s, state=self.state,
        ))
        return None

    def start_drain(self, why: str) -> None:
        """Stop claiming and let running jobs finish, in a thread: signals stay handled."""
        assert self.worker is not None
        log.info("child %d (pid %d) draining (%s)", self.spec.index, self.pid, why)
        self.state = "draining"
        worker = self.worker

        def drain() -> None:
            self._drain_ok = worker.drain(self.config.graceful_timeout)

        self._drain_thread = threading.Thread(target=drain, name="drain", daemon=True)
        self._drain_thread.start()

    def stop_fast(self, why: str) -> int:
        assert self.worker is not None
        log.debug("child %d (pid %d) fast stop (%s)", self.spec.index, self.pid, why)
        self.state = "stopping"
        self.worker.stop()
        return EXIT_OK

    # -- heartbeat ---------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        from .connection import connect

        client = connect(self.config.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S,
                         socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S)
        registry = ProcessRegistry(client, self.config.prefix)
        self.beat_once(registry)
        while not self._stop_beats.wait(self.config.heartbeat_interval):
            self.beat_once(registry)

    def beat_once(self, registry: ProcessRegistry) -> bool:
        """Write one heartbeat if the executors make progress; True if written."""
        assert self.worker is not None
        snap = self.worker.snapshot()
        if not snap.progressing:
            if not self._not_progressing:
                log.warning("child %d (pid %d): an executor is stuck past its job's hard limit; "
                            "withholding heartbeats so the master recycles this child",
                            self.spec.index, self.pid)
            self._not_progressing = True
            return False
        self._not_progressing = False
        fields: dict[str, Any] = {
            "role": "child", "host": socket.gethostname(), "pid": self.pid,
            "master_pid": self.spec.master_pid, "index": self.spec.index,
            "generation": self.spec.generation, "started_ms": self.started_ms,
            "queues": self.config.queues, "threads": snap.threads, "busy": snap.busy,
            "done": snap.done, "failed": snap.failed, "state": self.state or "running",
            "current": json.dumps([job_id for _, job_id, _, _ in snap.current]),
        }
        try:
            registry.beat(self.owner, fields, ttl_s=self.config.heartbeat_timeout * 2)
        except redis.RedisError as exc:
            if not self._beat_failing:
                log.warning("child %d (pid %d): heartbeat failed (%s); retrying",
                            self.spec.index, self.pid, exc)
            self._beat_failing = True
            return False
        if self._beat_failing:
            log.info("child %d (pid %d): heartbeats resumed", self.spec.index, self.pid)
        self._beat_failing = False
        return True

    def _report_app_error(self, exc: BaseException) -> None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if type(exc).__name__ != "AppLoadError":
            message = f"{type(exc).__name__}: {message}"
        line = (message[:400] + "\n").encode("utf-8", "replace")  # < PIPE_BUF: one atomic write
        try:
            os.write(self.spec.error_fd, line)
        except OSError:
            log.error("cannot load the task code: %s", message)
