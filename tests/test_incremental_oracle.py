"""Incremental runs against an oracle: after any sequence of source changes, a store kept
by mirror (or append) runs must answer exactly as a store built by one full sync of the
final source.

The full sync is itself checked against a brute-force oracle (test_temporal_oracle.py);
here it is the reference. Keys are few, so ties, duplicates, deletes of one of several
rows, and NULLs happen often.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Project, configure_companies, insert_rows, sql_literal

DDL = (
    "CREATE OR REPLACE TABLE plans (company_id VARCHAR, plan VARCHAR, seats INTEGER, "
    "valid_from TIMESTAMPTZ, version INTEGER, loaded_at TIMESTAMPTZ)"
)
ANSWERS = (
    "SELECT company_id, start_time, end_time, plan, seats FROM plans ORDER BY ALL",
    "SELECT distinct_id, time, properties::VARCHAR FROM all_events ORDER BY ALL",
)

companies = st.sampled_from(["a", "b", "c"])
days = st.integers(min_value=1, max_value=4)
values = st.tuples(st.sampled_from(["free", "pro", None]), st.sampled_from([1, 2, None]))
insert = st.tuples(st.just("insert"), companies, days, values, st.sampled_from([1, 2, None]))
update = st.tuples(st.just("update"), companies, days, values)
delete = st.tuples(st.just("delete"), companies, days)


def apply_change(project: Project, change: tuple, clock: int) -> None:
    """One change of the source; every row it writes gets a later load time."""
    loaded = f"2024-06-01 00:{clock:02d}:00+00"
    kind, company, day = change[:3]
    start = f"2024-01-0{day} 00:00:00+00"
    where = f"company_id = '{company}' AND valid_from = TIMESTAMPTZ '{start}'"
    if kind == "insert":
        (plan, seats), version = change[3], change[4]
        insert_rows(project, "plans", [(company, plan, seats, start, version, loaded)])
    elif kind == "update":
        plan, seats = change[3]
        project.source_sql(
            f"UPDATE plans SET plan = {sql_literal(plan)}, seats = {sql_literal(seats)}, "
            f"loaded_at = '{loaded}' WHERE {where}"
        )
    else:
        project.source_sql(f"DELETE FROM plans WHERE {where}")


def answers(project: Project) -> list[list[tuple]]:
    return [project.query(sql) for sql in ANSWERS]


def full_sync_answers(root: Path, source: Path, rows: str = "SELECT * FROM plans") -> list:
    """A fresh store, synced once in full mode from `rows` of the same warehouse."""
    reference = Project(root=root)
    reference.root.mkdir()
    copy = duckdb.connect(str(reference.warehouse))
    copy.execute(f"ATTACH '{source}' AS original (READ_ONLY)")
    copy.execute(f"CREATE TABLE plans AS {rows.replace('FROM plans', 'FROM original.plans')}")
    copy.close()
    configure_companies(reference, "plans", "valid_from", tie_breaker="version")
    reference.sync("plans")
    return answers(reference)


# What append promises: each key holds the rows of its latest load, the earlier ones
# replaced.
# The cursor is row metadata in append mode, so the reference leaves it out too.
LATEST_LOAD_OF_EACH_KEY = (
    "SELECT * EXCLUDE (loaded_at) FROM plans "
    "QUALIFY loaded_at = max(loaded_at) OVER (PARTITION BY company_id, valid_from)"
)


EXAMPLES = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@EXAMPLES
@given(changes=st.lists(st.one_of(insert, update, delete), min_size=1, max_size=6))
def test_mirror_runs_answer_as_one_full_sync_of_the_final_source(changes: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = Project(root=Path(folder) / "mirror")
        project.root.mkdir()
        project.source_sql(DDL)
        configure_companies(project, "plans", "valid_from", tie_breaker="version", mode="mirror")
        project.sync("plans")
        for clock, change in enumerate(changes, start=1):
            apply_change(project, change, clock)
            project.sync("plans")
        expected = full_sync_answers(Path(folder) / "full", project.warehouse)
        assert answers(project) == expected


@EXAMPLES
@given(changes=st.lists(st.one_of(insert, update), min_size=1, max_size=6))
def test_append_runs_answer_as_one_full_sync_when_every_change_is_loaded_later(
    changes: list[tuple],
) -> None:
    # Append sees no deletes, so the changes here are inserts and updates, each loaded
    # later than everything before it, as a warehouse load would be.
    with tempfile.TemporaryDirectory() as folder:
        project = Project(root=Path(folder) / "append")
        project.root.mkdir()
        project.source_sql(DDL)
        configure_companies(
            project,
            "plans",
            "valid_from",
            tie_breaker="version",
            mode="append",
            cursor="loaded_at",
        )
        project.sync("plans")
        for clock, change in enumerate(changes, start=1):
            apply_change(project, change, clock)
            project.sync("plans")
        expected = full_sync_answers(
            Path(folder) / "full", project.warehouse, LATEST_LOAD_OF_EACH_KEY
        )
        assert answers(project) == expected
