"""pytest fixtures for testing code that enqueues qsupervise jobs.

Registered as a ``pytest11`` entry point, so installing qsupervise makes them
available in every test suite (see ``supervisor.testing`` for what they capture):

- ``qsupervise_capture``: enqueued jobs are recorded in memory, nothing is sent to
  Redis. ``def test_signup(qsupervise_capture): ...; assert qsupervise_capture.for_task(...)``
- ``qsupervise_inline``: the same, and every job runs at once through its task. The
  task modules come from the ini option ``qsupervise_app`` (comma-separated import
  paths, default ``tasks``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from supervisor.testing import Capture

APP_INI = "qsupervise_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        APP_INI,
        "task modules (comma-separated import paths) that the qsupervise_inline "
        "fixture runs jobs with",
        default="tasks",
    )


@pytest.fixture
def qsupervise_capture() -> Iterator[Capture]:
    """Jobs enqueued during the test, recorded in memory instead of Redis."""
    from supervisor.testing import capture  # imported on use: plugin loading stays cheap

    with capture() as jobs:
        yield jobs


@pytest.fixture
def qsupervise_inline(request: pytest.FixtureRequest) -> Iterator[Capture]:
    """Jobs enqueued during the test, recorded and run at once through their tasks
    (task modules from the ``qsupervise_app`` ini option)."""
    from supervisor.testing import capture

    app = str(request.config.getini(APP_INI) or "tasks")
    with capture(run_inline=True, app=app) as jobs:
        yield jobs
