"""The scheduled job: due runs happen, missed slots run once, failures do not stop it.

The first tests drive the scheduler with a clock the test sets; the last runs the real
`pitsync schedule` command on a one-second cron and stops it with SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pitsync.config import TableConfig
from pitsync.connectors.schedule import Scheduler, last_successful_runs
from pitsync.connectors.sync import RunOutcome
from pitsync.errors import SourceError
from pitsync.store import StoreInUse
from tests.conftest import (
    FULL_DISK,
    Project,
    company_history,
    configure_companies,
    login_events,
    stopped_by,
)

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

    # The last run began after the 10:00 slot: the next slot, 11:00, is the first due.
    last_runs = {"plans": dt.datetime(2024, 1, 1, 10, 0, 5, tzinfo=UTC)}
    scheduler = Scheduler([hourly("plans")], run, last_runs, clock=clock)
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

    ran_at_ten = dt.datetime(2024, 1, 1, 10, 0, 5, tzinfo=UTC)
    last_runs = {"broken": ran_at_ten, "plans": ran_at_ten}
    scheduler = Scheduler([hourly("broken"), hourly("plans")], run, last_runs, clock=clock)
    clock.now = dt.datetime(2024, 1, 1, 11, 0, tzinfo=UTC)
    outcomes = scheduler.run_due()

    assert ran == ["broken", "plans"]
    assert [outcome.error is None for outcome in outcomes] == [False, True]
    assert scheduler.due == {
        "broken": dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
        "plans": dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
    }


def test_a_table_whose_run_raises_does_not_stop_the_others() -> None:
    clock = Clock(dt.datetime(2024, 1, 1, 11, 0, tzinfo=UTC))
    ran: list[str] = []

    def run(table: TableConfig) -> RunOutcome:
        ran.append(table.name)
        if table.name == "broken":
            raise RuntimeError("cannot rollback - no transaction is active")
        return RunOutcome(table.name)

    ran_at_ten = dt.datetime(2024, 1, 1, 10, 0, 5, tzinfo=UTC)
    last_runs = {"broken": ran_at_ten, "plans": ran_at_ten}
    scheduler = Scheduler([hourly("broken"), hourly("plans")], run, last_runs, clock=clock)
    outcomes = scheduler.run_due()

    assert ran == ["broken", "plans"]
    assert [str(outcome.error) for outcome in outcomes] == [
        "RuntimeError: cannot rollback - no transaction is active",
        "None",
    ]
    assert scheduler.due["broken"] == dt.datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_a_table_whose_last_slot_passed_without_a_run_runs_at_once() -> None:
    # At 10:30: "late" last ran at 09:05, before the 10:00 slot (the scheduler was down);
    # "new" never ran; "fresh" ran at 10:00:05, so it waits for 11:00.
    now = dt.datetime(2024, 1, 1, 10, 30, tzinfo=UTC)
    last_runs = {
        "late": dt.datetime(2024, 1, 1, 9, 5, tzinfo=UTC),
        "fresh": dt.datetime(2024, 1, 1, 10, 0, 5, tzinfo=UTC),
    }
    tables = [hourly("late"), hourly("new"), hourly("fresh")]

    scheduler = Scheduler(tables, lambda table: RunOutcome(table.name), last_runs, clock=Clock(now))

    assert scheduler.due == {
        "late": now,
        "new": now,
        "fresh": dt.datetime(2024, 1, 1, 11, tzinfo=UTC),
    }


def test_a_run_that_found_the_store_busy_is_tried_again_a_minute_later() -> None:
    clock = Clock(dt.datetime(2024, 1, 1, 11, 0, tzinfo=UTC))

    def run(table: TableConfig) -> RunOutcome:
        return RunOutcome(table.name, error=StoreInUse("the store is in use by process 7"))

    last_runs = {"plans": dt.datetime(2024, 1, 1, 10, 0, 5, tzinfo=UTC)}
    scheduler = Scheduler([hourly("plans")], run, last_runs, clock=clock)
    scheduler.run_due()

    assert scheduler.due["plans"] == dt.datetime(2024, 1, 1, 11, 1, tzinfo=UTC)


def test_when_the_runs_so_far_are_unknown_every_table_waits_for_its_next_slot() -> None:
    now = dt.datetime(2024, 1, 1, 10, 30, tzinfo=UTC)
    scheduler = Scheduler([hourly("plans")], lambda table: RunOutcome(table.name), None, Clock(now))

    assert scheduler.due == {"plans": dt.datetime(2024, 1, 1, 11, tzinfo=UTC)}


def test_the_last_successful_runs_are_read_from_the_store(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    before = dt.datetime.now(UTC)
    project.sync("company_plan_history")

    last = last_successful_runs(project.config(), wait_seconds=1)

    assert list(last) == ["company_plan_history"]
    assert before <= last["company_plan_history"] <= dt.datetime.now(UTC)


def test_a_table_dropped_since_its_last_run_is_due_at_once(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.sync("company_plan_history")
    project.cli("drop-table", "company_plan_history")

    # The drop is recorded as a run, but the table holds nothing: it has not run since.
    assert last_successful_runs(project.config(), wait_seconds=1) == {}

    before = dt.datetime.now(UTC)
    project.sync("company_plan_history")
    last = last_successful_runs(project.config(), wait_seconds=1)
    assert before <= last["company_plan_history"] <= dt.datetime.now(UTC)


def started_schedule(
    project: Project, *options: str, limit: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    """The real `pitsync schedule` of the project, running; its standard error piped."""
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    return subprocess.Popen(
        [*command, "schedule", *options],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=limit,
    )


class Watched:
    """A running job whose standard error is read on a thread, line by line as it comes."""

    def __init__(self, job: subprocess.Popen[str]):
        self.job = job
        self.arrived: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        assert self.job.stderr is not None
        for line in self.job.stderr:
            self.arrived.put(line)

    def wait_for(self, fragment: str, times: int = 1, timeout: float = 30.0) -> None:
        """Until `fragment` has come in `times` lines; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while sum(fragment in line for line in self.lines) < times:
            try:
                self.lines.append(self.arrived.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                self.job.kill()
                raise AssertionError(
                    f"no {fragment!r} {times} times in:\n{self.ended(5)}"
                ) from None

    def stopped(self, timeout: float) -> str:
        """SIGTERM; every line, once the job has ended within `timeout` seconds."""
        self.job.send_signal(signal.SIGTERM)
        return self.ended(timeout)

    def ended(self, timeout: float) -> str:
        try:
            self.job.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.job.kill()
            raise AssertionError(f"the job went on for {timeout}s:\n{self.ended(5)}") from None
        self.reader.join(timeout=10)
        assert self.job.stderr is not None
        self.job.stderr.close()
        while not self.arrived.empty():
            self.lines.append(self.arrived.get_nowait())
        return "".join(self.lines)


def test_the_schedule_command_runs_due_tables_and_stops_cleanly_on_sigterm(
    project: Project,
) -> None:
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="* * * * * */1"
    )
    job = started_schedule(project)
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


def test_runs_the_disk_cannot_take_are_recorded_and_the_job_goes_on(project: Project) -> None:
    # Two tables due every second, synced once; then the disk takes no run's data.
    every_second = "* * * * * */1"
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule=every_second
    )
    login_events(project, [("e1", "c1", "2024-01-02 00:00:00+00")])
    project.configure("product_events", kind="events", schedule=every_second, **{"from": "events"})
    project.cli("sync", "--all")

    watched = Watched(started_schedule(project, limit=FULL_DISK))
    # Each table fails in one line, and the job goes on to the next, and to the next slot.
    for table in ("company_plan_history", "product_events"):
        failure = f"ERROR: table {table}: run failed: table `{table}`: the store could not commit"
        watched.wait_for(failure, times=2)
    stderr = watched.stopped(timeout=30)

    assert watched.job.returncode == 0, stderr
    assert "Traceback" not in stderr and "SIGTERM received" in stderr
    failed = [
        run["table_name"]
        for run in json.loads(project.cli("runs", "--format", "json").stdout)
        if run["status"] == "failed"
    ]
    assert {"company_plan_history", "product_events"} <= set(failed), stderr


def test_a_store_whose_folder_cannot_be_made_fails_each_run_in_one_line(
    project: Project,
) -> None:
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="* * * * * */1"
    )
    (project.root / "afile").write_text("not a folder", encoding="utf-8")
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        config.replace('path = "store.duckdb"', 'path = "afile/store.duckdb"'), encoding="utf-8"
    )

    job = started_schedule(project)
    # The job goes on: a failed run a second, each said in one line.
    folder = project.root / "afile"
    failure = (
        f"ERROR: table company_plan_history: run failed: cannot make the folder {folder} for "
        f"the store {folder / 'store.duckdb'}: {folder} is a file, not a folder;"
    )
    watched = Watched(job)
    watched.wait_for(failure, times=2)
    stderr = watched.stopped(timeout=30)

    assert job.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped" in stderr


def test_a_refused_first_run_leaves_a_store_that_shows_it(project: Project) -> None:
    # No store yet, and the table's source table is gone: the run is refused as it plans.
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="@hourly"
    )
    project.source_sql("DROP TABLE company_plan_history")

    watched = Watched(started_schedule(project))
    watched.wait_for("ERROR: table company_plan_history: run failed: ")
    stderr = watched.stopped(timeout=30)

    assert watched.job.returncode == 0, stderr
    [run] = json.loads(project.cli("runs", "--format", "json").stdout)
    assert (run["table_name"], run["status"]) == ("company_plan_history", "failed")
    assert "company_plan_history" in run["error"] and "tables are: (none)" in run["error"]
    assert run["finished_at"] is not None


def test_two_history_tables_owning_one_property_are_refused_before_any_runs(
    project: Project,
) -> None:
    # Both company histories have a `plan` column (DESIGN rule 11).
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="* * * * * */1"
    )
    project.source_sql(
        "CREATE TABLE company_billing (company_id VARCHAR, plan VARCHAR, billed_from TIMESTAMPTZ)",
        "INSERT INTO company_billing VALUES ('c1', 'annual', '2024-01-05 00:00:00+00')",
    )
    project.configure(
        "company_billing",
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time="billed_from",
        schedule="* * * * * */1",
    )

    watched = Watched(started_schedule(project))
    stderr = watched.ended(timeout=30)

    assert watched.job.returncode == 1
    assert stderr == (
        "pitsync: error: table `company_plan_history`: property `plan` already modeled by "
        "history table `company_billing` of the same entity; each property has one owner: "
        "drop or rename the column in one of the tables\n"
    )
    assert not project.store.exists()


def test_a_table_named_without_a_schedule_is_named_and_so_is_the_lack_of_any(
    project: Project,
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.source_sql("CREATE TABLE other_history AS FROM company_plan_history")
    configure_companies(project, "other_history", "start_timestamp", schedule="@hourly")

    named = project.cli(
        "schedule", "--table", "other_history", "--table", "company_plan_history", check=False
    )
    del project.tables["other_history"]["schedule"]
    project.write_config()
    none = project.cli("schedule", check=False)

    assert (named.returncode, none.returncode) == (1, 1)
    assert named.stderr == (
        "pitsync: error: table `company_plan_history` has no schedule: set schedule = "
        '"0 * * * *" (or @hourly, @daily) in [tables.company_plan_history], or leave it out '
        "of --table\n"
    )
    assert none.stderr == (
        'pitsync: error: no table to schedule: set schedule = "0 * * * *" (or @hourly, '
        "@daily) in [tables.NAME]\n"
    )


def test_a_store_busy_at_start_leaves_the_last_runs_unknown(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.sync("company_plan_history")

    with store_held(project):
        assert last_successful_runs(project.config(), wait_seconds=0.2) is None


@contextmanager
def store_held(project: Project) -> Iterator[None]:
    """Another process holds the store open for writing, as a running sync would."""
    hold = (
        f"import duckdb, time; c = duckdb.connect({str(project.store)!r}); "
        "print('held', flush=True); time.sleep(20)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.communicate()


def test_a_stop_while_the_job_waits_for_a_busy_store_at_start_is_clean(
    project: Project,
) -> None:
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="@hourly"
    )
    project.sync("company_plan_history")
    with store_held(project):
        job = started_schedule(project, "--wait", "60")
        # Started (about a second), and waiting for the store: it stops waiting at once,
        # well within the minute it would wait, and within the twenty seconds the store
        # is held.
        time.sleep(3)
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=15)

    assert "first run" not in stderr  # no table was to run

    assert job.returncode == 0, stderr
    assert "SIGTERM received" in stderr and "stopped" in stderr


@pytest.mark.backends("postgres")
def test_a_stop_while_the_job_reads_its_sources_at_start_is_clean(project: Project) -> None:
    # Before any run, the job reads each table's columns, to refuse two tables owning one
    # property; a table another session has locked holds that read up until it commits.
    import adbc_driver_postgresql.dbapi as postgres_adbc

    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="@hourly"
    )
    assert project.postgres is not None
    table = f'"{project.postgres.name}".company_plan_history'
    with postgres_adbc.connect(project.postgres.uri) as locker, locker.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        job = started_schedule(project)
        waiting = f"SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass"
        deadline = time.monotonic() + 30
        while project.postgres.execute(f"{waiting} AND NOT granted") == [(0,)]:
            assert time.monotonic() < deadline and job.poll() is None, "never reached the lock"
            time.sleep(0.1)
        job.send_signal(signal.SIGTERM)
        time.sleep(1)  # the signal is handled (or kills the job) before the read goes on
        locker.rollback()
        _, stderr = job.communicate(timeout=30)

    assert job.returncode == 0, stderr
    assert "SIGTERM received" in stderr and "stopped" in stderr
    assert "first run" not in stderr


# Takes the store as soon as no one holds it, says how many runs it holds, and keeps it.
TAKE_THE_STORE = """
import sys, time, duckdb
while True:
    try:
        store = duckdb.connect(sys.argv[1])
        break
    except duckdb.IOException:
        time.sleep(0.01)
print(store.execute("SELECT count(*) FROM _pitsync.runs").fetchall()[0][0], flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("source", "after_a_run", "last_run"),
    [
        ("readable", "rows read", "INFO: table company_plan_history: not run, as the job is"),
        ("dropped", "run failed", "ERROR: table company_plan_history: run failed: "),
    ],
)
def test_a_stop_while_a_run_waits_for_a_busy_store_starts_no_run(
    project: Project, source: str, after_a_run: str, last_run: str
) -> None:
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="* * * * * */1"
    )
    project.sync("company_plan_history")
    if source == "dropped":  # each run is refused, then waits for the store to record it
        project.source_sql("DROP TABLE company_plan_history")
    watched = Watched(started_schedule(project, "--wait", "60"))
    watched.wait_for(after_a_run)

    # Another process takes the store between two runs; the next run waits for it.
    holder = subprocess.Popen(
        [sys.executable, "-c", TAKE_THE_STORE, str(project.store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        runs_when_taken = int(holder.stdout.readline())
        time.sleep(2)
        # Waiting out the store (--wait 60) would pass this bound: the stop ends the wait.
        stderr = watched.stopped(timeout=15)
    finally:
        holder.kill()
        holder.communicate()

    # It stopped waiting at once, and started no run once the store was free.
    assert watched.job.returncode == 0, stderr
    assert "Traceback" not in stderr
    *_, stop_asked, told, stopped = stderr.splitlines()
    assert "SIGTERM received" in stop_asked and last_run in told and "stopped" in stopped
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert len(runs) == runs_when_taken, stderr


@pytest.mark.backends("postgres")
def test_ctrl_c_while_postgres_works_on_a_run_lets_it_finish_then_stops(project: Project) -> None:
    # The driver would take SIGINT for itself while PostgreSQL works: it cancelled the
    # statement, recorded a failed run, and the job never heard of the signal.
    company_history(
        project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], schedule="@hourly"
    )
    project.database_sql(
        "CREATE VIEW slow AS SELECT h.* FROM company_plan_history AS h "
        "CROSS JOIN (SELECT pg_sleep(2)) AS s"
    )
    project.tables["company_plan_history"]["from"] = "slow"
    project.write_config()
    assert project.postgres is not None
    sleeping = (  # this test's read: other tests' sessions may sleep too
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
        f"AND datname = current_database() AND strpos(query, '{project.postgres.name}') > 0"
    )
    job = started_schedule(project)
    deadline = time.monotonic() + 30
    while project.postgres.execute(sleeping) == [(0,)]:
        assert time.monotonic() < deadline and job.poll() is None, "the run never read"
        time.sleep(0.05)
    stderr = stopped_by(job, signal.SIGINT)

    assert job.returncode == 0, stderr
    assert "SIGINT received" in stderr and "stopped" in stderr
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert [(run["status"], run["inserted"]) for run in runs] == [("succeeded", 1)]
