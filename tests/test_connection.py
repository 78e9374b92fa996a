"""Connecting (TCP, unix socket, password, db number, $REDIS_URL), key prefixes, and
the key layout: every key of a queue carries the queue's Redis Cluster hash tag."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot
from store_helpers import LONG_LEASE_MS, OWNER_A, OWNER_B, assert_consistent, core_worker

from supervisor import ConfigurationError, JobFailed, Queue, connect
from supervisor.embedded import RedisServer


@pytest.fixture
def unix_server() -> Iterator[RedisServer]:
    server = RedisServer(unix_socket=True).start()
    yield server
    server.stop()


def test_a_queue_and_a_worker_over_a_unix_socket(unix_server: RedisServer, prefix: str) -> None:
    url = unix_server.url
    assert url.startswith("unix://")
    q = Queue("default", redis_url=url, prefix=prefix)
    assert q.redis.connection_pool.connection_kwargs["path"] == unix_server.socket_path
    with core_worker(q, redis_client=None, redis_url=url):
        assert q.enqueue("core.echo", {"via": "socket"}).result(timeout=10) == {"via": "socket"}
    assert q.totals()["processed"] == 1
    q.redis.close()


def test_the_db_number_in_the_url_is_used(redis_server: RedisServer, prefix: str) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/3"
    q = Queue("default", redis_url=url, prefix=prefix)
    q.enqueue("core.echo", job_id="in-db-3")
    db0 = redis.Redis(port=redis_server.port, db=0, decode_responses=True)
    db3 = redis.Redis(port=redis_server.port, db=3, decode_responses=True)
    try:
        assert db3.exists(q.keys.job("in-db-3")) == 1
        assert db0.exists(q.keys.job("in-db-3")) == 0
    finally:
        db3.delete(*db3.keys(f"{prefix}:*"))
        for client in (db0, db3, q.redis):
            client.close()


def test_password_and_acl_user_in_the_url(fresh_redis_server: RedisServer, prefix: str) -> None:
    port = fresh_redis_server.port
    admin = redis.Redis(port=port, decode_responses=True)
    admin.acl_setuser(
        "app", enabled=True, passwords=["+app-pw"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    admin.config_set("requirepass", "s3cret")
    admin.close()
    urls = (f"redis://:s3cret@127.0.0.1:{port}/0", f"redis://app:app-pw@127.0.0.1:{port}/0")
    for i, url in enumerate(urls):
        q = Queue("default", redis_url=url, prefix=prefix)
        q.enqueue("core.echo", job_id=f"auth-{i}")
        assert q.job(f"auth-{i}").state == "queued"
        q.redis.close()
    anonymous = Queue("default", redis_url=f"redis://127.0.0.1:{port}/0", prefix=prefix)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.enqueue("core.echo")
    wrong = Queue("default", redis_url=f"redis://app:nope@127.0.0.1:{port}/0", prefix=prefix)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.enqueue("core.echo")


def test_redis_url_from_the_environment(
    redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    q = Queue("default", prefix=prefix)
    q.enqueue("core.echo", job_id="env")
    assert q.redis.connection_pool.connection_kwargs["port"] == redis_server.port
    assert q.get("env") is not None
    q.redis.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/0", "127.0.0.1:6400", "redis://:x@h:notaport"])
def test_bad_urls_are_refused_in_one_line(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        connect(url)
    assert "\n" not in str(info.value)


def test_prefixes_keep_queues_of_the_same_name_apart(
    redis_client: redis.Redis, prefix: str
) -> None:
    a = Queue("shared", redis=redis_client, prefix=f"{prefix}a")
    b = Queue("shared", redis=redis_client, prefix=f"{prefix}b")
    a.enqueue("core.echo", job_id="same-id", params={"from": "a"})
    b.enqueue("core.echo", job_id="same-id", params={"from": "b"})
    assert not b.enqueue("core.echo", job_id="other").duplicate
    (ja,), _ = a.claim(OWNER_A, 5, LONG_LEASE_MS)
    assert (ja.id, ja.params) == ("same-id", '{"from":"a"}')
    assert a.claim(OWNER_A, 5, LONG_LEASE_MS)[0] == []
    assert b.counts()["queued"] == 2
    assert b.job("same-id").state == "queued"
    for p in (f"{prefix}a", f"{prefix}b"):
        for key in redis_client.scan_iter(match=f"{p}:*"):
            assert key.startswith(f"{p}:")
        assert redis_client.sismember(f"{p}:queues", "shared")
    assert_consistent(a)
    assert_consistent(b)


PROCESS_KEY = re.compile(r"^[^:{}]+:(queues|procs|proc:.*|sweep-lock)$")


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of ``key``: text inside the first ``{...}``."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end <= start + 1:
        return None
    return key[start + 1 : end]


def test_every_key_of_a_queue_shares_its_hash_tag(redis_client: redis.Redis, prefix: str) -> None:
    """Drive every transition and feature on two queues, then scan all keys made."""
    slots = {}
    for name in ("emails", "reports"):
        q = Queue(name, redis=redis_client, prefix=prefix, keep_completed=1)
        q.enqueue("core.echo", job_id="done", remove_on_complete=False)
        q.enqueue("core.echo", job_id="gone", remove_on_complete=True)
        q.enqueue("core.echo", job_id="held", resource_id="printer")
        q.enqueue("core.echo", job_id="waits", resource_id="printer")
        q.enqueue("core.echo", job_id="later", delay=60)
        q.enqueue("core.echo", job_id="cancel-me", delay=60)
        q.enqueue("core.echo", job_id="stall-me")
        q.enqueue("core.echo", job_id="fail-me", retries=0)
        q.enqueue("core.echo", job_id="expire-me", retries=1, backoff_s=60)
        jobs = {j.id: j for j in q.claim(OWNER_A, 4, LONG_LEASE_MS)[0]}
        jobs |= {j.id: j for j in q.claim(OWNER_B, 10, 1)[0]}
        q.complete([(i, jobs[i].token, "null") for i in ("done", "gone")])
        q.fail([("fail-me", jobs["fail-me"].token, "e", "", True)])
        q.stall("stall-me")
        q.cancel("cancel-me")
        q.redis.rpush(q.keys.job_log("held"), "log line")
        q.pause()
        q.resume()
        q.sweep()
        q.reap_owner(OWNER_B, "gone")
        with core_worker(q, concurrency=1):
            with pytest.raises(JobFailed):
                q.enqueue("core.fail").result(timeout=10)
            q.enqueue("core.progress", {"steps": 1}).result(timeout=10)
            q.enqueue("core.span", {}).result(timeout=10)
        q.enqueue("core.echo", job_id="left-queued")

        keys = list(redis_client.scan_iter(match=f"{prefix}:*{{{name}}}*", count=1000))
        kinds = {key.split("}", 1)[1].split(":")[1] for key in keys}
        for expected in ("queued", "active", "completed", "failed", "delayed", "stalled", "job"):
            assert expected in kinds, f"workload made no {expected} key"
        assert "cancelled" in kinds and "rwait" in kinds and "stats" in kinds
        slots[name] = {key_slot(key.encode()) for key in keys}
        assert len(slots[name]) == 1, f"keys of queue {name} span slots {slots[name]}"

    all_keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    for key in all_keys:
        assert key.startswith(f"{prefix}:")
        if PROCESS_KEY.match(key):
            continue
        assert hash_tag(key) in ("emails", "reports"), f"{key} has no queue hash tag"
        assert key.startswith(f"{prefix}:{{{hash_tag(key)}}}:"), key
    assert slots["emails"] != slots["reports"]
