"""Tasks: functions a worker can run, declared with ``@task`` in a task module.

A producer enqueues by task name and never needs to import the task code; only
workers load it, with ``load_app("tasks,more.tasks")``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, TypeVar

TASK_ATTRIBUTE = "__qsupervise_task__"
BACKOFF_TYPES = ("fixed", "exponential")

F = TypeVar("F", bound=Callable[..., Any])


class AppLoadError(Exception):
    """Task code could not be imported; the message is one readable line."""


@dataclass(frozen=True)
class TaskSpec:
    """A task's name, function and defaults for jobs that do not set their own."""

    name: str
    func: Callable[..., Any]
    timeout: float | None = None
    retries: int = 3
    backoff: str = "exponential"
    backoff_s: float = 1.0
    backoff_max_s: float = 3600.0
    heartbeat_timeout: float | None = None
    wants_job: bool = False

    def defaults_json(self) -> str:
        """The defaults as the Lua scripts read them (the ``<prefix>:{Q}:tasks`` hash)."""
        return json.dumps(
            {
                "retries": self.retries,
                "backoff_type": self.backoff,
                "backoff_ms": int(self.backoff_s * 1000),
                "backoff_max_ms": int(self.backoff_max_s * 1000),
                "timeout": self.timeout or 0,
            }
        )

    def describe(self) -> dict[str, Any]:
        info = asdict(self)
        info["func"] = f"{self.func.__module__}.{self.func.__qualname__}"
        return info


def task(
    name: str | None = None,
    *,
    timeout: float | None = None,
    retries: int = 3,
    backoff: str = "exponential",
    backoff_s: float = 1.0,
    backoff_max_s: float = 3600.0,
    heartbeat_timeout: float | None = None,
) -> Callable[[F], F]:
    """Declare a task: ``@task(name="echo", timeout=30, retries=2)``.

    The function takes the job's params (a JSON object decoded to a dict) and may
    take a second argument, the running ``Job``, for ``job.progress()``,
    ``job.log()`` and ``job.heartbeat()``. It returns a JSON-serialisable result.
    ``retries`` and ``backoff`` (``"fixed"`` or ``"exponential"``, base ``backoff_s``,
    capped at ``backoff_max_s``) apply to jobs that do not set their own.
    ``heartbeat_timeout``: a running job that goes this many seconds without
    ``job.heartbeat()`` or ``job.progress()`` is failed as hung (and retried if
    attempts remain), without waiting for its ``timeout``.
    """
    if backoff not in BACKOFF_TYPES:
        raise ValueError(f"backoff must be one of {BACKOFF_TYPES}, not {backoff!r}")
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if heartbeat_timeout is not None and heartbeat_timeout <= 0:
        raise ValueError("heartbeat_timeout must be > 0 seconds")

    def decorate(func: F) -> F:
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        spec = TaskSpec(
            name=name or func.__name__,
            func=func,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            heartbeat_timeout=heartbeat_timeout,
            wants_job=len(params) >= 2,
        )
        setattr(func, TASK_ATTRIBUTE, spec)
        return func

    return decorate


class TaskRegistry:
    """Task specs by name, as found in the loaded task modules."""

    def __init__(self, specs: list[TaskSpec] | None = None) -> None:
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs or []:
            self.add(spec)

    def add(self, spec: TaskSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise AppLoadError(
                f"task name {spec.name!r} is declared twice: "
                f"{existing.describe()['func']} and {spec.describe()['func']}"
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def add_module(self, module: ModuleType) -> None:
        for value in vars(module).values():
            spec = getattr(value, TASK_ATTRIBUTE, None)
            if isinstance(spec, TaskSpec):
                self.add(spec)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except SyntaxError as exc:
        raise AppLoadError(
            f"cannot import task module {name!r}: syntax error in {exc.filename} "
            f"line {exc.lineno}: {exc.msg}"
        ) from None
    except ImportError as exc:
        raise AppLoadError(f"cannot import task module {name!r}: {exc}") from None
    except Exception as exc:  # any error raised while the module body runs
        raise AppLoadError(
            f"task module {name!r} failed on import: {type(exc).__name__}: {exc}"
        ) from None


def load_app(app: str | list[str]) -> TaskRegistry:
    """Import task modules (comma-separated import paths; packages include their
    submodules) and collect their ``@task`` functions. Raises ``AppLoadError``.
    """
    names = [n.strip() for n in (app.split(",") if isinstance(app, str) else app) if n.strip()]
    if not names:
        raise AppLoadError("no task modules given (--app)")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: task modules in the working directory
    registry = TaskRegistry()
    for name in names:
        module = _import(name)
        registry.add_module(module)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{name}."):
            registry.add_module(_import(info.name))
    if not len(registry):
        raise AppLoadError(f"no @task functions found in {', '.join(names)}")
    return registry
