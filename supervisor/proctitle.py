"""Process titles: ``ps`` alone tells what every qsupervise process is doing.

Resque's ``Processing <queue> since <time>`` is the model. Titles are set on
every state change (spawn, ready, reload, scale, drain) and refreshed once a
second by children while they work.
"""

from __future__ import annotations

from collections.abc import Sequence

import setproctitle

PROGRAM = "qsupervise"


def set_title(title: str) -> None:
    """Set the title seen by ``ps`` and in /proc/<pid>/cmdline."""
    setproctitle.setproctitle(title)


def master_title(
    generation: int, alive: int, target: int, queues: Sequence[str], state: str = ""
) -> str:
    """``qsupervise master gen=3 children=4/4 queues=critical,default,low [draining]``."""
    title = f"{PROGRAM} master gen={generation} children={alive}/{target} queues={','.join(queues)}"
    return f"{title} {state}" if state else title


def child_title(
    index: int,
    generation: int,
    *,
    busy: int,
    threads: int,
    done: int,
    failed: int,
    last_task: str | None = None,
    last_duration_s: float | None = None,
    state: str = "",
) -> str:
    """``qsupervise child 2 gen=3 busy=7/10 done=15234 failed=3 last=echo 0.2s [draining]``."""
    title = (
        f"{PROGRAM} child {index} gen={generation} busy={busy}/{threads}"
        f" done={done} failed={failed}"
    )
    if last_task:
        title += f" last={last_task}"
        if last_duration_s is not None:
            title += f" {last_duration_s:.1f}s"
    return f"{title} {state}" if state else title


def booting_title(index: int, generation: int, app: str) -> str:
    return f"{PROGRAM} child {index} gen={generation} booting app={app}"
