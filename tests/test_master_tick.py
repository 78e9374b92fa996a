"""The master loop, one tick at a time: fork, waitpid and kill are fakes, time is injected.

Heartbeats go to the session's private redis-server (the registry is real); the
queues are fakes that record ``reap_owner`` and ``sweep`` calls.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from supervisor import master as master_mod
from supervisor.child import EXIT_APP_LOAD_ERROR
from supervisor.config import Config
from supervisor.heartbeat import ProcessRegistry
from supervisor.master import Arbiter


class FakeQueue:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reaped: list[tuple[str, str]] = []
        self.death_counted: list[bool] = []
        self.swept = 0
        self.down = False

    def reap_owner(
        self, owner: str, reason: str, max_deaths: int = 3, *, count_death: bool = True
    ) -> int:
        if self.down:
            raise redis.ConnectionError("down")
        self.reaped.append((owner, reason))
        self.death_counted.append(count_death)
        return 2

    def sweep(self, limit: int = 1000, max_deaths: int = 3) -> int:
        self.swept += 1
        return 0


class Fakes:
    """fork/waitpid/kill stand-ins: pids count up from 1000; exits are queued by tests."""

    def __init__(self) -> None:
        self.next_pid = 1000
        self.exits: list[tuple[int, int]] = []
        self.kills: list[tuple[int, int]] = []

    def fork(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        return self.exits.pop(0) if self.exits else (0, 0)

    def kill(self, pid: int, sig: int) -> None:
        self.kills.append((pid, sig))

    def signalled(self, sig: int) -> set[int]:
        return {pid for pid, s in self.kills if s == sig}


def exited(code: int) -> int:
    return code << 8


def killed_by(sig: int) -> int:
    return sig


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def config() -> Config:
    return Config(
        app="tasks",
        queues="high,low",
        children=2,
        heartbeat_interval=0.2,
        heartbeat_timeout=2.0,
        graceful_timeout=5.0,
        sweep_interval=10.0,
    )


@pytest.fixture
def arbiter(
    config: Config, fakes: Fakes, redis_client: redis.Redis, prefix: str
) -> Iterator[Arbiter]:
    arb = Arbiter(
        replace(config, prefix=prefix),
        fork=fakes.fork,
        waitpid=fakes.waitpid,
        kill=fakes.kill,
        client=redis_client,
    )
    arb.registry = ProcessRegistry(redis_client, prefix)
    arb._queues = {name: FakeQueue(name) for name in ("high", "low")}  # type: ignore[dict-item]
    yield arb


def beat(arb: Arbiter, pid: int) -> None:
    arb.registry.beat(arb.children[pid].owner, {"role": "child"}, ttl_s=10)


def queues(arb: Arbiter) -> dict[str, Any]:
    return arb._queues


def test_first_tick_spawns_to_target_and_heartbeats_make_children_ready(
    arbiter: Arbiter,
) -> None:
    assert arbiter.tick(0.0) is None
    assert sorted(arbiter.children) == [1001, 1002]
    assert [c.index for c in arbiter.children.values()] == [1, 2]
    assert not any(c.ready for c in arbiter.children.values())
    beat(arbiter, 1001)
    arbiter.tick(0.1)
    assert arbiter.children[1001].ready and not arbiter.children[1002].ready


def test_dead_child_jobs_are_reaped_on_every_queue_with_the_reason(
    arbiter: Arbiter, fakes: Fakes
) -> None:
    arbiter.tick(0.0)
    for pid in (1001, 1002):
        beat(arbiter, pid)
    arbiter.tick(0.1)
    owner = arbiter.children[1001].owner
    fakes.exits = [(1001, killed_by(signal.SIGKILL))]
    arbiter.tick(0.2)
    for q in queues(arbiter).values():
        assert q.reaped == [(owner, "child pid 1001 killed by signal 9")]
        assert q.death_counted == [True], "a crash counts towards the poison-pill limit"
    assert 1001 not in arbiter.children
    assert 1003 in arbiter.children, "a replacement is forked in the same tick"
    assert arbiter.children[1003].index == 1, "the replacement takes the free index"


def test_exit_status_is_the_reason_when_a_child_exits(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    beat(arbiter, 1002)
    arbiter.tick(0.1)
    fakes.exits = [(1002, exited(3))]
    arbiter.tick(0.2)
    assert queues(arbiter)["high"].reaped[0][1] == "child pid 1002 exited with status 3"


def test_silent_child_is_sigkilled_after_the_heartbeat_timeout(
    arbiter: Arbiter, fakes: Fakes
) -> None:
    arbiter.tick(0.0)
    for pid in (1001, 1002):
        beat(arbiter, pid)
    arbiter.tick(0.5)
    beat(arbiter, 1002)  # 1002 keeps beating, 1001 is silent from 0.5 on
    arbiter.tick(2.4)
    assert fakes.signalled(signal.SIGKILL) == set()
    beat(arbiter, 1002)
    arbiter.tick(2.6)
    assert fakes.signalled(signal.SIGKILL) == {1001}
    fakes.exits = [(1001, killed_by(signal.SIGKILL))]
    arbiter.tick(2.7)
    reason = queues(arbiter)["low"].reaped[0][1]
    assert reason.startswith("no heartbeat for 2.1s: child pid 1001 killed by signal 9")


def test_children_crashing_at_start_are_backed_off(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    fakes.exits = [(1001, exited(3)), (1002, exited(3))]
    arbiter.tick(0.1)
    assert arbiter.children == {}, "no respawn inside the back-off"
    assert arbiter.boot_failures == 2
    arbiter.tick(0.5)
    assert arbiter.children == {}
    arbiter.tick(0.1 + 0.5 * 2 + 0.01)
    assert len(arbiter.children) == 1, "one at a time while children crash at start"


def test_app_load_error_stops_the_master_instead_of_fork_looping(
    arbiter: Arbiter, fakes: Fakes
) -> None:
    arbiter.tick(0.0)
    fakes.exits = [(1001, exited(EXIT_APP_LOAD_ERROR))]
    assert arbiter.tick(0.1) is None
    assert arbiter.state == "halting"
    assert fakes.signalled(signal.SIGQUIT) == {1002}
    assert fakes.next_pid == 1002, "nothing forked after the load error"
    fakes.exits = [(1002, exited(EXIT_APP_LOAD_ERROR))]
    assert arbiter.tick(0.2) == EXIT_APP_LOAD_ERROR


def test_term_drains_children_then_exits_zero(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    arbiter.signals.put_nowait(signal.SIGTERM)
    assert arbiter.tick(0.1) is None
    assert fakes.signalled(signal.SIGTERM) == {1001, 1002}
    fakes.exits = [(1001, exited(0))]
    assert arbiter.tick(1.0) is None
    # 1002 outlives --graceful-timeout (+ slack): SIGKILL, jobs reaped as "shutdown".
    arbiter.tick(0.1 + 5.0 + master_mod.KILL_SLACK_S)
    assert fakes.signalled(signal.SIGKILL) == {1002}
    fakes.exits = [(1002, killed_by(signal.SIGKILL))]
    assert arbiter.tick(8.0) == 0
    assert queues(arbiter)["high"].reaped[-1][1] == "shutdown: child pid 1002 killed by signal 9"
    assert queues(arbiter)["high"].death_counted[-1] is False, "an ordered stop is no death"


def test_second_term_escalates_to_a_fast_stop(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    arbiter.signals.put_nowait(signal.SIGTERM)
    arbiter.tick(0.1)
    arbiter.signals.put_nowait(signal.SIGTERM)
    arbiter.tick(0.2)
    assert arbiter.state == "stopping"
    assert fakes.signalled(signal.SIGQUIT) == {1001, 1002}


def test_ttin_ttou_move_the_target_and_retire_the_oldest(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    arbiter.signals.put_nowait(signal.SIGTTIN)
    arbiter.tick(0.1)
    assert len(arbiter.children) == 3
    arbiter.signals.put_nowait(signal.SIGTTOU)
    arbiter.tick(0.2)
    assert fakes.signalled(signal.SIGTERM) == {1001}, "the oldest child is retired"
    arbiter.signals.put_nowait(signal.SIGTTOU)
    arbiter.tick(0.3)
    arbiter.signals.put_nowait(signal.SIGTTOU)
    arbiter.tick(0.4)
    assert arbiter.target == 1, "never below one child"


def test_hup_retires_the_old_generation_once_the_new_one_is_ready(
    arbiter: Arbiter, fakes: Fakes, config: Config
) -> None:
    arbiter.reload_config = lambda: replace(arbiter.config, queues="high,low,extra")
    arbiter._queues["extra"] = FakeQueue("extra")  # type: ignore[assignment]
    arbiter.tick(0.0)
    for pid in (1001, 1002):
        beat(arbiter, pid)
    arbiter.tick(0.1)
    arbiter.signals.put_nowait(signal.SIGHUP)
    arbiter.tick(0.2)
    assert arbiter.generation == 2
    assert sorted(arbiter.children) == [1001, 1002, 1003, 1004]
    assert fakes.signalled(signal.SIGTERM) == set(), "old children serve until new are ready"
    beat(arbiter, 1003)
    arbiter.tick(0.3)
    assert fakes.signalled(signal.SIGTERM) == set()
    beat(arbiter, 1004)
    arbiter.tick(0.4)
    assert fakes.signalled(signal.SIGTERM) == {1001, 1002}
    assert arbiter.children[1003].queues == ["high", "low", "extra"]
    assert arbiter.children[1001].queues == ["high", "low"]


def test_reload_whose_new_code_fails_to_import_keeps_the_old_generation(
    arbiter: Arbiter, fakes: Fakes
) -> None:
    arbiter.tick(0.0)
    for pid in (1001, 1002):
        beat(arbiter, pid)
    arbiter.tick(0.1)
    arbiter.signals.put_nowait(signal.SIGHUP)
    arbiter.tick(0.2)
    fakes.exits = [(1003, exited(EXIT_APP_LOAD_ERROR))]
    assert arbiter.tick(0.3) is None
    assert arbiter.state == "running" and arbiter.generation == 1
    assert fakes.signalled(signal.SIGQUIT) == {1004}
    assert 1001 in arbiter.children and 1002 in arbiter.children


def test_reaps_wait_for_redis_and_nobody_is_judged_hung_meanwhile(
    arbiter: Arbiter, fakes: Fakes, prefix: str
) -> None:
    arbiter.tick(0.0)
    for pid in (1001, 1002):
        beat(arbiter, pid)
    arbiter.tick(0.1)
    for q in queues(arbiter).values():
        q.down = True
    live_registry = arbiter.registry
    arbiter.registry = ProcessRegistry(redis.Redis(port=1, socket_connect_timeout=0.2), prefix)
    fakes.exits = [(1001, killed_by(signal.SIGKILL))]
    arbiter.tick(0.2)
    assert len(arbiter.pending_reaps) == 1
    for t in (1.0, 3.0, 6.0, 12.0):
        arbiter.tick(t)
    assert fakes.signalled(signal.SIGKILL) == set(), "silence while Redis is away is excused"
    for q in queues(arbiter).values():
        q.down = False
    arbiter.registry = live_registry
    arbiter.tick(30.0)
    assert arbiter.pending_reaps == []
    assert queues(arbiter)["high"].reaped[0][1] == "child pid 1001 killed by signal 9"


def test_sweep_runs_under_a_lock_one_master_at_a_time(
    arbiter: Arbiter, config: Config, fakes: Fakes, redis_client: redis.Redis, prefix: str
) -> None:
    other = Arbiter(
        replace(config, prefix=prefix),
        fork=fakes.fork,
        waitpid=fakes.waitpid,
        kill=fakes.kill,
        client=redis_client,
    )
    other.registry = ProcessRegistry(redis_client, prefix)
    other._queues = {name: FakeQueue(name) for name in ("high", "low")}  # type: ignore[dict-item]
    arbiter.sweep(0.0)
    other.sweep(0.0)
    assert [q.swept for q in queues(arbiter).values()] == [1, 1]
    assert [q.swept for q in other._queues.values()] == [0, 0]  # type: ignore[attr-defined]


def test_usr2_upgrade_that_dies_leaves_this_master_running(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    arbiter.signals.put_nowait(signal.SIGUSR2)
    arbiter.tick(0.1)
    assert arbiter.upgrade is not None and arbiter.upgrade.pid == 1003
    fakes.exits = [(1003, exited(4))]
    arbiter.tick(0.2)
    assert arbiter.upgrade is None and arbiter.state == "running"
    assert sorted(arbiter.children) == [1001, 1002]


def test_usr2_drains_this_master_once_the_new_one_is_ready(arbiter: Arbiter, fakes: Fakes) -> None:
    arbiter.tick(0.0)
    arbiter.signals.put_nowait(signal.SIGUSR2)
    arbiter.tick(0.1)
    assert arbiter.upgrade is not None
    arbiter.registry.beat(arbiter.upgrade.master_id, {"ready": 1, "target": 2}, ttl_s=10)
    arbiter.tick(0.2)
    assert arbiter.state == "running"
    arbiter.registry.beat(arbiter.upgrade.master_id, {"ready": 2, "target": 2}, ttl_s=10)
    arbiter.tick(0.3)
    assert arbiter.state == "draining"
    assert fakes.signalled(signal.SIGTERM) == {1001, 1002}


def test_load_error_of_a_replacement_does_not_stop_a_serving_fleet(
    arbiter: Arbiter, fakes: Fakes
) -> None:
    arbiter.tick(0.0)
    for pid in (1001, 1002):
        beat(arbiter, pid)
    arbiter.tick(0.1)
    fakes.exits = [(1001, exited(0))]  # recycled
    arbiter.tick(0.2)
    assert 1003 in arbiter.children
    fakes.exits = [(1003, exited(EXIT_APP_LOAD_ERROR))]  # the code on disk is broken now
    assert arbiter.tick(0.3) is None
    assert arbiter.state == "running" and 1002 in arbiter.children
    assert arbiter.spawn_not_before > 0.3, "the replacement is backed off"
