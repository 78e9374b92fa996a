"""qsupervise as a real process group: concurrency, titles, scaling, recycling, bad input."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from supervisor_harness import Recorder, Start, enqueue_records
from waiting import wait_for

from supervisor.queue import Queue


def max_overlap(starts: dict[str, float], ends: dict[str, float]) -> int:
    events = sorted(
        [(t, 1) for t in starts.values()] + [(t, -1) for t in ends.values()],
        key=lambda e: (e[0], e[1]),
    )
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def test_four_children_times_ten_threads_run_forty_jobs_at_once(
    start: Start, q: Queue, rec: Recorder
) -> None:
    sup = start("--app", "qs_test_app", "--children", "4", "--threads", "10", "--prefetch", "0")
    sup.wait_children(4)
    enqueue_records(q, 40, seconds=4.0)
    wait_for(
        lambda: len(rec.ended()) == 40,
        20,
        lambda: f"40 jobs should finish: {q.counts()}\n{sup.log()}",
    )
    assert max_overlap(rec.started(), rec.ended()) == 40
    assert len(set(rec.pids().values())) == 4
    assert q.counts()["completed"] == 40


def test_titles_show_master_and_children_state(start: Start, q: Queue, rec: Recorder) -> None:
    sup = start(
        "--app",
        "qs_test_app",
        "--children",
        "2",
        "--threads",
        "3",
        "--queues",
        "critical,default,low",
    )
    pids = sup.wait_children(2)
    wait_for(
        lambda: sup.title() == "qsupervise master gen=1 children=2/2 queues=critical,default,low",
        5,
        lambda: f"master title: {sup.title()!r}",
    )
    enqueue_records(q, 4, seconds=0.1)
    wait_for(lambda: len(rec.ended()) == 4, 10, lambda: f"jobs should finish: {q.counts()}")
    pattern = re.compile(
        r"qsupervise child [12] gen=1 busy=\d+/3 done=(\d+) failed=0"
        r"( last=record \d+\.\ds)?$"
    )

    def titles_ok() -> bool:
        titles = [sup.title(pid) for pid in pids]
        matches = [pattern.match(t) for t in titles]
        return all(matches) and sum(int(m.group(1)) for m in matches if m) == 4

    wait_for(titles_ok, 5, lambda: f"child titles: {[sup.title(p) for p in pids]}")


def test_ttin_and_ttou_change_the_child_count(start: Start) -> None:
    sup = start("--app", "qs_test_app", "--children", "2", "--threads", "2")
    first = sup.wait_children(2)
    sup.signal(signal.SIGTTIN)
    sup.wait_children(3)
    wait_for(lambda: "children=3/3" in sup.title(), 5, lambda: sup.title())
    # Signals of one kind coalesce while pending: send the next after the first acted.
    sup.signal(signal.SIGTTOU)
    wait_for(lambda: "children=2/2" in sup.title(), 5, lambda: sup.title())
    sup.signal(signal.SIGTTOU)
    wait_for(
        lambda: len(sup.children()) == 1,
        15,
        lambda: f"one child expected: {sup.children_titles()}\n{sup.log()}",
    )
    # The oldest children are retired first: the survivor is the newest.
    assert sup.child_pids().isdisjoint(first)
    wait_for(lambda: "children=1/1" in sup.title(), 5, lambda: sup.title())
    assert "TTIN: children target 3" in sup.log()
    assert "TTOU: children target 1" in sup.log()


def test_children_recycle_after_max_jobs(start: Start, q: Queue, rec: Recorder) -> None:
    sup = start(
        "--app",
        "qs_test_app",
        "--children",
        "1",
        "--threads",
        "1",
        "--max-jobs-per-child",
        "3",
        "--prefetch",
        "0",
    )
    sup.wait_children(1)
    enqueue_records(q, 9, seconds=0.0)
    wait_for(
        lambda: len(rec.ended()) == 9,
        20,
        lambda: f"9 jobs should finish: {q.counts()}\n{sup.log()}",
    )
    assert len(set(rec.pids().values())) == 3, rec.pids()
    assert all(n == 1 for n in rec.runs().values()), "a recycled child acks before it exits"
    wait_for(lambda: sup.log().count("recycled after 3 jobs") >= 3, 5, sup.log)
    assert q.counts()["completed"] == 9
    assert q.counts()["failed"] == 0


def test_app_with_syntax_error_exits_nonzero_with_one_line(start: Start, tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "qs_broken_app.py").write_text(
        "from supervisor import task\n\n@task(name='broken')\ndef broken(params)\n"
        "    return params\n"
    )
    began = time.monotonic()
    sup = start("--app", "qs_broken_app", "--children", "4", app_dir=apps)
    code = sup.wait_exit(15)
    assert code == 4
    assert time.monotonic() - began < 10
    log = sup.log()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, log
    assert "cannot load the task code" in errors[0] and "syntax error" in errors[0], errors
    assert "Traceback" not in log
    assert log.count("spawned child") <= 4, log


def test_unreachable_redis_exits_with_one_line(start: Start) -> None:
    sup = start("--app", "qs_test_app", url="redis://127.0.0.1:1/0")
    assert sup.wait_exit(10) == 3
    lines = sup.log().strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], lines


def test_unknown_flag_exits_with_usage_error(start: Start) -> None:
    sup = start("--app", "qs_test_app", "--no-such-flag")
    assert sup.wait_exit(10) == 2
    assert "No such option" in sup.log()


def test_child_over_its_memory_limit_is_recycled(start: Start, q: Queue) -> None:
    sup = start(
        "--app", "qs_test_app", "--children", "1", "--threads", "1", "--max-memory-per-child", "150"
    )
    (first,) = sup.wait_children(1)
    job = q.enqueue("hog", {"mib": 200})
    wait_for(
        lambda: first not in sup.child_pids() and len(sup.ready_children()) == 1,
        15,
        lambda: f"the fat child should be replaced: {sup.children_titles()}\n{sup.log()}",
    )
    assert "recycling: rss" in sup.log()
    assert q.get(job.id).state == "completed"  # type: ignore[union-attr]
    assert f"child 1 pid {first} gen 1 exited with status 0" in sup.log()


def test_usr1_reopens_the_log_file(start: Start, tmp_path: Path) -> None:
    log_file = tmp_path / "qs.log"
    sup = start("--app", "qs_test_app", "--children", "1", "--log-file", str(log_file))
    sup.wait_children(1)
    rotated = tmp_path / "qs.log.1"
    log_file.rename(rotated)
    sup.signal(signal.SIGUSR1)
    wait_for(
        lambda: log_file.exists() and "USR1: log files reopened" in log_file.read_text(),
        5,
        "a new log file should be opened",
    )
    assert "spawned child 1" in rotated.read_text()


def test_hup_rereads_the_config_file(start: Start, tmp_path: Path) -> None:
    conf = tmp_path / "qs.toml"
    conf.write_text("children = 1\nthreads = 2\n")
    sup = start("--app", "qs_test_app", "--config", str(conf))
    sup.wait_children(1)
    conf.write_text("children = 2\nthreads = 3\n")
    sup.signal(signal.SIGHUP)
    wait_for(
        lambda: (
            "gen=2 children=2/2" in sup.title()
            and "reloading" not in sup.title()
            and len(sup.ready_children()) == 2
        ),
        15,
        lambda: f"{sup.title()} {sup.children_titles()}\n{sup.log()}",
    )
    wait_for(
        lambda: all("/3 " in t for t in sup.children_titles()),
        5,
        lambda: f"threads=3 expected: {sup.children_titles()}",
    )
