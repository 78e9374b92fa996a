"""Fixtures: private redis-server processes on free ports or unix sockets.

Never port 6379, never a server these tests did not start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from supervisor_harness import APPS, Recorder, Start, Supervisor

from supervisor.embedded import RedisServer
from supervisor.queue import Queue


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run the long soak/chaos variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only with --slow; otherwise they are deselected
    (not skipped: every test CI collects also runs)."""
    if config.getoption("--slow"):
        return
    slow_items = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow_items:
        config.hook.pytest_deselected(items=slow_items)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture(scope="session")
def slow(request: pytest.FixtureRequest) -> bool:
    """True when the long variants were asked for with --slow."""
    return bool(request.config.getoption("--slow"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session; tests isolate by key prefix."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one test (for tests that restart or kill it)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests share one server safely."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


# -- the supervisor tests: real qsupervise processes ---------------------------------


@pytest.fixture
def start(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Start]:
    """``start("--children", "2", ...)`` runs qsupervise in its own session on this
    test's server and prefix; every one started is killed (killpg) at teardown."""
    procs: list[Supervisor] = []

    def _start(*args: str, app_dir: Path = APPS, url: str | None = None) -> Supervisor:
        log_file = tmp_path / f"qsupervise-{len(procs)}.log"
        sup = Supervisor(url or redis_url, prefix, log_file, list(args), app_dir)
        procs.append(sup)
        return sup

    yield _start
    for sup in procs:
        sup.kill()


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    """The queue "default" of this test's prefix (modules may define their own)."""
    return Queue("default", redis=redis_client, prefix=prefix)


@pytest.fixture
def rec(redis_client: redis.Redis, prefix: str) -> Recorder:
    return Recorder(redis_client, prefix)
