"""One writer at a time: a second process waits for the store, then says who holds it.

The holder here is a DuckDB connection of the test process, which locks the store file
exactly as a running `pitsync sync` does; the commands under test are real subprocesses,
but for one that needs another process to take the store between two tables.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pitsync import cli
from pitsync.connectors import sync
from pitsync.store import open_for_writing
from tests.conftest import Project, company_history, login_events

ROWS = [("c1", "free", 1, "2024-01-01 00:00:00+00", None)]


def synced(project: Project) -> Project:
    company_history(project, ROWS)
    login_events(project, [("e1", "c1", "2024-01-02 00:00:00+00")])
    project.cli("sync", "--table", "company_plan_history")
    return project


def run_while_held(project: Project, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a command while this process holds the store; its result and seconds taken."""
    holder = duckdb.connect(str(project.store))
    try:
        started = time.monotonic()
        result = project.cli(*args, check=False)
        return result, time.monotonic() - started
    finally:
        holder.close()


def test_a_second_sync_waits_then_names_the_process_holding_the_store(project: Project) -> None:
    synced(project)
    result, waited = run_while_held(project, "sync", "--all", "--wait", "1")

    assert result.returncode == 1
    # One message: the command stops, rather than wait again for each of its two tables.
    assert result.stderr.count(f"in use by process {os.getpid()}") == 1
    assert "--wait SECONDS" in result.stderr and "Traceback" not in result.stderr
    assert waited >= 1
    assert project.query("SELECT count(*) FROM runs") == [(1,)]


def test_a_sync_that_waits_long_enough_runs_once_the_store_is_free(project: Project) -> None:
    synced(project)
    holder = duckdb.connect(str(project.store))
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    waiting = subprocess.Popen(
        [*command, "sync", "--all", "--wait", "20"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert waiting.poll() is None, "the sync must still be waiting"
    holder.close()

    _, stderr = waiting.communicate(timeout=60)

    assert waiting.returncode == 0, stderr
    statuses = project.query("SELECT table_name, status FROM runs ORDER BY run_id")
    assert statuses == [
        ("company_plan_history", "succeeded"),
        ("company_plan_history", "succeeded"),
        ("product_events", "succeeded"),
    ]


def test_a_drop_waits_for_the_store_then_names_its_holder_and_drops_nothing(
    project: Project,
) -> None:
    synced(project)
    result, waited = run_while_held(project, "drop-table", "company_plan_history", "--wait", "1")

    assert result.returncode == 1
    assert f"in use by process {os.getpid()}" in result.stderr
    assert "--wait SECONDS" in result.stderr and "Traceback" not in result.stderr
    assert waited >= 1
    assert project.query("SELECT count(*) FROM company_plan_history") == [(1,)]
    assert project.query("SELECT mode FROM runs") == [("full",)]


def test_a_query_while_the_store_is_written_waits_and_never_sees_half_a_run(
    project: Project,
) -> None:
    synced(project)
    holder = duckdb.connect(str(project.store))
    try:
        # A run in progress that has changed the data but not committed.
        holder.execute("BEGIN")
        holder.execute('DELETE FROM _pitsync."intervals__company_plan_history"')
        result = project.cli(
            "query", "SELECT count(*) FROM company_plan_history", "--wait", "0.5", check=False
        )
        assert result.returncode == 1
        assert "in use by process" in result.stderr
        holder.execute("ROLLBACK")
    finally:
        holder.close()

    after = project.cli(
        "query", "SELECT count(*) AS n FROM company_plan_history", "--format", "json"
    )
    assert '"n":1' in after.stdout.replace(" ", "")


@pytest.mark.parametrize("wait", ["nan", "-1", "abc", ""])
def test_a_wait_that_is_not_a_number_of_seconds_is_a_usage_error(
    project: Project, wait: str
) -> None:
    # NaN compares false with everything: as a deadline it would wait forever. Text that
    # is no number was refused in argparse's words, naming a function of pitsync's.
    synced(project)

    result = project.cli("runs", f"--wait={wait}", check=False)

    assert result.returncode == 2
    assert f"--wait takes seconds, 0 or more, not {wait!r}" in result.stderr


@pytest.mark.parametrize("stopped", ["before its first commit", "after it"])
@pytest.mark.parametrize("command", [("query", "SELECT * FROM runs"), ("runs",)])
def test_a_store_whose_first_sync_was_stopped_says_so(
    project: Project, stopped: str, command: tuple[str, ...]
) -> None:
    # A first run killed after the store was made: before it committed anything, the
    # file holds nothing at all (it was said to be someone else's database); after, it
    # holds pitsync's own tables and no public relation.
    company_history(project, ROWS)
    if stopped == "after it":
        open_for_writing(project.store).close()
    else:
        duckdb.connect(str(project.store)).close()

    result = project.cli(*command, check=False)

    assert result.returncode == 1
    assert "holds no finished run yet" in result.stderr and "Traceback" not in result.stderr
    assert project.cli("sync", "--all").returncode == 0


def test_a_table_named_twice_is_synced_once(project: Project) -> None:
    company_history(project, ROWS)

    project.cli("sync", "--table", "company_plan_history", "--table", "company_plan_history")

    assert project.query("SELECT count(*) FROM runs") == [(1,)]


def test_a_store_taken_between_tables_reports_what_was_synced_and_names_the_rest(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three tables; another process takes the store once the first has committed. The
    # command runs in this process, so that the store is taken at that very moment.
    synced(project)
    project.configure("more_events", kind="events", **{"from": "events"})
    opened: list[Path] = []
    holders: list[subprocess.Popen[str]] = []

    def open_once_the_store_is_taken(path: Path, *args: Any, **options: Any) -> Any:
        opened.append(path)
        if len(opened) == 2:  # the first table's run has committed and closed the store
            holders.append(store_taken(path))
        return open_for_writing(path, *args, **options)

    monkeypatch.setattr(sync, "open_for_writing", open_once_the_store_is_taken)
    logger = logging.getLogger("pitsync")
    for attribute in ("handlers", "propagate", "level"):  # as other tests expect them
        monkeypatch.setattr(logger, attribute, getattr(logger, attribute))
    try:
        status = cli.main(["--config", str(project.config_path), "sync", "--all", "--wait", "1"])
    finally:
        for holder in holders:
            holder.kill()
            holder.communicate()
    out, err = capsys.readouterr()

    assert status == 1
    report = [line.split()[1] for line in out.splitlines() if line.startswith("│")]
    assert report == ["company_plan_history"]
    [error] = [line for line in err.splitlines() if line.startswith("pitsync: error:")]
    assert error.startswith(
        "pitsync: error: tables `product_events`, `more_events` not synced: the store "
        f"{project.store} is in use by process {holders[0].pid} "
    )
    statuses = project.query("SELECT table_name, status FROM runs ORDER BY run_id")
    assert statuses == [("company_plan_history", "succeeded")] * 2


def store_taken(path: Path) -> subprocess.Popen[str]:
    """Another process, holding the store open for writing until it is killed."""
    hold = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
    holder = subprocess.Popen(
        [sys.executable, "-c", hold + "time.sleep(60)"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder
