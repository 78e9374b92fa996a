"""Bounded waiting for tests: poll a condition, never sleep as synchronisation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05


def wait_for(predicate: Callable[[], T], timeout: float, message: str | Callable[[], str]) -> T:
    """Return the first truthy value of ``predicate()``; fail with ``message`` after
    ``timeout`` seconds. ``message`` may be a callable, to report the last state."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s: {text}")
        time.sleep(POLL_S)  # polling interval, not synchronisation
