"""The admin subcommands of ``qsupervise`` (supervisor/admin.py) against a real,
private redis-server: through click's CliRunner, and as the real command
(``python -m supervisor.cli``) for the entry point, the exit codes and stdin.

Every error must be one line on stderr, ``qsupervise: error: ...``, and the exit
code of docs/supervisor.md ("Admin commands"); never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from store_helpers import LONG_LEASE_MS, OWNER_A, core_worker, index_of

from supervisor import JobFailed, Queue, admin
from supervisor import keys as k
from supervisor.cli import cli
from supervisor.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
# Settings that would otherwise leak in from the environment running the tests.
ISOLATED_ENV: dict[str, str | None] = {
    "REDIS_URL": None,
    "QSUPERVISE_REDIS_URL": None,
    "QSUPERVISE_PREFIX": None,
    "QSUPERVISE_CONFIG": None,
}

Run = Callable[..., Result]


@pytest.fixture
def q(redis_client: redis.Redis, prefix: str) -> Queue:
    return Queue("default", redis=redis_client, prefix=prefix)


@pytest.fixture
def run(redis_url: str, prefix: str) -> Run:
    """``run("stats", "--json")``: the CLI in-process, on this test's server and prefix."""

    def invoke(*args: str, input: str | None = None) -> Result:
        runner = CliRunner(env=ISOLATED_ENV)
        return runner.invoke(
            cli,
            ["--redis-url", redis_url, "--prefix", prefix, *args],
            input=input,
            prog_name="qsupervise",
        )

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.stdout


def ok_json(result: Result) -> Any:
    return json.loads(ok(result))


def assert_error(
    result: Result | subprocess.CompletedProcess[str], code: int, *fragments: str
) -> str:
    """Exactly one line on stderr, ``qsupervise: error: ...``, with ``fragments``."""
    if isinstance(result, Result):
        exit_code, stderr = result.exit_code, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"an exception escaped: {result.exception!r}"
        )
    else:
        exit_code, stderr = result.returncode, result.stderr
    assert exit_code == code, f"exit {exit_code}, not {code}: {stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1, f"not one line on stderr: {stderr!r}"
    assert lines[0].startswith("qsupervise: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert "Traceback" not in stderr
    return lines[0]


def fail_jobs(q: Queue, ids: list[str], task: str = "core.echo") -> None:
    """Enqueue ``ids``, claim them and fail them (in order); no other job of ``q``
    may be ready."""
    q.enqueue_many([{"task": task, "job_id": i, "retries": 0} for i in ids])
    claimed = {j.id: j for j in q.claim(OWNER_A, len(ids), LONG_LEASE_MS)[0]}
    outcomes = [
        (i, claimed[i].token, f"ValueError: boom {i} [red]", f"Traceback {i}", True) for i in ids
    ]
    assert q.fail(outcomes) == ["failed"] * len(ids)


def states(q: Queue, *ids: str) -> list[str | None]:
    return [job.state if (job := q.get(i)) is not None else None for i in ids]


# -- stats -------------------------------------------------------------------------
def test_stats_counts_totals_and_paused_flag_per_queue(q: Queue, run: Run) -> None:
    fail_jobs(q, ["f1"])
    q.enqueue("core.echo", job_id="waiting")
    low = Queue("low", redis=q.redis, prefix=q.keys.prefix)
    low.enqueue("core.echo", delay=60)
    low.pause()

    data = ok_json(run("stats", "--json"))
    assert data["prefix"] == q.keys.prefix
    assert sorted(data["queues"]) == ["default", "low"]
    assert data["queues"]["default"] == {
        "counts": {**dict.fromkeys(k.STATES, 0), "queued": 1, "failed": 1},
        "totals": {"processed": 0, "failures": 1},
        "paused": False,
    }
    assert data["queues"]["low"]["counts"]["delayed"] == 1
    assert data["queues"]["low"]["paused"] is True

    table = ok(run("stats"))
    assert "default" in table and "low" in table and "paused" in table
    assert all(state in table for state in k.STATES)

    only = ok_json(run("stats", "--queue", "low", "--json"))
    assert list(only["queues"]) == ["low"]
    assert_error(run("stats", "--queue", "nope"), 2, "unknown queue 'nope'", "default, low")


def test_stats_of_a_prefix_without_queues(run: Run) -> None:
    assert "no queues under prefix" in ok(run("stats"))
    assert ok_json(run("stats", "--json"))["queues"] == {}


# -- jobs ----------------------------------------------------------------------------
def test_jobs_lists_one_state_with_task_filter_limit_and_order(
    q: Queue, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_jobs(q, ["f1", "f2", "f3"])
    fail_jobs(q, ["f4"], task="core.fail")
    q.enqueue("core.echo", job_id="holder", resource_id="res")
    q.enqueue("core.echo", job_id="waiter", resource_id="res")
    q.claim(OWNER_A, 10, LONG_LEASE_MS)
    assert index_of(q, "waiter") == ["blocked"]
    q.enqueue("core.echo", {"n": 1}, job_id="q1")

    listing = ok_json(run("jobs", "default", "--json"))  # failed by default
    assert (listing["queue"], listing["state"], listing["total"]) == ("default", "failed", 4)
    assert [j["id"] for j in listing["jobs"]] == ["f1", "f2", "f3", "f4"]
    first = listing["jobs"][0]
    assert first["task"] == "core.echo" and first["state"] == "failed"
    assert first["attempts"] == 1 and first["error"] == "ValueError: boom f1 [red]"
    assert isinstance(first["created_at"], int) and isinstance(first["finished_at"], int)
    assert set(admin.JOB_FIELDS) <= set(first)

    def ids(*args: str) -> list[str]:
        return [j["id"] for j in ok_json(run("jobs", "default", "--json", *args))["jobs"]]

    assert ids("--task", "core.fail") == ["f4"]
    assert ids("--limit", "2") == ["f1", "f2"]
    assert ids("--newest", "--limit", "2") == ["f4", "f3"]
    assert ids("--state", "queued") == ["q1", "waiter"], "jobs waiting for a resource are queued"
    assert ids("--state", "active") == ["holder"]
    assert ids("--state", "stalled") == []

    monkeypatch.setattr(admin, "BATCH", 2)  # page through the index
    assert ids("--task", "core.fail", "--limit", "1") == ["f4"]
    assert ids("--limit", "0") == ["f1", "f2", "f3", "f4"]
    assert ids("--newest", "--limit", "3") == ["f4", "f3", "f2"]

    table = ok(run("jobs", "default"))
    assert "failed jobs in queue 'default': 4 shown, 4 failed" in table
    assert "f3" in table and "ValueError: boom f3 [red]" in table, "errors are not markup"

    assert_error(run("jobs", "nope"), 2, "unknown queue 'nope'")
    assert_error(run("jobs", "default", "--state", "bogus"), 2, "--state", "jobs --help")
    assert_error(run("jobs"), 2, "Missing argument 'QUEUE'")


# -- show --------------------------------------------------------------------------------
def test_show_a_job_run_by_a_real_worker_with_every_field(q: Queue, run: Run) -> None:
    with core_worker(q):
        done = q.enqueue("core.progress", {"steps": 2}, job_id="p1")
        assert done.result(timeout=10) == {"steps": 2}
        failed = q.enqueue("core.fail", {"message": "no luck"}, job_id="x1")
        with pytest.raises(JobFailed):
            failed.result(timeout=10)

    record = ok_json(run("show", "default", "p1", "--json"))
    assert record["id"] == "p1" and record["queue"] == "default"
    assert (record["task"], record["state"], record["attempts"]) == (
        "core.progress",
        "completed",
        1,
    )
    assert record["params"] == {"steps": 2}
    assert record["result"] == {"steps": 2}
    assert record["progress"] == {"done": 2, "total": 2, "data": {"step": 2}}
    assert record["logs"] == ["step 1/2", "step 2/2"]
    assert record["history"] == [] and record["error"] is None
    assert record["finished_at"] >= record["started_at"] >= record["created_at"] > 0

    text = ok(run("show", "default", "p1"))
    for fragment in (
        "job p1 in queue default",
        "completed",
        "result",
        '"steps": 2',
        "progress",
        "logs",
        "step 2/2",
    ):
        assert fragment in text, fragment

    record = ok_json(run("show", "default", "x1", "--json"))
    assert record["state"] == "failed"
    assert record["error"] == "ValueError: no luck"
    assert "Traceback" in record["traceback"] and "no luck" in record["traceback"]
    assert [h["error"] for h in record["history"]] == ["ValueError: no luck"]
    text = ok(run("show", "default", "x1"))
    assert "traceback" in text and "history" in text and "attempt 1 at" in text

    assert_error(run("show", "default", "nope"), 2, "job 'nope' not found in queue 'default'")
    assert_error(run("show", "nope", "p1"), 2, "unknown queue 'nope'")


# -- retry, delete, cancel ------------------------------------------------------------
def test_retry_by_id_checks_every_id_first(q: Queue, run: Run) -> None:
    fail_jobs(q, ["f1", "f2"])
    q.enqueue("core.echo", job_id="c1")
    assert q.cancel("c1")

    assert "retried 2 jobs in queue default" in ok(run("retry", "default", "f1", "c1", "f1"))
    assert states(q, "f1", "c1", "f2") == ["queued", "queued", "failed"]

    assert_error(
        run("retry", "default", "f2", "nope"), 2, "job 'nope' not found", "nothing retried"
    )
    assert_error(
        run("retry", "default", "f2", "f1"),
        2,
        "job 'f1' is queued",
        "only failed, stalled or cancelled jobs can be retried",
    )
    assert states(q, "f2") == ["failed"], "a refused batch changes nothing"

    assert_error(run("retry", "default"), 2, "give job ids, --all-failed or --all-stalled")
    assert_error(run("retry", "default", "f2", "--all-failed"), 2, "one of them")
    assert_error(run("retry", "default", "--all-failed", "--all-stalled"), 2, "one of them")
    assert_error(run("retry", "nope", "--all-failed"), 2, "unknown queue 'nope'")


def test_a_job_another_process_changes_meanwhile_is_named(
    q: Queue, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_jobs(q, ["f1", "f2", "f3"])
    real_retry = Queue.retry

    def racing_retry(self: Queue, job_id: str) -> bool:
        if job_id == "f2":
            assert self.delete(job_id)  # another operator got there first
        return real_retry(self, job_id)

    monkeypatch.setattr(Queue, "retry", racing_retry)
    result = run("retry", "default", "f1", "f2", "f3")
    assert "retried 2 jobs in queue default" in result.stdout
    assert_error(result, 1, "1 job changed state meanwhile and was not retried: f2")
    assert states(q, "f1", "f2", "f3") == ["queued", None, "queued"]


def test_retry_all_failed_and_all_stalled(
    q: Queue, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "BATCH", 2)  # several Lua calls
    ids = [f"f{i}" for i in range(5)]
    fail_jobs(q, ids)
    assert "retried 5 jobs in queue default (failed)" in ok(run("retry", "default", "--all-failed"))
    assert states(q, *ids) == ["queued"] * 5

    claimed = q.claim(OWNER_A, 2, LONG_LEASE_MS)[0]
    for job in claimed:
        assert q.stall(job.id, "stuck")
    assert q.counts()["stalled"] == 2
    assert "retried 2 jobs" in ok(run("retry", "default", "--all-stalled"))
    assert q.counts() == {**dict.fromkeys(k.STATES, 0), "queued": 5}
    assert "retried 0 jobs" in ok(run("retry", "default", "--all-failed"))


def test_delete_by_id_and_all_failed(q: Queue, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_jobs(q, [f"f{i}" for i in range(5)])
    q.enqueue("core.echo", job_id="d1")
    q.enqueue("core.echo", job_id="d2", delay=60)
    assert "deleted 2 jobs in queue default" in ok(run("delete", "default", "d1", "d2"))
    assert states(q, "d1", "d2") == [None, None]

    q.enqueue("core.echo", job_id="busy")
    q.claim(OWNER_A, 1, LONG_LEASE_MS)
    q.enqueue("core.echo", job_id="d3")
    assert_error(
        run("delete", "default", "d3", "busy"), 2, "job 'busy' is active", "nothing deleted"
    )
    assert states(q, "d3", "busy") == ["queued", "active"]
    assert_error(run("delete", "default", "gone"), 2, "job 'gone' not found")

    monkeypatch.setattr(admin, "BATCH", 2)  # several Lua calls
    assert "deleted 5 jobs in queue default (failed)" in ok(
        run("delete", "default", "--all-failed")
    )
    assert q.counts()["failed"] == 0 and states(q, "d3") == ["queued"]

    assert_error(run("delete", "default"), 2, "give job ids or --all-failed")
    assert_error(run("delete", "default", "d3", "--all-failed"), 2, "one of them")


def test_cancel_queued_and_delayed_jobs(q: Queue, run: Run) -> None:
    fail_jobs(q, ["f1"])
    q.enqueue("core.echo", job_id="c1")
    q.enqueue("core.echo", job_id="c2", delay=60)
    assert "cancelled 2 jobs in queue default" in ok(run("cancel", "default", "c1", "c2"))
    assert states(q, "c1", "c2") == ["cancelled", "cancelled"]

    q.enqueue("core.echo", job_id="c3")
    assert_error(
        run("cancel", "default", "c3", "f1"),
        2,
        "job 'f1' is failed",
        "only queued or delayed jobs can be cancelled",
    )
    assert states(q, "c3") == ["queued"]
    assert_error(run("cancel", "default"), 2, "Missing argument 'JOB_ID...'")


# -- pause, resume -------------------------------------------------------------------------
def test_pause_and_resume(q: Queue, run: Run) -> None:
    q.enqueue("core.echo")
    assert "paused queue default" in ok(run("pause", "default"))
    assert q.is_paused()
    assert ok_json(run("stats", "--json"))["queues"]["default"]["paused"] is True
    assert "resumed queue default" in ok(run("resume", "default"))
    assert not q.is_paused()
    assert_error(run("pause", "defualt"), 2, "unknown queue 'defualt'", "(known: default)")
    assert_error(run("resume", "bad name"), 2, "invalid queue name")


# -- enqueue -------------------------------------------------------------------------------
def test_enqueue_with_options_params_and_duplicates(q: Queue, run: Run) -> None:
    out = ok(
        run(
            "enqueue",
            "default",
            "core.echo",
            '{"x": 1}',
            "--job-id",
            "e1",
            "--priority",
            "high",
            "--retries",
            "2",
            "--timeout",
            "3",
            "--resource-id",
            "res",
        )
    )
    assert out.strip() == "enqueued job e1 in queue default (queued)"
    job = q.job("e1")
    assert (job.params, job.priority, job.max_retries, job.resource_id) == ({"x": 1}, 10, 2, "res")
    assert job.fields["timeout"] == "3"

    again = ok_json(run("enqueue", "default", "core.echo", "--job-id", "e1", "--json"))
    assert again == {
        "id": "e1",
        "queue": "default",
        "task": "core.echo",
        "state": "queued",
        "duplicate": True,
    }
    assert "already in queue default" in ok(
        run("enqueue", "default", "core.echo", "--job-id", "e1")
    )

    later = ok_json(
        run("enqueue", "default", "core.echo", "--delay", "60", "--priority", "-5", "--json")
    )
    assert later["state"] == "delayed" and later["duplicate"] is False
    assert q.job(later["id"]).priority == -5
    assert q.job(later["id"]).params == {}, "no PARAMS_JSON: {}"

    new_queue = ok_json(run("enqueue", "fresh", "core.echo", "[1, 2]", "--json"))
    assert Queue("fresh", redis=q.redis, prefix=q.keys.prefix).job(new_queue["id"]).params == [1, 2]
    assert "fresh" in ok_json(run("stats", "--json"))["queues"], "enqueue makes a queue known"


def test_enqueue_refuses_bad_input_and_writes_nothing(q: Queue, run: Run) -> None:
    q.enqueue("core.echo")
    before = q.counts()
    assert_error(run("enqueue", "default", "core.echo", "{bad"), 2, "PARAMS_JSON is not valid JSON")
    assert_error(run("enqueue", "default", "core.echo", "-", input="nope"), 2, "not valid JSON")
    assert_error(
        run("enqueue", "default", "core.echo", "--priority", "urgent"),
        2,
        "priority 'urgent' must be one of",
    )
    assert_error(run("enqueue", "default", "core.echo", "--priority", "101"), 2, "priority 101")
    assert_error(run("enqueue", "default", "core.echo", "--job-id", "a b"), 2, "job id 'a b'")
    assert_error(run("enqueue", "default", "core.echo", "--retries", "-1"), 2, "retries")
    assert_error(run("enqueue", "default", "core.echo", "--delay", "-1"), 2, "--delay")
    assert_error(run("enqueue", "default", 'bad"task'), 2, "task name")
    assert_error(run("enqueue", "bad{queue}", "core.echo"), 2, "invalid queue name")
    assert q.counts() == before


def test_enqueue_wait_prints_the_outcome_from_a_real_worker(q: Queue, run: Run) -> None:
    with core_worker(q):
        out = ok(run("enqueue", "default", "core.echo", '{"x": [1, 2]}', "--wait", "10"))
        assert out.splitlines()[-1] == 'result: {"x": [1, 2]}'

        data = ok_json(
            run("enqueue", "default", "core.echo", "-", "--wait", "10", "--json", input='{"y": 2}')
        )
        assert data["state"] == "completed" and data["result"] == {"y": 2}

        failed = run(
            "enqueue", "default", "core.fail", '{"message": "bad day"}', "--wait", "10", "--json"
        )
        assert_error(failed, 1, "failed: ValueError: bad day")
        assert json.loads(failed.stdout)["state"] == "failed"

    q.pause()  # nothing will run it
    timed_out = run("enqueue", "default", "core.echo", "--wait", "0.2")
    assert_error(timed_out, 124, "did not finish within 0.2s", "(state queued)")


# -- settings, and the real command line ----------------------------------------------------
def test_connection_settings_follow_the_masters_precedence(tmp_path: Path) -> None:
    config = tmp_path / "qs.toml"
    config.write_text('[qsupervise]\nredis-url = "redis://file:1/0"\nprefix = "fromfile"\n')
    settings = admin.connection_settings
    assert settings({}, {}) == ("redis://127.0.0.1:6379/0", "qs")
    assert settings({"config": str(config)}, {}) == ("redis://file:1/0", "fromfile")
    env = {"QSUPERVISE_CONFIG": str(config), "REDIS_URL": "redis://plain:2/0"}
    assert settings({}, env) == ("redis://plain:2/0", "fromfile")
    env |= {"QSUPERVISE_REDIS_URL": "redis://env:3/0", "QSUPERVISE_PREFIX": "fromenv"}
    assert settings({}, env) == ("redis://env:3/0", "fromenv")
    flags = {"redis_url": "redis://flag:4/0", "prefix": "fromflag"}
    assert settings(flags, env) == ("redis://flag:4/0", "fromflag")


def test_a_config_file_and_flags_after_the_subcommand(
    q: Queue, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    q.enqueue("core.echo")
    config = tmp_path / "qs.toml"
    config.write_text(f'redis_url = "{redis_url}"\nprefix = "{prefix}"\n')
    runner = CliRunner(env=ISOLATED_ENV)
    via_file = runner.invoke(cli, ["--config", str(config), "stats", "--json"])
    assert list(ok_json(via_file)["queues"]) == ["default"]
    after = runner.invoke(
        cli, ["--prefix", "other", "stats", "--json", "--redis-url", redis_url, "--prefix", prefix]
    )
    assert list(ok_json(after)["queues"]) == ["default"], "the subcommand's flags win"
    missing = runner.invoke(cli, ["--config", str(tmp_path / "none.toml"), "stats"])
    assert_error(missing, 2, "cannot read config file")


def qsupervise(
    redis_url: str,
    prefix: str,
    *args: str,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real command: ``python -m supervisor.cli --redis-url URL --prefix P ...``."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor.cli",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
            *args,
        ],
        cwd=str(REPO),
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_real_command_enqueues_waits_and_reports(q: Queue, redis_url: str, prefix: str) -> None:
    with core_worker(q):
        done = qsupervise(
            redis_url,
            prefix,
            "enqueue",
            "default",
            "core.echo",
            "-",
            "--job-id",
            "real",
            "--wait",
            "10",
            input='{"via": "stdin"}',
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "enqueued job real in queue default (queued)",
            'result: {"via": "stdin"}',
        ]
        failed = qsupervise(redis_url, prefix, "enqueue", "default", "core.fail", "--wait", "10")
        assert_error(failed, 1, "failed: ValueError: core.fail always fails")

    stats = qsupervise(redis_url, prefix, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)["queues"]["default"]["counts"]
    assert (counts["completed"], counts["failed"]) == (1, 1)
    shown = qsupervise(redis_url, prefix, "show", "default", "real", "--json")
    assert json.loads(shown.stdout)["result"] == {"via": "stdin"}


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["jobs", "nope"], 2, "unknown queue 'nope'"),
        (["show", "default"], 2, "Missing argument 'JOB_ID'"),
        (["enqueue", "default", "core.echo", "[1,"], 2, "not valid JSON"),
        (["stats", "--redis-url", "http://example.com"], 2, "unsupported Redis URL"),
        (["stats", "--redis-url", "redis://127.0.0.1:{port}/0"], 3, "cannot reach Redis at"),
        (
            ["retry", "default", "--redis-url", "redis://u:secret@127.0.0.1:{port}/0", "x"],
            3,
            "redis://u:***@127.0.0.1",
        ),
    ],
)
def test_the_real_command_fails_with_one_line_and_its_exit_code(
    q: Queue, redis_url: str, prefix: str, args: list[str], code: int, fragment: str
) -> None:
    q.enqueue("core.echo")
    port = str(free_port())  # nothing listens there
    args = [a.replace("{port}", port) for a in args]
    line = assert_error(qsupervise(redis_url, prefix, *args), code, fragment)
    assert "secret" not in line


def test_ps_lists_live_processes_from_their_heartbeats(
    run: Run, redis_client: redis.Redis, prefix: str
) -> None:
    from supervisor.heartbeat import ProcessRegistry

    registry = ProcessRegistry(redis_client, prefix)
    registry.beat("host/11/aa", {"role": "master", "generation": 2, "children": "2/2"}, 30)
    registry.beat("host/12/bb", {"role": "child", "busy": "3/10", "done": 7}, 30)

    lines = ok(run("ps")).splitlines()

    assert any(
        line.startswith("master") and "host/11/aa" in line and "generation=2" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("child") and "host/12/bb" in line and "busy=3/10" in line for line in lines
    ), lines
