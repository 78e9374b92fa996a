"""Admin subcommands of ``qsupervise``: look at queues and operate them from a shell.

``stats``, ``jobs``, ``show``, ``retry``, ``delete``, ``cancel``, ``pause``,
``resume`` and ``enqueue`` (docs/supervisor.md, "Admin commands"). They read and
change Redis only through :class:`supervisor.queue.Queue`, so every change is the
same Lua transition the API makes. Redis URL and prefix are resolved as the master
resolves them (flag, environment, config file, default); each subcommand also
takes ``--redis-url`` and ``--prefix`` after its name.

Every error is one line on stderr, ``qsupervise: error: ...``, never a traceback,
with the exit codes below.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
import redis

from . import keys as k
from .config import ConfigError, _hide_password, env_name, read_config_file
from .connection import REDIS_URL_ENV, ConfigurationError, connect, resolve_redis_url
from .job import Job, JobFailed, JobNotFound
from .master import EXIT_REDIS_UNREACHABLE, EXIT_USAGE
from .queue import EnqueueError, Queue

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

EXIT_FAILED = 1  # enqueue --wait: the job failed or was cancelled; a change lost a race
EXIT_WAIT_TIMEOUT = 124  # enqueue --wait: the job did not end in time (as timeout(1))
BATCH = 1000  # ids per Lua call (--all-failed, --all-stalled) and per listing page
_META = "qsupervise.admin"  # ctx.meta key: per-subcommand --redis-url / --prefix, the Admin


class AdminError(click.ClickException):
    """One line on stderr, ``qsupervise: error: <message>``, then exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"qsupervise: error: {self.format_message()}", err=True)


class AdminCommand(click.Command):
    """A subcommand whose usage errors and Redis errors are one line each."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise AdminError(f"{exc.format_message()} (see: {ctx.command_path} --help)") from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            where = ctx.meta.get(f"{_META}.shown_url", "Redis")
            raise AdminError(
                f"cannot reach Redis at {where}: {exc}", EXIT_REDIS_UNREACHABLE
            ) from None
        except redis.RedisError as exc:
            raise AdminError(f"Redis error: {exc}", EXIT_FAILED) from None
        except (ConfigError, ConfigurationError) as exc:
            raise AdminError(str(exc)) from None


# -- connection ----------------------------------------------------------------
def connection_settings(options: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, str]:
    """``(redis_url, prefix)`` as the master resolves them: flag, environment
    (``QSUPERVISE_REDIS_URL``, then ``REDIS_URL``), config file, default."""
    config_path = options.get("config") or environ.get(env_name("config"))
    from_file = read_config_file(config_path) if config_path else {}
    redis_url = (
        options.get("redis_url")
        or environ.get(env_name("redis_url"))
        or environ.get(REDIS_URL_ENV)
        or from_file.get("redis_url")
    )
    prefix = (
        options.get("prefix")
        or environ.get(env_name("prefix"))
        or from_file.get("prefix")
        or k.DEFAULT_PREFIX
    )
    return resolve_redis_url(redis_url), str(prefix)


@dataclass
class Admin:
    """A checked connection and the prefix the subcommand works in."""

    client: redis.Redis
    prefix: str

    def known_queues(self) -> list[str]:
        """The queue names of this prefix (the ``<prefix>:queues`` set), sorted."""
        return sorted(str(n) for n in self.client.smembers(k.ProcessKeys(self.prefix).queues))

    def queue(self, name: str, *, known: bool = True) -> Queue:
        """The queue ``name``; unless ``known=False``, it must be one of this prefix."""
        try:
            q = Queue(name, redis=self.client, prefix=self.prefix)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        if known and not self.client.sismember(q.process_keys.queues, name):
            names = self.known_queues()
            raise AdminError(
                f"unknown queue {name!r} under prefix {self.prefix!r} "
                f"(known: {', '.join(names) if names else 'none'})"
            )
        return q


def _admin(ctx: click.Context) -> Admin:
    """Connect (once per invocation) and check that Redis answers."""
    cached = ctx.meta.get(_META)
    if isinstance(cached, Admin):
        return cached
    options = dict(ctx.find_root().obj or {})
    for name in ("redis_url", "prefix"):
        if ctx.meta.get(f"{_META}.{name}"):
            options[name] = ctx.meta[f"{_META}.{name}"]
    redis_url, prefix = connection_settings(options, os.environ)
    ctx.meta[f"{_META}.shown_url"] = _hide_password(redis_url)
    try:
        k.QueueKeys(prefix, "default")  # validates the prefix
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    client = connect(redis_url)
    client.ping()  # unreachable: one line and exit 3 (AdminCommand.invoke)
    admin = Admin(client, prefix)
    ctx.meta[_META] = admin
    return admin


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value:
        ctx.meta[f"{_META}.{param.name}"] = value
    return value


def _common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--redis-url`` and ``--prefix`` after the subcommand name too (they override
    the group's); not passed to the command function."""
    func = click.option(
        "--prefix",
        metavar="PREFIX",
        expose_value=False,
        callback=_remember,
        help="key prefix of the queues (as qsupervise --prefix)",
    )(func)
    func = click.option(
        "--redis-url",
        metavar="URL",
        expose_value=False,
        callback=_remember,
        help="Redis URL (as qsupervise --redis-url)",
    )(func)
    return func


_json_option = click.option("--json", "as_json", is_flag=True, help="print JSON (for machines)")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# -- presenting jobs --------------------------------------------------------------
# Every job in --json output has these keys (defaults filled in, numbers decoded);
# times are ms since the epoch on Redis's clock, as in the job hash.
JOB_FIELDS: dict[str, Any] = {
    "id": None, "queue": None, "task": "", "state": "", "params": None, "priority": 0,
    "attempts": 0, "max_retries": -1, "deaths": 0, "failures": 0, "cancels": 0,
    "timeout": -1, "resource_id": None, "created_at": None, "run_at": None,
    "started_at": None, "finished_at": None, "result": None, "error": None,
    "traceback": None, "progress": None, "history": [],
}  # fmt: skip
_INT_FIELDS = frozenset({
    "priority", "attempts", "max_retries", "deaths", "failures", "cancels", "backoff_ms",
    "backoff_max_ms", "created_at", "run_at", "started_at", "finished_at",
})  # fmt: skip
_FLAG_FIELDS = frozenset({"remove_on_complete", "front"})
_TIME_FIELDS = ("created_at", "run_at", "started_at", "finished_at")


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # malformed: shown as stored
    return int(value) if value.is_integer() else value


def job_record(job: Job) -> dict[str, Any]:
    """Every field of ``job``, decoded, in a stable shape (``JOB_FIELDS`` first)."""
    record = dict(JOB_FIELDS, id=job.id, queue=job.queue.name, history=[])
    for name, value in job.to_dict().items():
        if name == "queue" or value == "":
            continue
        if name in _INT_FIELDS or name == "timeout":
            value = _number(value)
        elif name in _FLAG_FIELDS:
            value = value == "1"
        record[name] = value
    return record


def _when(ms: Any, *, precise: bool = False) -> str:
    if not isinstance(ms, int | float) or not ms:
        return "-"
    moment = dt.datetime.fromtimestamp(ms / 1000)
    return (
        moment.isoformat(" ", "milliseconds") if precise else moment.strftime("%Y-%m-%d %H:%M:%S")
    )


def _first_line(text: Any, limit: int = 120) -> str:
    lines = str(text or "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _print_table(table: Table) -> None:
    """A table at the terminal's width, or at its natural width when piped."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        width = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(highlight=False, width=max(width, 20))
    console.print(table)


def _plural(n: int, word: str = "job") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- stats ---------------------------------------------------------------------
@click.command(cls=AdminCommand)
@click.option(
    "--queue",
    "queue_names",
    multiple=True,
    metavar="QUEUE",
    help="only this queue (repeatable); default: every known queue",
)
@_json_option
@_common_options
@click.pass_context
def stats(ctx: click.Context, queue_names: tuple[str, ...], as_json: bool) -> None:
    """Counts per state, totals and paused flag of each queue.

    Every known queue of the prefix by default; processed and failures count
    since the queue began."""
    admin = _admin(ctx)
    names = list(dict.fromkeys(queue_names)) or admin.known_queues()
    queues = [admin.queue(name) for name in names]
    rows: dict[str, dict[str, Any]] = {
        q.name: {"counts": q.counts(), "totals": q.totals(), "paused": q.is_paused()}
        for q in queues
    }
    if as_json:
        _print_json({"prefix": admin.prefix, "queues": rows})
        return
    if not rows:
        click.echo(f"no queues under prefix {admin.prefix!r}")
        return
    from rich.table import Table

    table = Table(title=f"queues under prefix {admin.prefix!r}", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for name in (*k.STATES, "processed", "failures"):
        table.add_column(name, justify="right")
    table.add_column("paused")
    for name, row in rows.items():
        counts, totals = row["counts"], row["totals"]
        table.add_row(
            name,
            *(str(counts[state]) for state in k.STATES),
            str(totals["processed"]),
            str(totals["failures"]),
            "paused" if row["paused"] else "",
        )
    _print_table(table)


# -- jobs ------------------------------------------------------------------------
def _index_pages(q: Queue, state: str, newest: bool) -> Iterator[list[str]]:
    """Ids in ``state``, a page at a time, in index order (reversed if ``newest``).
    Queued includes the jobs waiting for their resource (after the others)."""
    sources = [q.keys.state_index(state)] + ([q.keys.blocked] if state == k.QUEUED else [])
    for key in reversed(sources) if newest else sources:
        start = 0
        while True:
            end = start + BATCH - 1
            page = (q.redis.zrevrange if newest else q.redis.zrange)(key, start, end)
            if not page:
                break
            yield [str(i) for i in page]
            if len(page) < BATCH:
                break
            start += BATCH


def _jobs_by_id(q: Queue, ids: Sequence[str]) -> dict[str, Job]:
    """The jobs of ``ids`` that exist, read in one pipeline."""
    with q.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(q.keys.job(job_id))
        rows = pipe.execute()
    return {
        job_id: Job(q, job_id, fields) for job_id, fields in zip(ids, rows, strict=True) if fields
    }


def list_jobs(q: Queue, state: str, *, task: str | None, limit: int, newest: bool) -> list[Job]:
    """Up to ``limit`` jobs (0: all) in ``state``, of ``task`` if given."""
    out: list[Job] = []
    for page in _index_pages(q, state, newest):
        found = _jobs_by_id(q, page)
        out += [
            job
            for job_id in page
            if (job := found.get(job_id)) is not None and (task is None or job.task == task)
        ]
        if limit and len(out) >= limit:
            return out[:limit]
    return out


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@click.option(
    "--state",
    type=click.Choice(k.STATES),
    default=k.FAILED,
    show_default=True,
    help="jobs in this state",
)
@click.option("--task", "task_name", metavar="NAME", help="only jobs of this task")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="at most this many jobs (0: all)",
)
@click.option(
    "--newest",
    is_flag=True,
    help="newest first (last finished, last to run); default: oldest first",
)
@_json_option
@_common_options
@click.pass_context
def jobs(
    ctx: click.Context,
    queue_name: str,
    state: str,
    task_name: str | None,
    limit: int,
    newest: bool,
    as_json: bool,
) -> None:
    """List the jobs of QUEUE in one state (failed by default)."""
    q = _admin(ctx).queue(queue_name)
    found = list_jobs(q, state, task=task_name, limit=limit, newest=newest)
    total = q.counts()[state]
    if as_json:
        _print_json(
            {
                "queue": q.name,
                "state": state,
                "task": task_name,
                "total": total,
                "jobs": [job_record(job) for job in found],
            }
        )
        return
    from rich.table import Table
    from rich.text import Text

    of_task = f" of task {task_name!r}" if task_name else ""
    title = f"{state} jobs{of_task} in queue {q.name!r}: {len(found)} shown, {total} {state}"
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("error")
    table.add_column("created", no_wrap=True)
    table.add_column("finished", no_wrap=True)
    for job in found:
        record = job_record(job)
        table.add_row(
            Text(job.id),
            Text(job.task),
            job.state,
            str(job.attempts),
            Text(_first_line(job.error)),
            _when(record["created_at"]),
            _when(record["finished_at"]),
        )
    _print_table(table)


# -- show -------------------------------------------------------------------------
def _existing(q: Queue, job_id: str) -> Job:
    job = q.get(job_id)
    if job is None:
        raise AdminError(f"job {job_id!r} not found in queue {q.name!r}")
    return job


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@click.argument("job_id")
@_json_option
@_common_options
@click.pass_context
def show(ctx: click.Context, queue_name: str, job_id: str, as_json: bool) -> None:
    """Show one job with every field.

    Params, result, error, traceback, history, progress and log lines included."""
    q = _admin(ctx).queue(queue_name)
    job = _existing(q, job_id)
    record = dict(job_record(job), logs=job.logs())
    if as_json:
        _print_json(record)
        return
    from rich.text import Text

    console = _console()
    console.print(Text(f"job {job.id} in queue {q.name}", style="bold"))
    sections = ("params", "result", "progress", "error", "traceback", "history", "logs")
    for name, value in record.items():
        if name in ("id", "queue", *sections) or (value is None and name in _TIME_FIELDS):
            continue
        if name in _TIME_FIELDS:
            value = f"{_when(value, precise=True)}  ({value})"
        elif name in ("max_retries", "timeout") and value == -1:
            value = "task default"
        elif value is None:
            value = "-"
        console.print(Text(f"  {name:<18} {value}"))
    for name in sections:
        value = record[name]
        if value in (None, [], ""):
            continue
        console.print(Text(name, style="bold"))
        if name == "history":
            for entry in value:
                entry = entry if isinstance(entry, dict) else {"error": entry}
                what = entry.get("error") or (
                    f"stalled: {entry['stalled']}" if "stalled" in entry else entry
                )
                attempt = f"attempt {entry['attempt']} " if "attempt" in entry else ""
                when = _when(entry.get("at"), precise=True)
                what = str(what).replace("\n", "\n    ")
                console.print(Text(f"  {attempt}at {when}: {what}"))
        elif name == "logs":
            for line in value:
                console.print(Text(f"  {line}"))
        elif name in ("error", "traceback"):
            console.print(Text("\n".join(f"  {line}" for line in str(value).splitlines())))
        else:
            text = json.dumps(value, indent=2, default=str)
            console.print(Text("\n".join(f"  {line}" for line in text.splitlines())))


# -- retry, delete, cancel -----------------------------------------------------------
def _checked_jobs(
    q: Queue, job_ids: Sequence[str], allowed: Sequence[str], verb: str, rule: str
) -> list[Job]:
    """The jobs of ``job_ids`` (each once), all of them in an ``allowed`` state;
    otherwise one error about the first that is not, and nothing is changed."""
    ids = list(dict.fromkeys(job_ids))
    found = _jobs_by_id(q, ids)
    for job_id in ids:
        job = found.get(job_id)
        if job is None:
            raise AdminError(f"job {job_id!r} not found in queue {q.name!r}; nothing {verb}")
        if job.state not in allowed:
            raise AdminError(
                f"job {job_id!r} is {job.state or 'malformed'}: {rule}; nothing {verb}"
            )
    return [found[job_id] for job_id in ids]


def _apply(q: Queue, jobs_: Sequence[Job], action: Callable[[str], bool], verb: str) -> None:
    """Run ``action`` on each job; report how many changed, and one error line for
    those another process changed first."""
    missed = [job.id for job in jobs_ if not action(job.id)]
    click.echo(f"{verb} {_plural(len(jobs_) - len(missed))} in queue {q.name}")
    if missed:
        were = "was" if len(missed) == 1 else "were"
        raise AdminError(
            f"{_plural(len(missed))} changed state meanwhile and {were} not {verb}: "
            f"{', '.join(missed)}",
            EXIT_FAILED,
        )


def _move_all(move: Callable[[int], int], total: int) -> int:
    """Call ``move(limit)`` (oldest first, at most BATCH a call) until ``total``
    jobs moved or none is left; jobs that come back meanwhile are not moved twice."""
    moved = 0
    while moved < total:
        n = move(min(BATCH, total - moved))
        if n == 0:
            break
        moved += n
    return moved


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option("--all-failed", is_flag=True, help="every failed job of QUEUE")
@click.option("--all-stalled", is_flag=True, help="every stalled job of QUEUE")
@_common_options
@click.pass_context
def retry(
    ctx: click.Context,
    queue_name: str,
    job_ids: tuple[str, ...],
    all_failed: bool,
    all_stalled: bool,
) -> None:
    """Queue failed, stalled or cancelled jobs again.

    Give JOB_IDs (all are checked before any is retried), --all-failed or
    --all-stalled."""
    if (bool(job_ids) + all_failed + all_stalled) != 1:
        raise AdminError("give job ids, --all-failed or --all-stalled (one of them)")
    q = _admin(ctx).queue(queue_name)
    if all_failed or all_stalled:
        state = k.FAILED if all_failed else k.STALLED
        move = q.retry_failed if all_failed else q.retry_stalled
        moved = _move_all(lambda limit: move(limit=limit), q.counts()[state])
        click.echo(f"retried {_plural(moved)} in queue {q.name} ({state})")
        return
    allowed = (k.FAILED, k.STALLED, k.CANCELLED)
    rule = "only failed, stalled or cancelled jobs can be retried"
    found = _checked_jobs(q, job_ids, allowed, "retried", rule)
    _apply(q, found, q.retry, "retried")


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option("--all-failed", is_flag=True, help="every failed job of QUEUE")
@_common_options
@click.pass_context
def delete(ctx: click.Context, queue_name: str, job_ids: tuple[str, ...], all_failed: bool) -> None:
    """Delete jobs that are not active.

    Give JOB_IDs (all are checked before any is deleted; a queued job is
    retracted) or --all-failed."""
    if bool(job_ids) == all_failed:
        raise AdminError("give job ids or --all-failed (one of them)")
    q = _admin(ctx).queue(queue_name)
    if all_failed:
        moved = _move_all(lambda limit: q.delete_failed(limit=limit), q.counts()[k.FAILED])
        click.echo(f"deleted {_plural(moved)} in queue {q.name} (failed)")
        return
    allowed = tuple(s for s in k.STATES if s != k.ACTIVE)
    rule = "a worker holds it, only jobs that are not active can be deleted"
    found = _checked_jobs(q, job_ids, allowed, "deleted", rule)
    _apply(q, found, q.delete, "deleted")


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@_common_options
@click.pass_context
def cancel(ctx: click.Context, queue_name: str, job_ids: tuple[str, ...]) -> None:
    """Cancel queued or delayed jobs.

    They end in cancelled (retry queues them again); all are checked before any
    is cancelled."""
    q = _admin(ctx).queue(queue_name)
    rule = "only queued or delayed jobs can be cancelled"
    found = _checked_jobs(q, job_ids, (k.QUEUED, k.DELAYED), "cancelled", rule)
    _apply(q, found, q.cancel, "cancelled")


# -- pause, resume -----------------------------------------------------------------
@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@_common_options
@click.pass_context
def pause(ctx: click.Context, queue_name: str) -> None:
    """Stop claiming from QUEUE, fleet-wide.

    Running jobs go on; enqueueing still works."""
    q = _admin(ctx).queue(queue_name)
    q.pause()
    click.echo(f"paused queue {q.name}")


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@_common_options
@click.pass_context
def resume(ctx: click.Context, queue_name: str) -> None:
    """Claim from QUEUE again (wakes idle workers at once)."""
    q = _admin(ctx).queue(queue_name)
    q.resume()
    click.echo(f"resumed queue {q.name}")


# -- enqueue -------------------------------------------------------------------------
def _parse_params(text: str | None) -> Any:
    if text is None:
        return None
    if text == "-":
        text = click.get_text_stream("stdin").read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AdminError(f"PARAMS_JSON is not valid JSON: {exc}") from None


def _parse_priority(text: str | None) -> int | str:
    if text is None:
        return 0
    try:
        return int(text)
    except ValueError:
        return text  # a name (high, low, ...); Queue checks it


@click.command(cls=AdminCommand)
@click.argument("queue_name", metavar="QUEUE")
@click.argument("task_name", metavar="TASK")
@click.argument("params_json", metavar="[PARAMS_JSON]", required=False)
@click.option("--job-id", metavar="ID", help="your id (unique until the job finishes)")
@click.option(
    "--priority",
    metavar="PRIORITY",
    help="low, normal, medium, high, critical or an int in -100..100  [default: 0]",
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="run no sooner than this many seconds from now",
)
@click.option(
    "--retries", type=int, metavar="N", help="retries after the first attempt [default: the task's]"
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="fail a run that takes longer (0: none)  [default: the task's]",
)
@click.option("--resource-id", metavar="ID", help="one running job per resource, fleet-wide")
@click.option(
    "--wait",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="wait this long for the outcome and print the result",
)
@_json_option
@_common_options
@click.pass_context
def enqueue(
    ctx: click.Context,
    queue_name: str,
    task_name: str,
    params_json: str | None,
    job_id: str | None,
    priority: str | None,
    delay: float | None,
    retries: int | None,
    timeout: float | None,
    resource_id: str | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """Enqueue one job of TASK on QUEUE.

    PARAMS_JSON is any JSON value ('-': read it from stdin; none given: {}). With
    --wait, print the result; exit 1 if the job failed or was cancelled, 124 if it
    did not end in time."""
    params = _parse_params(params_json)
    q = _admin(ctx).queue(queue_name, known=False)
    try:
        job = q.enqueue(
            task_name,
            params,
            job_id=job_id,
            priority=_parse_priority(priority),
            delay=delay or None,
            retries=retries,
            timeout=timeout,
            resource_id=resource_id,
        )
    except EnqueueError as exc:
        raise AdminError(str(exc)) from None
    out: dict[str, Any] = {
        "id": job.id,
        "queue": q.name,
        "task": job.task,
        "state": job.state,
        "duplicate": job.duplicate,
    }
    if not as_json:
        if job.duplicate:
            click.echo(
                f"job {job.id} is already in queue {q.name} ({job.state}): not enqueued again"
            )
        else:
            click.echo(f"enqueued job {job.id} in queue {q.name} ({job.state})")
    if wait is None:
        if as_json:
            _print_json(out)
        return
    try:
        out["result"] = job.result(timeout=wait)
        out["state"] = job.state
    except JobFailed as exc:
        out.update(state=exc.state, error=exc.reason)
        if as_json:
            _print_json(out)
        raise AdminError(str(exc), EXIT_FAILED) from None
    except TimeoutError as exc:
        out["state"] = job.state
        if as_json:
            _print_json(out)
        raise AdminError(str(exc), EXIT_WAIT_TIMEOUT) from None
    except JobNotFound as exc:
        raise AdminError(f"{exc} (deleted while waiting)", EXIT_FAILED) from None
    if as_json:
        _print_json(out)
    else:
        click.echo(f"result: {json.dumps(out['result'], default=str)}")


@click.command(cls=AdminCommand)
@_common_options
@click.pass_context
def ps(ctx: click.Context) -> None:
    """List live masters and children (from their heartbeats in Redis)."""
    from supervisor.heartbeat import ProcessRegistry

    admin = _admin(ctx)
    for proc in ProcessRegistry(admin.client, admin.prefix).live():
        details = " ".join(
            f"{key}={proc[key]}"
            for key in ("generation", "children", "busy", "done", "failed", "state", "queues")
            if key in proc
        )
        click.echo(f"{proc.get('role', '?'):6} {proc['id']} {details}")


ADMIN_COMMANDS: tuple[click.Command, ...] = (
    ps, stats, jobs, show, retry, delete, cancel, pause, resume, enqueue,
)  # fmt: skip


def register_admin_commands(group: click.Group) -> None:
    """Hang the admin subcommands on the ``qsupervise`` group."""
    for command in ADMIN_COMMANDS:
        group.add_command(command)
