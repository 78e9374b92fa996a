"""The Lua transition scripts: read once from the package, called by SHA.

Each ``lua/<name>.lua`` is one state transition; ``lua/_lib.lua`` holds the helpers
they share and is prepended to each. redis-py's ``Script`` calls EVALSHA and
falls back to loading the script on NOSCRIPT (after a server restart or failover).

In a pipeline, redis-py's ``Script`` costs an extra round trip (``SCRIPT EXISTS``
before every execute); ``call`` queues a plain EVALSHA there instead and
``execute`` runs again, alone, any call that met NOSCRIPT.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

TRANSITIONS = (
    "enqueue",
    "claim",
    "complete",
    "fail",
    "extend",
    "release",
    "sweep",
    "reap",
    "stall",
    "retry",
    "cancel",
    "delete",
    "progress",
)


@cache
def script_source(name: str) -> str:
    """Full source of one transition: the shared library, then the script."""
    if name not in TRANSITIONS:
        raise KeyError(f"no Lua transition named {name!r}")
    lua = resources.files("supervisor") / "lua"
    return (lua / "_lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class Scripts:
    """The transition scripts registered on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts: dict[str, Script] = {
            name: client.register_script(script_source(name)) for name in TRANSITIONS
        }

    def call(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        client: redis.Redis | redis.client.Pipeline | None = None,
    ) -> Any:
        """Run transition ``name``; with ``client`` a pipeline, queue it there (run
        that pipeline with ``execute``)."""
        script = self._scripts[name]
        if isinstance(client, redis.client.Pipeline):
            client.evalsha(script.sha, len(keys), *keys, *args)
            queued: list[tuple[int, str, list[str], list[Any]]]
            queued = client.__dict__.setdefault(_QUEUED_CALLS, [])
            queued.append((len(client.command_stack) - 1, name, keys, args))
            return client
        return script(keys=keys, args=args, client=client)

    def execute(self, pipe: redis.client.Pipeline) -> list[Any]:
        """Execute ``pipe``. A transition that met NOSCRIPT (the server lost its script
        cache) is loaded and run again, alone; nothing else runs twice. Errors raise."""
        queued = pipe.__dict__.pop(_QUEUED_CALLS, [])
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for index, name, keys, args in queued:
            if isinstance(replies[index], redis.exceptions.NoScriptError):
                replies[index] = self._scripts[name](keys=keys, args=args)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


_QUEUED_CALLS = "_qsupervise_calls"  # pipeline attribute: transitions queued by call()
