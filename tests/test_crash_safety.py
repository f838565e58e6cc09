"""A sync killed at any moment leaves the store as it was, or as a clean run leaves it.

The store is synced once; then the source changes and a real `pitsync sync` process is
killed with SIGKILL after a random delay, in seeded trials spread over the whole run.
After each kill every table of the store must equal, by checksum, either the state
before the run or the state after a clean run, and a new run must reach the clean state.

A disk that refuses the run's writes is played by a limit on the size of the files the
`pitsync` process may write (RLIMIT_FSIZE): DuckDB's commit then fails as on a full disk.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.conftest import (
    FULL_DISK,
    Project,
    company_history,
    configure_company_history,
    file_size_limit,
    login_events,
)

TRIALS = 30
SEED = 20241204
ROWS = 150_000

# Run records keep their clock times; everything else of them must match.
VOLATILE = {"runs": ["started_at", "finished_at"]}


def source_version(project: Project, version: int) -> None:
    """ROWS history rows; version 2 changes every third plan and adds a later row."""
    project.source_sql(
        "CREATE OR REPLACE TABLE company_plan_history AS SELECT "
        "'c' || (range % 20000) AS company_id, "
        f"CASE WHEN {version} = 2 AND range % 3 = 0 THEN 'changed' ELSE 'plan' || (range % 7) "
        "END AS plan, CAST(range % 50 AS INTEGER) AS seats, "
        "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_minutes(range) AS start_timestamp, "
        "CAST(NULL AS TIMESTAMPTZ) AS updated_at "
        f"FROM range({ROWS + (1000 if version == 2 else 0)})"
    )


def fingerprint(store: Path) -> dict[str, tuple]:
    """Row count and an order-free hash of the rows, for every table of the store."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall()
        prints = {}
        for schema, table in tables:
            skip = VOLATILE.get(table, [])
            columns = f"* EXCLUDE ({', '.join(skip)})" if skip else "*"
            rows = f'SELECT {columns} FROM "{schema}"."{table}"'
            prints[f"{schema}.{table}"] = con.execute(
                f"SELECT count(*), bit_xor(hash(row)) FROM ({rows}) AS row"
            ).fetchone()
        return prints
    finally:
        con.close()


def without_runs(prints: dict[str, tuple]) -> dict[str, tuple]:
    """The data: after a run that did commit, a rerun adds one more run record."""
    return {name: value for name, value in prints.items() if name != "_pitsync.runs"}


def restore(saved: Path, store: Path) -> None:
    """Put the saved store back, with no write-ahead log of a killed process beside it."""
    Path(f"{store}.wal").unlink(missing_ok=True)
    shutil.copyfile(saved, store)


@pytest.mark.slow
def test_a_killed_sync_leaves_the_store_before_or_after_and_a_rerun_converges(
    project: Project,
) -> None:
    source_version(project, 1)
    configure_company_history(project)
    project.cli("sync", "--table", "company_plan_history")
    saved_before = project.root / "before.duckdb"
    shutil.copyfile(project.store, saved_before)
    before = fingerprint(project.store)

    source_version(project, 2)
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    command += ["sync", "--table", "company_plan_history"]
    started = time.monotonic()
    subprocess.run(command, cwd=project.root, check=True, capture_output=True)
    clean_seconds = time.monotonic() - started
    after = fingerprint(project.store)
    assert after != before, "the second source version must change the store"

    chance = random.Random(SEED)
    outcomes = {"before": 0, "after": 0}
    for trial in range(TRIALS):
        restore(saved_before, project.store)
        run = subprocess.Popen(
            command, cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(chance.uniform(0.0, clean_seconds * 1.1))
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)

        state = fingerprint(project.store)
        assert state in (before, after), f"trial {trial}: the store is half-applied"
        outcomes["before" if state == before else "after"] += 1

        subprocess.run(command, cwd=project.root, check=True, capture_output=True)
        assert without_runs(fingerprint(project.store)) == without_runs(after), (
            f"trial {trial}: a rerun did not converge"
        )

    # The delays span the run, so kills must have landed both before and after its commit.
    assert outcomes["before"] > 0, outcomes


# No room for DuckDB's write-ahead log at all.
NO_ROOM = file_size_limit(100)


def sync_on_a_full_disk(
    project: Project, limit: Callable[[], None], *options: str
) -> subprocess.CompletedProcess[str]:
    """The real `pitsync sync` under the file size limit."""
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    return subprocess.run(
        [*command, "sync", *options],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=limit,
        timeout=120,
    )


def test_a_run_the_disk_cannot_take_fails_in_one_line_and_is_recorded(project: Project) -> None:
    # Two tables synced once; then each gains a row, and the disk takes no more.
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    login_events(project, [("e1", "c1", "2024-01-02 00:00:00+00")])
    project.cli("sync", "--all")
    project.source_sql(
        "INSERT INTO company_plan_history VALUES ('c2', 'pro', 5, '2024-02-01 00:00:00+00', NULL)",
        "INSERT INTO events VALUES ('e2', 'login', 'c2', 'c2', '2024-02-02 00:00:00+00')",
    )

    result = sync_on_a_full_disk(project, FULL_DISK, "--all")

    # One line a table, saying why and what to do; both tables were tried.
    assert result.returncode == 1, result.stderr
    errors = result.stderr.splitlines()
    assert [line.partition(": the store could not commit the run")[0] for line in errors] == [
        "pitsync: error: table `company_plan_history`",
        "pitsync: error: table `product_events`",
    ], result.stderr
    for line in errors:
        assert ", so nothing was applied: " in line
        assert line.endswith(
            "File too large; once the store can be written (room on its disk, a folder "
            "it may write in), run again"
        )
    # Nothing of either run was applied, and both failures are recorded.
    assert project.query("SELECT company_id FROM company_plan_history") == [("c1",)]
    assert project.query("SELECT distinct_id FROM events") == [("c1",)]
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert [(run["table_name"], run["status"]) for run in runs] == [
        ("company_plan_history", "succeeded"),
        ("product_events", "succeeded"),
        ("company_plan_history", "failed"),
        ("product_events", "failed"),
    ]
    assert all("could not commit the run" in run["error"] for run in runs[2:])


def test_a_store_the_disk_could_not_make_is_named_with_what_to_do(project: Project) -> None:
    # What DuckDB left of the store stays (another process may have made a store there
    # meanwhile); the next run says it is cut short, and to move it aside.
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    assert not project.store.exists()

    failed = sync_on_a_full_disk(project, NO_ROOM, "--all")
    assert failed.returncode == 1, failed.stderr
    assert "cannot open the store" in failed.stderr and "File too large" in failed.stderr
    again = project.cli("sync", "--all", check=False)

    assert again.returncode == 1
    assert "if the file was cut short (a disk that was full as it was made)" in again.stderr
    assert "move it aside and sync every table again" in again.stderr
    project.store.rename(project.root / "aside.duckdb")
    project.cli("sync", "--all")
    assert project.query("SELECT company_id FROM company_plan_history") == [("c1",)]


def test_a_store_path_that_links_to_a_missing_disk_is_left_as_it_is(project: Project) -> None:
    # The link leads to a store on a disk that is not there now (its folder is missing):
    # the run fails, and the link stays, so no store is made in its place.
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.store.symlink_to(project.root / "unmounted" / "store.duckdb")

    failed = project.cli("sync", "--all", check=False)

    assert failed.returncode == 1 and "cannot open the store" in failed.stderr
    assert project.store.is_symlink() and not project.store.exists()


def test_a_failed_run_the_disk_cannot_record_either_is_logged_in_one_line(
    project: Project,
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.cli("sync", "--all")

    result = sync_on_a_full_disk(project, NO_ROOM, "--table", "company_plan_history")

    assert result.returncode == 1, result.stderr
    logged, error = result.stderr.splitlines()
    assert logged.startswith(
        "pitsync: ERROR: table company_plan_history: the failed run could not be recorded in "
        'the store either: Could not write file "'
    )
    assert logged.endswith('store.duckdb.wal": File too large'), logged
    assert error.startswith(
        "pitsync: error: table `company_plan_history`: the store could not commit the run"
    )
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert [run["status"] for run in runs] == ["succeeded"]
