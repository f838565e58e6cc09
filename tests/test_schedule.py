"""The scheduled job: due runs happen, missed slots run once, failures do not stop it.

The first tests drive the scheduler with a clock the test sets; the last runs the real
`pitsync schedule` command on a one-second cron and stops it with SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

from pitsync.config import TableConfig
from pitsync.connectors.schedule import Scheduler
from pitsync.connectors.sync import RunOutcome
from pitsync.errors import SourceError
from tests.conftest import Project, company_history

UTC = dt.UTC


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime):
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def hourly(name: str) -> TableConfig:
    return TableConfig(
        name=name,
        source="s",
        kind="events",
        id_column="distinct_id",
        source_table=name,
        schedule="0 * * * *",
    )


def test_a_table_runs_when_due_and_once_after_missed_slots() -> None:
    clock = Clock(dt.datetime(2024, 1, 1, 10, 30, tzinfo=UTC))
    ran: list[tuple[str, dt.datetime]] = []

    def run(table: TableConfig) -> RunOutcome:
        ran.append((table.name, clock.now))
        return RunOutcome(table.name)

    scheduler = Scheduler([hourly("plans")], run, clock=clock)
    assert scheduler.due["plans"] == dt.datetime(2024, 1, 1, 11, tzinfo=UTC)

    clock.now = dt.datetime(2024, 1, 1, 10, 59, tzinfo=UTC)
    scheduler.run_due()
    assert ran == []

    # Asleep through the 11:00 to 15:00 slots: one run, and the next slot is 16:00.
    clock.now = dt.datetime(2024, 1, 1, 15, 20, tzinfo=UTC)
    scheduler.run_due()
    scheduler.run_due()
    assert ran == [("plans", dt.datetime(2024, 1, 1, 15, 20, tzinfo=UTC))]
    assert scheduler.due["plans"] == dt.datetime(2024, 1, 1, 16, tzinfo=UTC)
    assert scheduler.seconds_to_next() == 40 * 60


def test_a_failing_table_does_not_stop_the_others() -> None:
    clock = Clock(dt.datetime(2024, 1, 1, 10, 30, tzinfo=UTC))
    ran: list[str] = []

    def run(table: TableConfig) -> RunOutcome:
        ran.append(table.name)
        if table.name == "broken":
            return RunOutcome(table.name, error=SourceError("source gone"))
        return RunOutcome(table.name)

    scheduler = Scheduler([hourly("broken"), hourly("plans")], run, clock=clock)
    clock.now = dt.datetime(2024, 1, 1, 11, 0, tzinfo=UTC)
    outcomes = scheduler.run_due()

    assert ran == ["broken", "plans"]
    assert [outcome.error is None for outcome in outcomes] == [False, True]
    assert scheduler.due == {
        "broken": dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
        "plans": dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
    }


def test_the_schedule_command_runs_due_tables_and_stops_cleanly_on_sigterm(
    project: Project,
) -> None:
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="* * * * * */1"
    )
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    job = subprocess.Popen(
        [*command, "schedule"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    time.sleep(4)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=30)

    assert job.returncode == 0, stderr
    assert "SIGTERM received" in stderr and "stopped" in stderr
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert 2 <= len(runs) <= 5, runs
    assert all(run["status"] == "succeeded" for run in runs)
    # One at a time: each run starts after the one before it finished.
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later["started_at"] >= earlier["finished_at"]
