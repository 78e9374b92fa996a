"""The Lua transition scripts: read once from the package, called by SHA.

Each ``lua/<name>.lua`` is one state transition; ``lua/_lib.lua`` holds the helpers
they share and is prepended to each. redis-py's ``Script`` calls EVALSHA and
falls back to loading the script on NOSCRIPT (after a server restart or failover).
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
        """Run transition ``name``; with ``client`` a pipeline, queue it there."""
        return self._scripts[name](keys=keys, args=args, client=client)
