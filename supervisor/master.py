"""The master (Arbiter): forks children, watches them, reaps their jobs, obeys signals.

The master never imports task code. Signal handlers only record the signal
(``SimpleQueue.put_nowait``) and ``signal.set_wakeup_fd`` wakes the loop, which
is blocked in ``select`` on a self-pipe. Each pass of the loop, :meth:`Arbiter.tick`,
does in order:

1. handle the recorded signals (``handle_<signame>``);
2. reap: ``waitpid(-1, WNOHANG)`` until nothing is left; for each dead child, move
   its in-flight jobs (only its own: by owner id) to retry or failed with the reason;
3. murder: SIGKILL children whose heartbeat stopped for --heartbeat-timeout (hung,
   SIGSTOPped, an executor stuck past its hard limit) and children that outlived
   their drain deadline;
4. manage: spawn up to the target (with back-off after start-up crashes), retire
   extras oldest first, retire the old generation once a new one is ready;
5. now and then: sweep expired leases of any host under a ``SET NX PX`` lock, and
   write the master's own heartbeat.

Signals (compare gunicorn and Resque in docs/supervisor.md):

======  =================================================================
TERM    drain: children stop claiming, finish running jobs up to
        --graceful-timeout, then are killed and their jobs reaped ("shutdown");
        exit 0. A second TERM, or INT/QUIT, escalates to a fast stop.
INT     fast stop: children give back prefetched jobs and exit at once; their
QUIT    running jobs are reaped to retry ("fast shutdown"); exit 0.
HUP     reload: re-read the config file, fork a new generation, and once all of
        it heartbeats, TERM (drain) the old generation.
TTIN    one child more.
TTOU    one child fewer (the oldest drains); never below 1.
USR1    reopen log files (and tell the children to).
USR2    upgrade: start a new master from the same command line (new code); once all
        its children heartbeat, drain this master's children and exit 0.
CHLD    wakes the loop so the dead child is reaped at once.
======  =================================================================
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import secrets
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import redis

from . import child as child_mod
from .config import LOGGER_NAME, Config, ConfigLoader, configure_logging, reopen_log_files
from .heartbeat import ProcessRegistry
from .proctitle import master_title, set_title

if TYPE_CHECKING:
    from .queue import Queue

log = logging.getLogger(LOGGER_NAME)

VERSION = "0.1.0"

# Exit codes of the master (a protocol for systemd, scripts and tests).
EXIT_OK = 0
EXIT_USAGE = 2  # bad flag or setting (click also uses 2)
EXIT_REDIS_UNREACHABLE = 3  # Redis cannot be reached at start
EXIT_APP_LOAD_ERROR = child_mod.EXIT_APP_LOAD_ERROR  # the task code does not import

SIGNALS = (
    signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGTTIN,
    signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD,
)
MAX_TICK_S = 1.0  # longest sleep of the loop when nothing wakes it
FAST_STOP_GRACE_S = 5.0  # after INT/QUIT: how long children get to exit before SIGKILL
KILL_SLACK_S = 2.0  # beyond --graceful-timeout, for a draining child to exit by itself
BOOT_BACKOFF_BASE_S = 0.5
BOOT_BACKOFF_MAX_S = 30.0
REDIS_BACKOFF_MAX_S = 10.0
REDIS_SOCKET_TIMEOUT_S = 5.0  # the loop never blocks longer than this on Redis
UPGRADE_TIMEOUT_S = 60.0  # USR2: how long the new master may take to get its children ready
UPGRADE_NONCE_ENV = "QSUPERVISE_UPGRADE_NONCE"  # old master -> new master, then removed
REAP_WAIT_S = 10.0  # at exit, how long to keep retrying reaps while Redis is unreachable


class StartupError(RuntimeError):
    """The master cannot start; ``str()`` is one line for the user, ``code`` the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ChildProc:
    """The master's view of one child."""

    pid: int
    index: int
    generation: int
    nonce: str
    owner: str
    queues: list[str]
    started: float  # monotonic
    last_beat: float  # monotonic time the heartbeat was last seen to change
    last_seq: int | None = None
    ready: bool = False
    kill_at: float | None = None  # SIGKILL deadline once told to stop
    reason: str | None = None  # reason for its jobs when it is reaped, if not its exit status
    killed: bool = False
    ordered_stop: bool = False  # the master told it to stop: its jobs' deaths do not count


@dataclass
class PendingReap:
    owner: str
    queues: list[str]
    reason: str
    describe: str  # "child pid 12 (signal 9)", for the log line
    count_death: bool = True


@dataclass
class Upgrade:
    """A new master started by USR2, watched until its children are ready."""

    pid: int
    master_id: str
    deadline: float


@dataclass
class Arbiter:
    """The master loop. ``tick(now)`` is one iteration; tests drive it with fake time."""

    config: Config
    reload_config: ConfigLoader | None = None
    clock: Callable[[], float] = time.monotonic
    fork: Callable[[], int] = os.fork
    waitpid: Callable[[int, int], tuple[int, int]] = os.waitpid
    kill: Callable[[int, int], None] = os.kill
    child_main: Callable[[child_mod.ChildSpec], Any] = child_mod.child_main
    client: redis.Redis | None = None

    def __post_init__(self) -> None:
        self.pid = os.getpid()
        self.host = socket.gethostname()
        # A master started by USR2 gets its nonce from the old one, which watches for it.
        nonce = os.environ.pop(UPGRADE_NONCE_ENV, "") or secrets.token_hex(4)
        self.id = f"{self.host}/{self.pid}/{nonce}"
        self.upgrade: Upgrade | None = None
        self.generation = 1
        self.target = self.config.children
        self.children: dict[int, ChildProc] = {}
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.state = "running"  # running | draining | stopping | halting
        self.exit_code = EXIT_OK
        self.pending_reaps: list[PendingReap] = []
        self.boot_failures = 0
        self.spawn_not_before = 0.0
        self.next_heartbeat = 0.0
        self.next_sweep = 0.0
        self.redis_retry_at = 0.0
        self.redis_failures = 0
        self.stop_deadline: float | None = None
        self.previous_config: Config | None = None  # kept during a reload, to roll back
        self._queues: dict[str, Queue] = {}
        self._pipe: tuple[int, int] | None = None
        self._error_pipe: tuple[int, int] | None = None
        self._last_title = ""

    # -- start and stop ------------------------------------------------------
    def setup(self) -> None:
        """Check Redis, open the pipes, install the signal handlers."""
        if self.client is None:
            from .connection import connect

            self.client = connect(self.config.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S)
        try:
            self.client.ping()
        except redis.RedisError as exc:
            where = self.config.redis_url or os.environ.get("REDIS_URL") or "the default Redis"
            raise StartupError(f"cannot reach Redis at {where}: {exc}",
                               EXIT_REDIS_UNREACHABLE) from None
        self.registry = ProcessRegistry(self.client, self.config.prefix)
        self._pipe = os.pipe()
        self._error_pipe = os.pipe()
        for fd in (*self._pipe, self._error_pipe[0]):
            os.set_blocking(fd, False)
        for fd in (*self._pipe, *self._error_pipe):
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(self._pipe[1])
        for sig in SIGNALS:
            signal.signal(sig, self._record)
        log.info("qsupervise %s master pid %d starting: %s", VERSION, self.pid,
                 self.config.describe())

    def _record(self, signum: int, frame: object) -> None:
        """The only thing a handler does: record the signal for the loop."""
        self.signals.put_nowait(signum)

    def run(self) -> int:
        self.setup()
        try:
            while True:
                code = self.tick(self.clock())
                if code is not None:
                    return code
                self.sleep()
        finally:
            self.teardown()

    def teardown(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        with contextlib.suppress(redis.RedisError, AttributeError):
            self.registry.remove(self.id)
        for fds in (self._pipe, self._error_pipe):
            for fd in fds or ():
                os.close(fd)
        self._pipe = self._error_pipe = None

    def sleep(self) -> None:
        """Block until a signal arrives (wakeup fd) or the next tick is due."""
        if self._pipe is None:
            return
        timeout = min(MAX_TICK_S, self.config.heartbeat_interval / 2)
        try:
            ready, _, _ = select.select([self._pipe[0]], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._pipe[0], 4096):
                    pass
            except BlockingIOError:
                pass

    # -- one iteration -------------------------------------------------------
    def tick(self, now: float) -> int | None:
        """One pass: signals, reap, murder, manage, sweep, heartbeat. Returns an exit code
        when the master is done."""
        self.handle_signals(now)
        self.reap(now)
        self.flush_reaps(now)
        self.murder(now)
        self.manage(now)
        self.watch_upgrade(now)
        self.sweep(now)
        self.heartbeat(now)
        self.update_title()
        if self.state != "running" and not self.children:
            if self.pending_reaps and now < self.stop_deadline_or(now) + REAP_WAIT_S:
                return None  # Redis is away: give it a moment to take the last reaps
            if self.pending_reaps:
                log.error("exiting with %d dead children's jobs not reaped (Redis unreachable); "
                          "their leases expire and another master's sweep recovers them",
                          len(self.pending_reaps))
            log.info("master pid %d exiting (%d)", self.pid, self.exit_code)
            return self.exit_code
        return None

    def stop_deadline_or(self, now: float) -> float:
        return self.stop_deadline if self.stop_deadline is not None else now

    # -- signals -------------------------------------------------------------
    def handle_signals(self, now: float) -> None:
        while True:
            try:
                signum = self.signals.get_nowait()
            except queue.Empty:
                return
            name = signal.Signals(signum).name
            handler = getattr(self, f"handle_{name[3:].lower()}", None)
            if handler is not None:
                handler(now)

    def handle_chld(self, now: float) -> None:
        """Nothing to do: every tick reaps."""

    def handle_term(self, now: float) -> None:
        if self.state != "running":
            log.info("second TERM: fast stop")
            self.handle_quit(now)
            return
        log.info("TERM: draining %d children (graceful timeout %.1fs)", len(self.children),
                 self.config.graceful_timeout)
        self.state = "draining"
        self.stop_deadline = now + self.config.graceful_timeout + KILL_SLACK_S
        for c in self.children.values():
            self.retire(c, now, "shutdown")

    def handle_int(self, now: float) -> None:
        self.handle_quit(now)

    def handle_quit(self, now: float) -> None:
        if self.state == "stopping":
            return
        log.info("fast stop: %d children give back prefetched jobs and exit",
                 len(self.children))
        self.state = "stopping"
        self.stop_deadline = now + FAST_STOP_GRACE_S
        for c in self.children.values():
            c.reason = "fast shutdown"
            c.ordered_stop = True
            c.kill_at = min(c.kill_at or self.stop_deadline, self.stop_deadline)
            self._signal(c, signal.SIGQUIT)

    def handle_hup(self, now: float) -> None:
        if self.state != "running":
            return
        new = self.config
        if self.reload_config is not None:
            try:
                new = self.reload_config()
            except Exception as exc:
                log.error("reload: config not reloaded: %s", exc)
                return
        if (new.redis_url, new.prefix) != (self.config.redis_url, self.config.prefix):
            log.warning("reload: redis_url and prefix changes need a restart; keeping the old")
            new = replace(new, redis_url=self.config.redis_url, prefix=self.config.prefix)
        if new.log_file != self.config.log_file or new.log_level != self.config.log_level:
            configure_logging(new)
        self.previous_config = self.config
        self.config = new
        self.target = new.children
        self.generation += 1
        self.spawn_not_before = now
        log.info("HUP: reloading; spawning generation %d (%d children)", self.generation,
                 self.target)

    def handle_ttin(self, now: float) -> None:
        self.target += 1
        log.info("TTIN: children target %d", self.target)

    def handle_ttou(self, now: float) -> None:
        if self.target <= 1:
            log.info("TTOU: already at 1 child")
            return
        self.target -= 1
        log.info("TTOU: children target %d", self.target)

    def handle_usr1(self, now: float) -> None:
        reopen_log_files()
        for c in self.children.values():
            self._signal(c, signal.SIGUSR1)
        log.info("USR1: log files reopened")

    def handle_usr2(self, now: float) -> None:
        """Upgrade: start a new master from the same command line (the installed code of
        now); once its children are ready, drain this one's and exit."""
        if self.state != "running" or self.upgrade is not None:
            log.info("USR2 ignored: %s", "upgrade in progress" if self.upgrade else self.state)
            return
        nonce = secrets.token_hex(4)
        argv = [sys.executable, *sys.orig_argv[1:]]
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            pid = self.fork()
            if pid == 0:
                self._in_child()
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.environ[UPGRADE_NONCE_ENV] = nonce
                try:
                    os.execv(argv[0], argv)
                finally:
                    os._exit(child_mod.EXIT_BOOT_ERROR)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        self.upgrade = Upgrade(pid, f"{self.host}/{pid}/{nonce}", now + UPGRADE_TIMEOUT_S)
        log.info("USR2: upgrading: started new master pid %d", pid)

    def watch_upgrade(self, now: float) -> None:
        """Drain this master once the new one reports all its children ready."""
        up = self.upgrade
        if up is None or self.state != "running" or now < self.redis_retry_at:
            return
        try:
            ready, target = self.registry.client.hmget(
                self.registry.keys.process(up.master_id), ["ready", "target"])
        except redis.RedisError as exc:
            self.redis_error(now, "watching the new master", exc)
            return
        if ready is not None and target is not None and int(ready) >= int(target):
            log.info("upgrade: new master pid %d is ready; draining this one", up.pid)
            self.handle_term(now)
        elif now >= up.deadline:
            log.error("upgrade: new master pid %d not ready in %.0fs; stopping it, keeping this "
                      "one", up.pid, UPGRADE_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                self.kill(up.pid, signal.SIGQUIT)
            self.upgrade = None

    # -- reap ----------------------------------------------------------------
    def reap(self, now: float) -> None:
        """Collect every dead child; queue the reaping of its jobs."""
        while True:
            try:
                pid, status = self.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except OSError as exc:
                if exc.errno == errno.ECHILD:
                    return
                raise
            if pid == 0:
                return
            c = self.children.pop(pid, None)
            if c is None:
                if self.upgrade is not None and pid == self.upgrade.pid:
                    if self.state == "running":
                        log.error("upgrade failed: new master pid %d exited (status %d); "
                                  "keeping this one", pid, status)
                    self.upgrade = None
                continue
            self.on_child_exit(c, status, now)

    def on_child_exit(self, c: ChildProc, status: int, now: float) -> None:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            what = f"killed by signal {sig}"
            short = f"signal {sig}"
            code = None
        else:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            what = f"exited with status {code}"
            short = f"status {code}"
        reason = f"child pid {c.pid} {what}"
        if c.reason:
            reason = f"{c.reason}: {reason}"
        level = logging.INFO if code in (child_mod.EXIT_OK,) or c.kill_at else logging.WARNING
        log.log(level, "child %d pid %d gen %d %s", c.index, c.pid, c.generation, what)
        self.pending_reaps.append(
            PendingReap(c.owner, c.queues, reason, f"child pid {c.pid} ({short})",
                        count_death=not c.ordered_stop)
        )
        if code == child_mod.EXIT_APP_LOAD_ERROR:
            self.on_app_load_error(c, now)
            return
        if not c.ready and c.kill_at is None and self.state == "running":
            self.boot_failures += 1
            delay = min(BOOT_BACKOFF_BASE_S * 2 ** (self.boot_failures - 1), BOOT_BACKOFF_MAX_S)
            self.spawn_not_before = now + delay
            log.warning("child died before it was ready (%d in a row); next spawn in %.1fs",
                        self.boot_failures, delay)

    def on_app_load_error(self, c: ChildProc, now: float) -> None:
        message = self._read_app_error() or "the task code does not import"
        if self.previous_config is not None and c.generation == self.generation and any(
            o.generation < self.generation for o in self.children.values()
        ):
            log.error("reload failed, keeping generation %d: cannot load the task code: %s",
                      self.generation - 1, message)
            self.config = self.previous_config
            self.previous_config = None
            self.target = self.config.children
            for o in self.children.values():
                if o.generation == self.generation:
                    self.retire(o, now, "reload failed", fast=True)
            self.generation -= 1
            return
        if self.state == "halting":
            return
        if self.state == "running" and any(
            o.ready and o.generation == self.generation for o in self.children.values()
        ):
            # The code changed on disk under a running fleet: keep serving, back off.
            self.boot_failures += 1
            delay = min(BOOT_BACKOFF_BASE_S * 2 ** (self.boot_failures - 1), BOOT_BACKOFF_MAX_S)
            self.spawn_not_before = now + delay
            log.error("cannot load the task code (other children keep serving; next spawn in "
                      "%.1fs): %s", delay, message)
            return
        log.error("cannot load the task code: %s", message)
        self.state = "halting"
        self.exit_code = EXIT_APP_LOAD_ERROR
        self.stop_deadline = now + FAST_STOP_GRACE_S
        for o in self.children.values():
            self.retire(o, now, "shutdown", fast=True)

    def _read_app_error(self) -> str:
        if self._error_pipe is None:
            return ""
        try:
            data = os.read(self._error_pipe[0], 65536)
        except BlockingIOError:
            return ""
        lines = data.decode("utf-8", "replace").splitlines()
        return lines[0] if lines else ""

    def flush_reaps(self, now: float) -> None:
        """Move dead children's jobs; kept and retried while Redis is unreachable."""
        if not self.pending_reaps or now < self.redis_retry_at:
            return
        while self.pending_reaps:
            item = self.pending_reaps[0]
            try:
                moved = sum(
                    self.queue(name).reap_owner(item.owner, item.reason,
                                                max_deaths=self.config.max_deaths,
                                                count_death=item.count_death)
                    for name in item.queues
                )
                self.registry.remove(item.owner)
            except redis.RedisError as exc:
                self.redis_error(now, f"reaping {item.describe}", exc)
                return
            self.redis_ok()
            self.pending_reaps.pop(0)
            log.info("reaped %s, moved %d jobs", item.describe, moved)

    # -- murder --------------------------------------------------------------
    def murder(self, now: float) -> None:
        """SIGKILL hung children and children past their stop deadline."""
        self.observe_heartbeats(now)
        timeout = self.config.heartbeat_timeout
        for c in self.children.values():
            if c.killed:
                continue
            if c.kill_at is not None and now >= c.kill_at:
                log.warning("child %d pid %d did not exit in time: SIGKILL", c.index, c.pid)
                self._kill_child(c)
            elif now - c.last_beat > timeout:
                silent = now - c.last_beat
                log.warning("child %d pid %d silent for %.1fs (hung or stopped): SIGKILL",
                            c.index, c.pid, silent)
                c.reason = c.reason or f"no heartbeat for {silent:.1f}s"
                self._kill_child(c)

    def observe_heartbeats(self, now: float) -> None:
        if not self.children or now < self.redis_retry_at:
            if now < self.redis_retry_at:
                self._excuse_silence(now)
            return
        try:
            seqs = self.registry.seqs(c.owner for c in self.children.values())
        except redis.RedisError as exc:
            self.redis_error(now, "reading heartbeats", exc)
            self._excuse_silence(now)
            return
        self.redis_ok()
        for c in self.children.values():
            seq = seqs.get(c.owner)
            if seq is not None and seq != c.last_seq:
                c.last_seq = seq
                c.last_beat = now
                if not c.ready:
                    c.ready = True
                    self.boot_failures = 0
                    log.info("child %d pid %d gen %d ready", c.index, c.pid, c.generation)

    def _excuse_silence(self, now: float) -> None:
        """Heartbeats cannot be read: nobody is judged hung while Redis is away."""
        for c in self.children.values():
            c.last_beat = max(c.last_beat, now)

    def _kill_child(self, c: ChildProc) -> None:
        c.killed = True
        self._signal(c, signal.SIGKILL)

    def _signal(self, c: ChildProc, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.kill(c.pid, sig)

    # -- manage --------------------------------------------------------------
    def manage(self, now: float) -> None:
        if self.state != "running":
            return
        current = [c for c in self.children.values()
                   if c.generation == self.generation and c.kill_at is None]
        old = [c for c in self.children.values()
               if c.generation != self.generation and c.kill_at is None]
        if len(current) < self.target and now >= self.spawn_not_before:
            missing = self.target - len(current)
            if self.boot_failures:
                missing = 1  # one at a time while children crash at start-up
            for _ in range(missing):
                self.spawn(now)
            if self.boot_failures:
                self.spawn_not_before = now + BOOT_BACKOFF_BASE_S
        elif len(current) > self.target:
            extras = sorted(current, key=lambda c: c.started)[: len(current) - self.target]
            for c in extras:
                log.info("retiring child %d pid %d (scale down)", c.index, c.pid)
                self.retire(c, now, "retired")
        if old and sum(c.ready for c in current) >= self.target:
            log.info("reload: generation %d ready; draining %d children of older generations",
                     self.generation, len(old))
            for c in old:
                self.retire(c, now, "reload")
            self.previous_config = None

    def retire(self, c: ChildProc, now: float, reason: str, *, fast: bool = False) -> None:
        """Tell a child to stop: TERM (drain) or QUIT (fast); SIGKILL at the deadline."""
        grace = FAST_STOP_GRACE_S if fast else self.config.graceful_timeout + KILL_SLACK_S
        c.kill_at = now + grace if c.kill_at is None else min(c.kill_at, now + grace)
        c.reason = c.reason or reason
        c.ordered_stop = True
        self._signal(c, signal.SIGQUIT if fast else signal.SIGTERM)

    def spawn(self, now: float) -> ChildProc:
        """Fork one child of the current generation; signals blocked across the fork."""
        used = {c.index for c in self.children.values() if c.generation == self.generation}
        index = next(i for i in range(1, len(used) + 2) if i not in used)
        nonce = secrets.token_hex(4)
        assert self._error_pipe is not None or self.fork is not os.fork
        spec = child_mod.ChildSpec(
            index=index, generation=self.generation, nonce=nonce, master_pid=self.pid,
            config=self.config, error_fd=self._error_pipe[1] if self._error_pipe else -1,
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            pid = self.fork()
            if pid == 0:
                self._in_child()
                self.child_main(spec)  # never returns in a real child
                os._exit(child_mod.EXIT_BOOT_ERROR)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        c = ChildProc(pid=pid, index=index, generation=self.generation, nonce=nonce,
                      owner=child_mod.owner_id(pid, nonce, self.host),
                      queues=self.config.queue_names, started=now, last_beat=now)
        self.children[pid] = c
        log.info("spawned child %d pid %d gen %d", index, pid, self.generation)
        return c

    def _in_child(self) -> None:
        """Right after fork, signals still blocked: drop the master's handlers and pipes."""
        signal.set_wakeup_fd(-1)
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
        if self._error_pipe is not None:
            os.close(self._error_pipe[0])

    # -- Redis housekeeping ----------------------------------------------------
    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            from .queue import Queue

            self._queues[name] = Queue(name, redis=self.client, prefix=self.config.prefix)
        return self._queues[name]

    def sweep(self, now: float) -> None:
        """Recover jobs with expired leases (any host), one master at a time."""
        if now < self.next_sweep or now < self.redis_retry_at or self.state != "running":
            return
        self.next_sweep = now + self.config.sweep_interval
        assert self.client is not None
        try:
            lock = self.registry.keys.sweep_lock
            px = max(1, int(self.config.sweep_interval * 1000 * 0.9))
            if not self.client.set(lock, self.id, nx=True, px=px):
                return
            for name in self.config.queue_names:
                moved = self.queue(name).sweep(max_deaths=self.config.max_deaths)
                if moved:
                    log.info("sweep: moved %d jobs with expired leases in queue %s", moved, name)
            self.registry.prune(older_than_s=self.config.heartbeat_timeout * 4)
        except redis.RedisError as exc:
            self.redis_error(now, "sweeping", exc)
            return
        self.redis_ok()

    def heartbeat(self, now: float) -> None:
        if now < self.next_heartbeat or now < self.redis_retry_at:
            return
        self.next_heartbeat = now + self.config.heartbeat_interval
        fields: dict[str, str | int | float] = {
            "role": "master", "host": self.host, "pid": self.pid, "version": VERSION,
            "generation": self.generation, "children": len(self.children),
            "target": self.target, "queues": self.config.queues, "state": self.state,
            "ready": sum(1 for c in self.children.values()
                         if c.ready and c.generation == self.generation and c.kill_at is None),
        }
        try:
            self.registry.beat(self.id, fields, ttl_s=self.config.heartbeat_timeout * 2)
        except redis.RedisError as exc:
            self.redis_error(now, "writing the master heartbeat", exc)
            return
        self.redis_ok()

    def redis_error(self, now: float, doing: str, exc: Exception) -> None:
        self.redis_failures += 1
        delay = min(0.1 * 2 ** self.redis_failures, REDIS_BACKOFF_MAX_S)
        self.redis_retry_at = now + delay
        if self.redis_failures == 1:
            log.warning("Redis unreachable while %s (%s); retrying with back-off", doing, exc)

    def redis_ok(self) -> None:
        if self.redis_failures:
            log.info("Redis reachable again")
        self.redis_failures = 0
        self.redis_retry_at = 0.0

    def update_title(self) -> None:
        state = "" if self.state == "running" else self.state
        if any(c.generation != self.generation for c in self.children.values()):
            state = state or "reloading"
        alive = sum(1 for c in self.children.values() if c.generation == self.generation)
        title = master_title(self.generation, alive, self.target, self.config.queue_names, state)
        if title != self._last_title:
            set_title(title)
            self._last_title = title
