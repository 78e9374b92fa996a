"""One command: qsupervise against RQ, Celery, Dramatiq, arq and huey, plus the Redis floor.

    python bench/run.py                       # full: 3 runs of everything, 20k-job drains
    python bench/run.py --quick               # one run each, small N: under 2 minutes
    python bench/run.py --peers dramatiq,huey --workloads throughput,latency

Each system runs through its driver (bench/peers/<system>_driver.py) under its own
interpreter: a private virtualenv per peer (bench/.venvs/<peer>, created on first use),
the project's interpreter for qsupervise and the floor. All talk to one private
redis-server on a free port, flushed before every run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_DIR = BENCH / "peers"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(PEERS_DIR))

from _tasks import burn  # noqa: E402

from supervisor.embedded import RedisServer  # noqa: E402

PEERS: dict[str, list[str]] = {  # pip requirements of each peer's virtualenv
    "rq": ["rq", "hiredis", "psutil"],
    "celery": ["celery[redis]", "hiredis", "psutil"],
    "dramatiq": ["dramatiq[redis]", "hiredis", "psutil"],
    "arq": ["arq", "hiredis", "psutil"],
    "huey": ["huey", "redis", "hiredis", "psutil"],
}
OWN = ("qsupervise", "floor")  # run under this interpreter
WORKLOADS = ("throughput", "latency", "io", "cpu", "memory")

BARE_LABEL = "qsupervise-bare"
BARE_NOTE = "a task without I/O, counted by qsupervise's own completions, for the floor"

# (metric, higher is better) per workload: the headline compared as qsupervise / best peer
HEADLINES: dict[str, list[tuple[str, str, bool]]] = {
    "throughput": [
        ("drain_per_s", "no-op drain jobs/s", True),
        ("total_per_s", "no-op total jobs/s (incl. start-up)", True),
        ("enqueue_per_s", "bulk enqueue jobs/s", True),
    ],
    "latency": [
        ("latency_p50_ms", "idle latency p50 ms", False),
        ("latency_p99_ms", "idle latency p99 ms", False),
    ],
    "io": [("drain_per_s", "I/O 10 ms jobs/s", True)],
    "memory_idle": [("child_uss_mib", "idle child USS MiB", False)],
    "memory_after": [("child_uss_mib", "child USS MiB after jobs", False)],
}


class Settings:
    def __init__(self, a: argparse.Namespace) -> None:
        q = a.quick
        self.runs = a.runs or (1 if q else 3)
        self.n = a.n or (1000 if q else 20_000)
        self.samples = a.samples or (15 if q else 200)
        self.io_n = a.io_n or (300 if q else 4000)
        self.cpu_per_proc = a.cpu_per_proc or (100 if q else 400)
        self.mem_n = a.mem_n or (300 if q else 10_000)
        self.stall = 15.0 if q else 30.0
        self.max_drain_s = a.max_drain_s if a.max_drain_s is not None else (3.0 if q else 0.0)
        self.timeout = 120 if q else 600


# ---------------------------------------------------------------- virtualenvs


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def ensure_venvs(peers: list[str]) -> dict[str, str]:
    """Create missing virtualenvs (in parallel); returns peer -> error for those that failed."""
    errors: dict[str, str] = {}
    jobs: dict[str, subprocess.Popen[bytes]] = {}
    for peer in peers:
        py = venv_python(peer)
        if py.exists() and _imports_ok(peer):
            continue
        print(f"creating {VENVS / peer} and installing {' '.join(PEERS[peer])} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / peer)], check=True)
        jobs[peer] = subprocess.Popen(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEERS[peer]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    for peer, proc in jobs.items():
        out, _ = proc.communicate()
        if proc.returncode != 0 or not _imports_ok(peer):
            errors[peer] = f"pip install failed: {out.decode(errors='replace')[-500:]}"
    return errors


def _imports_ok(peer: str) -> bool:
    mod = {"celery": "celery", "dramatiq": "dramatiq.brokers.redis"}.get(peer, peer)
    check = subprocess.run(
        [str(venv_python(peer)), "-c", f"import {mod}, redis, psutil"], capture_output=True
    )
    return check.returncode == 0


# ---------------------------------------------------------------- driver runs


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Runner:
    def __init__(
        self, url: str, server: RedisServer, opts: argparse.Namespace, s: Settings, logdir: Path
    ) -> None:
        self.url, self.server, self.opts, self.s, self.logdir = url, server, opts, s, logdir

    def python(self, system: str) -> str:
        return sys.executable if system in OWN else str(venv_python(system))

    def call(self, system: str, workload: str, tag: str, **extra: Any) -> dict[str, Any]:
        import redis

        if workload != "versions":
            client = redis.Redis.from_url(self.url)
            client.flushall()  # our private server only
            client.close()
        pgid_file = self.logdir / f"{system}-{tag}.pgids"
        argv = [
            self.python(system),
            str(PEERS_DIR / f"{system}_driver.py"),
            "--redis-url",
            self.url,
            "--workload",
            workload,
            "--stall-timeout",
            str(self.s.stall),
            "--pgid-file",
            str(pgid_file),
            "--log",
            str(self.logdir / f"{system}-{tag}.log"),
            "--qs-mode",
            self.opts.qs_mode,
            "--max-drain-s",
            str(self.s.max_drain_s),
        ]
        for key, value in extra.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(PEERS_DIR), str(BENCH), str(ROOT)])
        proc = subprocess.Popen(
            argv,
            cwd=PEERS_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(self.logdir / f"{system}-{tag}.driver.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=self.s.timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"driver timed out after {self.s.timeout}s"}
        finally:
            if proc.poll() is None:  # timeout or Ctrl-C: the driver stops its workers on TERM
                kill_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=8)
                except subprocess.TimeoutExpired:
                    kill_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            if pgid_file.exists():  # whatever the driver left behind
                for line in pgid_file.read_text().split():
                    kill_group(int(line), signal.SIGKILL)
        for line in reversed(out.decode(errors="replace").splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {
            "ok": False,
            "error": f"driver exited {proc.returncode} without a result "
            f"(see {self.logdir / f'{system}-{tag}.driver.log'})",
        }


# ---------------------------------------------------------------- the plan


def cpu_counts(cores: int) -> list[int]:
    counts, p = [], 1
    while p <= cores:
        counts.append(p)
        p *= 2
    if counts[-1] != cores:
        counts.append(cores)
    return counts


def calibrate_cpu(target_s: float = 0.005) -> int:
    iters = 20_000
    for _ in range(3):
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            burn(iters)
            samples.append(time.perf_counter() - t0)
        iters = max(1000, int(iters * target_s / min(samples)))  # min: least disturbed
    return iters


def plan(
    systems: list[str],
    workloads: list[str],
    s: Settings,
    opts: argparse.Namespace,
    cores: int,
    cpu_iters: int,
) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(run key, system, driver workload, tag, driver args), runs interleaved across systems."""
    steps = []
    P = opts.processes
    for run in range(s.runs):
        for w in workloads:
            if w == "memory" and "latency" in workloads:
                continue  # measured in the same worker session as latency
            for system in systems:
                if system == "floor" and w not in ("throughput", "latency"):
                    continue
                tag = f"{w}-r{run}"
                if system == "floor" and w == "latency":
                    steps.append(
                        ("latency", system, "latency", tag, {"samples": s.samples, "processes": P})
                    )
                elif w == "throughput":
                    steps.append(
                        ("throughput", system, "throughput", tag, {"n": s.n, "processes": P})
                    )
                    if system == "qsupervise":  # the like-for-like row for the floor
                        steps.append(
                            (
                                "throughput_bare",
                                system,
                                "throughput_bare",
                                f"throughput-bare-r{run}",
                                {"n": s.n, "processes": P},
                            )
                        )
                elif w in ("latency", "memory"):
                    steps.append(
                        (
                            "live",
                            system,
                            "live",
                            tag,
                            {"n": s.mem_n, "samples": s.samples, "processes": P},
                        )
                    )
                elif w == "io":
                    steps.append(
                        ("io", system, "io", tag, {"n": s.io_n, "processes": P, "threads": 10})
                    )
                elif w == "cpu":
                    for p in opts.cpu_processes or cpu_counts(cores):
                        steps.append(
                            (
                                f"cpu_p{p}",
                                system,
                                "cpu",
                                f"{tag}-p{p}",
                                {"n": s.cpu_per_proc * p, "processes": p, "cpu_iters": cpu_iters},
                            )
                        )
    return steps


# ---------------------------------------------------------------- aggregation and output

NUMERIC_SKIP = {"n", "counter", "processes", "samples", "memory_after_jobs"}


def record(results: dict[str, Any], system: str, key: str, metrics: dict[str, Any]) -> None:
    def put(k: str, m: dict[str, Any]) -> None:
        slot = results.setdefault(system, {}).setdefault(k, {})
        for name, value in m.items():
            if isinstance(value, (int, float)) and name not in NUMERIC_SKIP:
                slot.setdefault(name, {"values": []})["values"].append(value)
        if isinstance(m.get("processes"), list):  # memory: every process sampled, last run
            slot["processes_sampled"] = m["processes"]

    if key == "live":
        put("latency", {k: v for k, v in metrics.items() if k.startswith("latency_")})
        put("memory_idle", metrics["memory_idle"])
        put("memory_after", {**metrics["memory_after"], "jobs": metrics["memory_after_jobs"]})
    else:
        put(key, metrics)


def summarise(results: dict[str, Any]) -> None:
    for per_wl in results.values():
        for slot in per_wl.values():
            for _name, m in slot.items():
                if isinstance(m, dict) and m.get("values"):
                    v = m["values"]
                    m.update(median=statistics.median(v), min=min(v), max=max(v))


def cell(m: dict[str, Any] | None, fmt: str) -> str:
    if not m or "median" not in m:
        return "-"
    med, lo, hi = m["median"], m["min"], m["max"]
    if len(m["values"]) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(lo, fmt)}–{format(hi, fmt)})"  # noqa: RUF001


def tables(
    results: dict[str, Any],
    errors: dict[str, dict[str, str]],
    systems: list[str],
    cpu_keys: list[str],
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every workload that has data or errors."""

    def row_err(system: str, key: str) -> str | None:
        return errors.get(system, {}).get(key)

    out = []
    specs = [
        (
            "No-op throughput",
            "throughput",
            [
                ("enqueue/s", "enqueue_per_s", ",.0f"),
                ("drain/s (from 1st done)", "drain_per_s", ",.0f"),
                ("total/s (incl. start-up)", "total_per_s", ",.0f"),
                ("start-up s", "startup_s", ".2f"),
            ],
        ),
        (
            "Idle latency enqueue → start",
            "latency",
            [
                ("p50 ms", "latency_p50_ms", ".2f"),
                ("p99 ms", "latency_p99_ms", ".2f"),
                ("max ms", "latency_max_ms", ".1f"),
            ],
        ),
        (
            "I/O-bound (10 ms sleep, 20 concurrent)",
            "io",
            [("drain/s", "drain_per_s", ",.0f"), ("total/s", "total_per_s", ",.0f")],
        ),
    ]
    for title, key, cols in specs:
        rows = []
        for system in systems:
            slot = results.get(system, {}).get(key)
            err = row_err(system, key)
            if slot is None and err is None:
                continue
            mark = " *" if slot and "completed_fraction" in slot else ""
            rows.append(
                [system + mark]
                + (
                    [cell(slot.get(c), f) for _, c, f in cols]
                    if slot
                    else [f"FAILED: {err}"] + [""] * (len(cols) - 1)
                )
            )
        bare = results.get("qsupervise", {}).get("throughput_bare")
        if key == "throughput" and (bare or row_err("qsupervise", "throughput_bare")):
            # After qsupervise's row: its task without I/O, compared with the floor.
            at = next((i + 1 for i, r in enumerate(rows) if r[0].startswith("qsupervise")), 0)
            rows.insert(
                at,
                [BARE_LABEL]
                + (
                    [cell(bare.get(c), f) for _, c, f in cols]
                    if bare
                    else [f"FAILED: {row_err('qsupervise', 'throughput_bare')}"]
                    + [""] * (len(cols) - 1)
                ),
            )
            title = f"{title} ({BARE_LABEL}: {BARE_NOTE})"
        if rows:
            out.append((title, ["system"] + [c for c, _, _ in cols], rows))
    # CPU scaling
    rows = []
    for system in systems:
        slots = results.get(system, {})
        if not any(k in slots or row_err(system, k) for k in cpu_keys):
            continue
        row = [system]
        base = slots.get(cpu_keys[0], {}).get("drain_per_s", {}).get("median") if cpu_keys else None
        for k in cpu_keys:
            m = slots.get(k, {}).get("drain_per_s")
            if m and "median" in m:
                ratio = f" x{m['median'] / base:.2f}" if base else ""
                mark = " *" if "completed_fraction" in slots.get(k, {}) else ""
                row.append(f"{m['median']:,.0f}{ratio}{mark}")
            else:
                row.append(f"FAILED: {row_err(system, k)}" if row_err(system, k) else "-")
        rows.append(row)
    if rows:
        out.append(
            (
                "CPU-bound (~5 ms) jobs/s and ratio to 1 process",
                ["system"] + [k.replace("cpu_p", "") + " proc" for k in cpu_keys],
                rows,
            )
        )
    # memory
    rows = []
    for system in systems:
        slots = results.get(system, {})
        if "memory_idle" not in slots and not row_err(system, "memory_idle"):
            continue
        if "memory_idle" not in slots:
            rows.append([system, f"FAILED: {row_err(system, 'memory_idle')}", "", "", "", "", ""])
            continue
        i, a = slots["memory_idle"], slots.get("memory_after", {})
        rows.append(
            [
                system,
                cell(i.get("n_children"), ".0f"),
                cell(i.get("master_rss_mib"), ".1f") + " / " + cell(i.get("master_uss_mib"), ".1f"),
                cell(i.get("child_rss_mib"), ".1f") + " / " + cell(i.get("child_uss_mib"), ".1f"),
                cell(a.get("master_rss_mib"), ".1f") + " / " + cell(a.get("master_uss_mib"), ".1f"),
                cell(a.get("child_rss_mib"), ".1f") + " / " + cell(a.get("child_uss_mib"), ".1f"),
                cell(a.get("jobs"), ".0f"),
            ]
        )
    if rows:
        out.append(
            (
                "Memory MiB, RSS / USS (child = mean per child process)",
                [
                    "system",
                    "children",
                    "master idle",
                    "child idle",
                    "master after",
                    "child after",
                    "after jobs",
                ],
                rows,
            )
        )
    return out


def ratios(results: dict[str, Any], peers: list[str], cpu_keys: list[str]) -> list[dict[str, Any]]:
    heads = dict(HEADLINES)
    for k in cpu_keys:
        heads[k] = [("drain_per_s", f"CPU-bound jobs/s, {k[5:]} proc", True)]
    out = []
    qs = results.get("qsupervise", {})
    for key, metrics in heads.items():
        for metric, label, higher in metrics:
            mine = qs.get(key, {}).get(metric, {}).get("median")
            cands = [
                (p, results.get(p, {}).get(key, {}).get(metric, {}).get("median")) for p in peers
            ]
            cands = [(p, v) for p, v in cands if v is not None]
            best = (max if higher else min)(cands, key=lambda pv: pv[1]) if cands else None
            entry = {
                "workload": key,
                "metric": metric,
                "label": label,
                "higher_is_better": higher,
                "best_peer": best[0] if best else None,
                "best_peer_value": best[1] if best else None,
                "qsupervise": mine,
                "ratio": (mine / best[1]) if best and mine and best[1] else None,
            }
            floor = results.get("floor", {}).get(key, {}).get(metric, {}).get("median")
            compared, like = "qsupervise", None
            if key == "throughput" and metric in ("drain_per_s", "enqueue_per_s", "total_per_s"):
                # The floor's consumers do no per-job I/O: drains compare with the bare
                # row (same lifecycle, task without I/O); enqueue is the same either way.
                compared = "qsupervise" if metric == "enqueue_per_s" else BARE_LABEL
                like = (
                    mine
                    if compared == "qsupervise"
                    else qs.get("throughput_bare", {}).get(metric, {}).get("median")
                )
            elif key == "latency":
                like = mine
            if floor and like:
                entry["floor"] = floor
                entry["qs_over_floor"] = like / floor
                entry["floor_compared"] = compared
                entry["floor_compared_value"] = like
            if best or "floor" in entry:  # without peers (--peers ""), still the floor figure
                out.append(entry)
    return out


def best_cell(r: dict[str, Any]) -> str:
    return "-" if r["best_peer"] is None else f"{r['best_peer']} {r['best_peer_value']:,.2f}"


def floor_cell(r: dict[str, Any], with_floor: bool) -> str:
    """"43% of 137,460 (bare 59,648)": the bare numerator is not the qsupervise column."""
    if "qs_over_floor" not in r:
        return ""
    if r["workload"] == "latency":  # lower is better: the floor's time, and how far above
        return f"{r['qs_over_floor']:.2f}x" + (f" of {r['floor']:.2f}" if with_floor else "")
    cell = f"{r['qs_over_floor']:.0%}" + (f" of {r['floor']:,.0f}" if with_floor else "")
    if r.get("floor_compared") == BARE_LABEL:
        cell += f" (bare {r['floor_compared_value']:,.0f})"
    return cell


def render(tbls: list[tuple[str, list[str], list[list[str]]]], rat: list[dict[str, Any]]) -> None:
    rat_rows = []
    for r in rat:
        qs = "-" if r["qsupervise"] is None else f"{r['qsupervise']:,.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        floor = floor_cell(r, with_floor=True)
        rat_rows.append(
            [
                r["label"],
                qs,
                best_cell(r),
                ratio,
                "higher" if r["higher_is_better"] else "lower",
                floor,
            ]
        )
    all_tables = [
        *tbls,
        (
            "qsupervise / best peer",
            ["metric", "qsupervise", "best peer", "ratio", "better", "vs Redis floor"],
            rat_rows,
        ),
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for title, header, rows in all_tables:
            print(f"\n{title}")
            widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
            for row in [header, *rows]:
                print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
        return
    console = Console(width=max(120, Console().width))
    for title, header, rows in all_tables:
        t = Table(title=title, title_justify="left")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)


def markdown(tbls: list[tuple[str, list[str], list[list[str]]]], rat: list[dict[str, Any]]) -> str:
    lines = []
    for title, header, rows in tbls:
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    lines += [
        "**qsupervise / best peer**",
        "",
        "| metric | qsupervise | best peer | ratio | vs floor |",
        "|---|---|---|---|---|",
    ]
    for r in rat:
        qs = "-" if r["qsupervise"] is None else f"{r['qsupervise']:,.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        floor = floor_cell(r, with_floor=False)
        lines.append(f"| {r['label']} | {qs} | {best_cell(r)} | {ratio} | {floor} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def machine(cores: int) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return {
        "cores": cores,
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="1 run, small N: under 2 minutes")
    p.add_argument(
        "--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS)
    )
    p.add_argument("--no-qs", action="store_true", help="leave qsupervise out")
    p.add_argument("--no-floor", action="store_true", help="leave the Redis floor out")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=",".join(WORKLOADS))
    p.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--cpu-processes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="process counts of the CPU scaling curve (default 1,2,4.. up to the cores)",
    )
    p.add_argument(
        "--qs-mode",
        choices=["supervisor", "workers"],
        default="supervisor",
        help="qsupervise under its prefork master, or P bare Worker processes",
    )
    p.add_argument("--runs", type=int, help="repeats of each measurement (default 3; quick 1)")
    p.add_argument(
        "--n", type=int, help="no-op jobs per throughput run (default 20000; quick 1000)"
    )
    p.add_argument("--io-n", type=int, help="jobs per I/O run (default 4000; quick 300)")
    p.add_argument("--cpu-per-proc", type=int, help="CPU jobs per process (default 400; quick 100)")
    p.add_argument(
        "--mem-n", type=int, help="jobs before the 2nd memory reading (default 10000; quick 300)"
    )
    p.add_argument("--samples", type=int, help="latency samples (default 200; quick 15)")
    p.add_argument(
        "--max-drain-s",
        type=float,
        help="stop a drain after this many seconds and report the rate so far, marked * "
        "(default: none; quick 3)",
    )
    p.add_argument("--out", help="JSON path (default bench/results/<timestamp>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    s = Settings(opts)
    peers = [p for p in opts.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    workloads = [w for w in opts.workloads.split(",") if w]
    if unknown or any(w not in WORKLOADS for w in workloads):
        print(f"unknown peer or workload: {unknown or workloads}", file=sys.stderr)
        return 2
    systems = ([] if opts.no_qs else ["qsupervise"]) + peers + ([] if opts.no_floor else ["floor"])
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    started = dt.datetime.now().astimezone()
    stamp = started.strftime("%Y%m%dT%H%M%S")
    logdir = Path(tempfile.mkdtemp(prefix=f"qsupervise-bench-{stamp}-"))
    t_begin = time.monotonic()

    errors: dict[str, dict[str, str]] = {}
    for peer, err in ensure_venvs(peers).items():
        errors[peer] = {"setup": err}
        systems.remove(peer)
    cpu_iters = calibrate_cpu()
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(
            f"warning: load average {load_before[0]:.2f} before the run: other processes "
            "compete for the CPUs and every number below is lower and noisier",
            file=sys.stderr,
        )
    results: dict[str, Any] = {}
    versions: dict[str, Any] = {}

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    server = RedisServer()
    interrupted = False
    try:
        server.start()
        import redis

        info = redis.Redis.from_url(server.url).info("server")
        versions["redis-server"] = info["redis_version"]
        runner = Runner(server.url, server, opts, s, logdir)
        for system in systems:
            v = runner.call(system, "versions", "versions")
            versions[system] = v.get("versions") or {"error": v.get("error")}
        steps = plan(systems, workloads, s, opts, cores, cpu_iters)
        print(f"{len(steps)} runs on {cores} cores; worker logs in {logdir}", flush=True)
        for i, (key, system, workload, tag, extra) in enumerate(steps, 1):
            t0 = time.monotonic()
            res = runner.call(system, workload, tag, **extra)
            took = time.monotonic() - t0
            if res.get("ok"):
                record(results, system, key, res["metrics"])
                brief = {
                    k: round(v, 1)
                    for k, v in res["metrics"].items()
                    if k in ("drain_per_s", "latency_p50_ms", "latency_p99_ms")
                }
                print(f"[{i}/{len(steps)}] {system:10} {tag:18} {took:5.1f}s {brief}", flush=True)
            else:
                keys = ["latency", "memory_idle", "memory_after"] if key == "live" else [key]
                for k in keys:
                    errors.setdefault(system, {})[k] = res["error"]
                print(
                    f"[{i}/{len(steps)}] {system:10} {tag:18} {took:5.1f}s FAILED: {res['error']}",
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping everything", file=sys.stderr)
    finally:
        server.stop()

    summarise(results)
    cpu_keys = (
        [f"cpu_p{p}" for p in (opts.cpu_processes or cpu_counts(cores))]
        if "cpu" in workloads
        else []
    )
    tbls = tables(results, errors, systems + [p for p in peers if p not in systems], cpu_keys)
    rat = ratios(results, [p for p in peers if p in systems], cpu_keys)
    render(tbls, rat)
    if any("completed_fraction" in slot for per in results.values() for slot in per.values()):
        print(
            f"* capped: the drain stopped after {s.max_drain_s:.0f}s; the rate is over the jobs "
            "completed by then"
        )
    print(
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({cores} cores)"
    )
    elapsed = time.monotonic() - t_begin
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "interrupted": interrupted,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": machine(cores),
        "versions": versions,
        "config": {
            "quick": opts.quick,
            "runs": s.runs,
            "processes": opts.processes,
            "n": s.n,
            "io_n": s.io_n,
            "cpu_per_proc": s.cpu_per_proc,
            "mem_n": s.mem_n,
            "latency_samples": s.samples,
            "cpu_iters": cpu_iters,
            "max_drain_s": s.max_drain_s,
            "qs_mode": opts.qs_mode,
            "systems": systems,
            "workloads": workloads,
        },
        "results": results,
        "errors": errors,
        "ratios": rat,
        "markdown": markdown(tbls, rat),
        "capped_runs_note": "metrics with completed_fraction < 1 stopped after max_drain_s",
    }
    out = Path(opts.out) if opts.out else RESULTS / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)
    print(
        f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
        f"in {elapsed:.0f}s; worker logs in {logdir}"
    )
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
