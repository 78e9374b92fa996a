"""The process registry: heartbeats of masters and children, in Redis.

Each live process keeps a hash ``<prefix>:proc:<process id>`` (TTL'd, so a
process that dies silently disappears) and a score in the ``<prefix>:procs``
sorted set (last heartbeat, Redis clock, ms). The hash carries ``seq``, a
counter bumped on every beat: the master watches it change, on its own
monotonic clock, to decide that a child is alive; no two hosts' clocks are ever
compared. Key names come from :class:`supervisor.keys.ProcessKeys`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from .keys import ProcessKeys

FieldValue = str | int | float


def redis_time_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class ProcessRegistry:
    """Writes and reads heartbeats; one instance per process and connection."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = ProcessKeys(prefix)

    def beat(self, process_id: str, fields: Mapping[str, FieldValue], ttl_s: float) -> int:
        """Record one heartbeat; returns the new ``seq``."""
        now_ms = redis_time_ms(self.client)
        key = self.keys.process(process_id)
        pipe = self.client.pipeline(transaction=True)
        mapping: dict[Any, Any] = {**fields, "beat_ms": now_ms}
        pipe.hset(key, mapping=mapping)
        pipe.hincrby(key, "seq", 1)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))
        pipe.zadd(self.keys.registry, {process_id: now_ms})
        result = pipe.execute()
        return int(result[1])

    def seqs(self, process_ids: Iterable[str]) -> dict[str, int | None]:
        """The current ``seq`` of each process (None: no live heartbeat)."""
        ids = list(process_ids)
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for process_id in ids:
            pipe.hget(self.keys.process(process_id), "seq")
        values = pipe.execute()
        pairs = zip(ids, values, strict=True)
        return {pid: (int(v) if v is not None else None) for pid, v in pairs}

    def read(self, process_id: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            str(k): v for k, v in self.client.hgetall(self.keys.process(process_id)).items()
        }
        if "current" in data:
            with contextlib.suppress(ValueError):
                data["current"] = json.loads(data["current"])
        return data

    def live(self) -> list[dict[str, Any]]:
        """Every process with a live heartbeat hash (for admin tools)."""
        out = []
        for process_id in self.client.zrange(self.keys.registry, 0, -1):
            data = self.read(str(process_id))
            if data:
                data["id"] = process_id
                out.append(data)
        return out

    def remove(self, process_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.process(process_id))
        pipe.zrem(self.keys.registry, process_id)
        pipe.execute()

    def prune(self, older_than_s: float) -> int:
        """Drop registry entries whose last beat is older than ``older_than_s``."""
        cutoff = redis_time_ms(self.client) - int(older_than_s * 1000)
        return int(self.client.zremrangebyscore(self.keys.registry, "-inf", cutoff))
