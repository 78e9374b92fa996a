"""Settings of the ``qsupervise`` supervisor: each one defined once, here.

A setting is a field of :class:`Config`; its metadata gives the help text and
the short flag. From that one definition come the CLI flag (``--heartbeat-timeout``),
the environment variable (``QSUPERVISE_HEARTBEAT_TIMEOUT``), the key of the
optional TOML config file (``heartbeat_timeout`` or ``heartbeat-timeout``, at the
top level or under a ``[qsupervise]`` table) and the docs in docs/supervisor.md.

Precedence, highest first: CLI flag, environment, config file, default.
``REDIS_URL`` is read when ``QSUPERVISE_REDIS_URL`` is not set.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomllib

from .keys import DEFAULT_PREFIX

ENV_PREFIX = "QSUPERVISE_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
LOGGER_NAME = "qsupervise"


class ConfigError(ValueError):
    """A setting is invalid; the message is one line meant for the user."""


def _setting(
    default: Any, help: str, *, short: str | None = None, metavar: str | None = None
) -> Any:
    return field(default=default, metadata={"help": help, "short": short, "metavar": metavar})


@dataclass(frozen=True)
class Config:
    """The effective settings of one master (and of the children it forks)."""

    app: str = _setting(
        "", "task modules each child imports after the fork, comma-separated (tasks,billing.tasks)",
        short="-a", metavar="MODULES",
    )
    queues: str = _setting(
        "default",
        "queues in strict priority order (critical,default,low) or weighted (high:3,low:1)",
        short="-q", metavar="QUEUES",
    )
    children: int = _setting(2, "child processes to keep running", short="-c", metavar="N")
    threads: int = _setting(10, "worker threads per child (jobs run at once per child)",
                            short="-t", metavar="M")
    prefetch: int | None = _setting(
        None, "jobs a child claims ahead of its free threads (default: adaptive; 0: none)",
        metavar="N")
    redis_url: str | None = _setting(
        None, "redis://, rediss:// or unix:// URL (falls back to REDIS_URL)", metavar="URL")
    prefix: str = _setting(DEFAULT_PREFIX, "key prefix (namespace) of the queues in Redis")
    heartbeat_interval: float = _setting(
        5.0, "seconds between heartbeats of children and master", metavar="SECONDS")
    heartbeat_timeout: float = _setting(
        30.0, "a child silent this long (hung, stopped) is killed with SIGKILL", metavar="SECONDS")
    graceful_timeout: float = _setting(
        30.0, "on TERM, HUP or recycling: how long running jobs may take to finish",
        metavar="SECONDS")
    lease_timeout: float = _setting(
        30.0, "lease of a claimed job; kept extended while its child lives", metavar="SECONDS")
    sweep_interval: float = _setting(
        30.0, "seconds between sweeps for jobs whose lease expired (any host)", metavar="SECONDS")
    max_deaths: int = _setting(
        3, "a job in flight when its child died this often goes to failed (poison pill)",
        metavar="N")
    max_jobs_per_child: int = _setting(
        0, "recycle a child after this many jobs (0: never)", metavar="N")
    max_memory_per_child: int = _setting(
        0, "recycle a child whose RSS exceeds this many MiB (0: never)", metavar="MIB")
    log_file: str | None = _setting(None, "log to this file instead of stderr (USR1 reopens it)",
                                    metavar="PATH")
    log_level: str = _setting("info", "debug, info, warning, error or critical", metavar="LEVEL")
    config: str | None = _setting(None, "TOML file with any of these settings", metavar="PATH")

    # -- derived -----------------------------------------------------------
    @property
    def queue_names(self) -> list[str]:
        return [name for name, _ in parse_queues(self.queues)]

    @property
    def weights(self) -> dict[str, int] | None:
        """Queue weights, or None for strict priority (no weight given)."""
        pairs = parse_queues(self.queues)
        if all(weight is None for _, weight in pairs):
            return None
        return {name: (weight if weight is not None else 1) for name, weight in pairs}

    @property
    def app_modules(self) -> list[str]:
        return [m.strip() for m in self.app.split(",") if m.strip()]

    def describe(self) -> str:
        """The effective config as one log line (no passwords)."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "redis_url" and value:
                value = _hide_password(value)
            parts.append(f"{f.name}={value}")
        return " ".join(parts)


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Config)
# The type of each setting comes from its annotation ("int", "float", "str | None").
_TYPES: dict[str, type] = {
    f.name: {"int": int, "float": float}.get(str(f.type).split(" ")[0], str) for f in SETTINGS
}


def setting_type(name: str) -> type:
    return _TYPES[name]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def parse_queues(spec: str) -> list[tuple[str, int | None]]:
    """``"high:3,low:1"`` -> ``[("high", 3), ("low", 1)]``; ``"a,b"`` -> weights None."""
    pairs: list[tuple[str, int | None]] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, weight_text = item.partition(":")
        weight: int | None = None
        if sep:
            try:
                weight = int(weight_text)
            except ValueError:
                raise ConfigError(f"queue weight must be an integer: {item!r}") from None
            if weight < 1:
                raise ConfigError(f"queue weight must be at least 1: {item!r}")
        if any(c in name for c in "{}\n\r\0 ") or not name:
            raise ConfigError(f"invalid queue name {name!r}")
        pairs.append((name, weight))
    if not pairs:
        raise ConfigError("no queue given: --queues critical,default,low")
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"a queue is named twice in {spec!r}")
    return pairs


def _convert(name: str, value: Any, source: str) -> Any:
    kind = _TYPES[name]
    if value is None:
        return None
    if isinstance(value, str) and kind is not str:
        value = value.strip()
    try:
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {name} must be {'an integer' if kind is int else 'a number'}, "
            f"not {value!r}"
        ) from None


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("qsupervise", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [qsupervise] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in _TYPES or name == "config":
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        if name == "queues" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        values[name] = _convert(name, value, f"config file {path}")
    return values


def load_config(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Merge CLI values (None = not given), environment, config file and defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = cli.get("config") or env.get(env_name("config"))
    if config_path:
        values.update(read_config_file(config_path))
        values["config"] = config_path
    for f in SETTINGS:
        if f.name == "config":
            continue
        raw = env.get(env_name(f.name))
        if raw is None and f.name == "redis_url":
            raw = env.get("REDIS_URL")
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, raw, env_name(f.name))
    for name, value in cli.items():
        if value is not None and name in _TYPES:
            values[name] = _convert(name, value, flag_name(name))
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    if not config.app_modules:
        raise ConfigError("no task modules given: --app tasks (or QSUPERVISE_APP)")
    parse_queues(config.queues)
    checks: list[tuple[bool, str]] = [
        (config.children >= 0, "--children must be 0 or more"),
        (config.threads >= 1, "--threads must be at least 1"),
        (config.prefetch is None or config.prefetch >= 0, "--prefetch must be 0 or more"),
        (config.heartbeat_interval > 0, "--heartbeat-interval must be positive"),
        (config.heartbeat_timeout > config.heartbeat_interval,
         "--heartbeat-timeout must be longer than --heartbeat-interval"),
        (config.graceful_timeout >= 0, "--graceful-timeout must be 0 or more"),
        (config.lease_timeout > 0, "--lease-timeout must be positive"),
        (config.sweep_interval > 0, "--sweep-interval must be positive"),
        (config.max_deaths >= 1, "--max-deaths must be at least 1"),
        (config.max_jobs_per_child >= 0, "--max-jobs-per-child must be 0 or more"),
        (config.max_memory_per_child >= 0, "--max-memory-per-child must be 0 or more"),
        (config.log_level.lower() in LOG_LEVELS,
         f"--log-level must be one of {', '.join(LOG_LEVELS)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


# -- logging -----------------------------------------------------------------
def configure_logging(config: Config) -> logging.Logger:
    """One handler on the ``qsupervise`` logger: stderr or --log-file."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler
    if config.log_file:
        handler = logging.FileHandler(config.log_file, delay=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(config.log_level.upper())
    logger.propagate = False
    return logger


def reopen_log_files() -> None:
    """USR1: close and reopen file handlers (after logrotate moved the file)."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()


ConfigLoader = Callable[[], Config]
