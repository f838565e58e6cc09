"""Incremental runs against an oracle: after any sequence of source changes, a store kept
by mirror (or append) runs must answer exactly as a store built by one full sync of the
final source.

The history's intervals are also worked out in plain Python from the final source rows
(`python_intervals`, DESIGN section 2 read literally), so a rule broken in the full sync
and the runs alike is caught too. Keys are few, so ties, duplicates, deletes of one of
several rows, and NULLs happen often.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    Project,
    configure_companies,
    configure_versioned_appends,
    insert_rows,
    sql_literal,
    sql_row,
)

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


def empty_source(root: Path, ddl: str) -> Project:
    """A new project at `root` whose warehouse holds the table `ddl` creates, empty."""
    project = Project(root=root)
    project.root.mkdir()
    project.source_sql(ddl)
    return project


def configure_mirror(project: Project) -> None:
    configure_companies(project, "plans", "valid_from", tie_breaker="version", mode="mirror")


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


def python_intervals(rows: list[tuple]) -> set[tuple]:
    """(company, start, end, plan, seats) of every interval that holds a moment, from
    source rows (company, plan, seats, start, version), with no SQL.

    At each (company, start) identical rows are one; of differing ones the highest
    version wins, then the greatest plan, then the greatest seats, NULL lowest each time.
    An interval ends at the company's next start.
    """

    def rank(row: tuple) -> tuple:
        _, plan, seats, _, version = row
        return tuple((value is not None, value) for value in (version, plan, seats))

    winners: dict[tuple, tuple] = {}
    for row in rows:
        key = (row[0], row[3])
        if key not in winners or rank(row) > rank(winners[key]):
            winners[key] = row
    intervals = set()
    for company, start in winners:
        later = [s for c, s in winners if c == company and s > start]
        _, plan, seats, _, _ = winners[(company, start)]
        intervals.add((company, start, min(later, default=None), plan, seats))
    return intervals


def source_rows(project: Project, rows: str = "SELECT * FROM plans") -> list[tuple]:
    """(company, plan, seats, start, version) of `rows` of the project's warehouse."""
    con = duckdb.connect(str(project.warehouse), read_only=True)
    try:
        return con.execute(
            f"SELECT company_id, plan, seats, valid_from, version FROM ({rows})"
        ).fetchall()
    finally:
        con.close()


def check_intervals(project: Project, rows: str = "SELECT * FROM plans") -> None:
    stored = set(project.query(ANSWERS[0]))
    assert stored == python_intervals(source_rows(project, rows))


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
        project = empty_source(Path(folder) / "mirror", DDL)
        configure_mirror(project)
        project.sync("plans")
        for clock, change in enumerate(changes, start=1):
            apply_change(project, change, clock)
            project.sync("plans")
        expected = full_sync_answers(Path(folder) / "full", project.warehouse)
        assert answers(project) == expected
        check_intervals(project)


@EXAMPLES
@given(changes=st.lists(st.one_of(insert, update), min_size=1, max_size=6))
def test_append_runs_answer_as_one_full_sync_when_every_change_is_loaded_later(
    changes: list[tuple],
) -> None:
    # Append sees no deletes, so the changes here are inserts and updates, each loaded
    # later than everything before it, as a warehouse load would be.
    with tempfile.TemporaryDirectory() as folder:
        project = empty_source(Path(folder) / "append", DDL)
        configure_versioned_appends(project)
        project.sync("plans")
        for clock, change in enumerate(changes, start=1):
            apply_change(project, change, clock)
            project.sync("plans")
        expected = full_sync_answers(
            Path(folder) / "full", project.warehouse, LATEST_LOAD_OF_EACH_KEY
        )
        assert answers(project) == expected
        check_intervals(project, LATEST_LOAD_OF_EACH_KEY)


# A step of an append story: a change, how many minutes later than the step before it is
# loaded (0: in the same load, committed late), and whether a run follows it.
append_steps = st.lists(
    st.tuples(st.one_of(insert, update), st.integers(min_value=0, max_value=2), st.booleans()),
    min_size=1,
    max_size=8,
)


@EXAMPLES
@given(steps=append_steps)
def test_append_runs_keep_each_keys_latest_load_whenever_they_run(steps: list[tuple]) -> None:
    # Rows committed late into a load a run already read sit at the watermark; a
    # two-minute lookback reads the recent loads again. Neither may change the answer.
    with tempfile.TemporaryDirectory() as folder:
        project = empty_source(Path(folder) / "append", DDL)
        configure_versioned_appends(project, lookback="2m")
        project.sync("plans")
        clock = 1
        for change, later, run in steps:
            clock += later
            apply_change(project, change, clock)
            if run:
                project.sync("plans")
        project.sync("plans")
        expected = full_sync_answers(
            Path(folder) / "full", project.warehouse, LATEST_LOAD_OF_EACH_KEY
        )
        assert answers(project) == expected
        check_intervals(project, LATEST_LOAD_OF_EACH_KEY)


# Source schema changes between mirror runs, applied by `apply_drift`.
drifts = st.sampled_from(["add a region", "widen seats", "ids to text", "ids to integers"])
DRIFT_DDL = (
    "CREATE OR REPLACE TABLE plans (company_id INTEGER, plan VARCHAR, seats SMALLINT, "
    "valid_from TIMESTAMPTZ, version INTEGER, loaded_at TIMESTAMPTZ)"
)


def source_types(project: Project) -> dict[str, str]:
    con = duckdb.connect(str(project.warehouse), read_only=True)
    try:
        query = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'plans'"
        return dict(con.execute(query).fetchall())
    finally:
        con.close()


def apply_drift(project: Project, drift: str) -> None:
    types = source_types(project)
    if drift == "add a region" and "region" not in types:
        project.source_sql(
            "ALTER TABLE plans ADD COLUMN region VARCHAR",
            "UPDATE plans SET region = CASE WHEN seats = 1 THEN 'eu' END",
        )
    elif drift == "widen seats":
        project.source_sql("ALTER TABLE plans ALTER COLUMN seats TYPE BIGINT")
    elif drift == "ids to text":
        project.source_sql("ALTER TABLE plans ALTER COLUMN company_id TYPE VARCHAR")
    elif drift == "ids to integers" and types["company_id"] == "VARCHAR":
        project.source_sql(
            "CREATE OR REPLACE TABLE plans AS SELECT * REPLACE (CAST(company_id AS INTEGER) "
            "AS company_id) FROM plans"
        )


def drifting_change(project: Project, change: tuple, clock: int) -> None:
    """A change of the source, with ids that read as integers or text, and an insert that
    names its columns (a region may have been added)."""
    company = {"a": "1", "b": "2", "c": "3"}[change[1]]
    if change[0] != "insert":
        apply_change(project, (change[0], company, *change[2:]), clock)
        return
    (plan, seats), version = change[3], change[4]
    row = (company, plan, seats, f"2024-01-0{change[2]} 00:00:00+00", version)
    project.source_sql(
        "INSERT INTO plans (company_id, plan, seats, valid_from, version, loaded_at) "
        f"VALUES {sql_row((*row, f'2024-06-01 00:{clock:02d}:00+00'))}"
    )


@EXAMPLES
@given(
    runs=st.lists(
        st.lists(st.one_of(insert, update, delete, drifts), min_size=1, max_size=4),
        min_size=1,
        max_size=4,
    )
)
def test_mirror_runs_across_schema_changes_answer_as_one_full_sync(runs: list[list]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = empty_source(Path(folder) / "mirror", DRIFT_DDL)
        configure_mirror(project)
        project.sync("plans")
        for clock, run in enumerate(runs, start=1):
            for change in run:
                if isinstance(change, str):
                    apply_drift(project, change)
                else:
                    drifting_change(project, change, clock)
            project.sync("plans")
        expected = full_sync_answers(Path(folder) / "full", project.warehouse)
        assert answers(project) == expected


# Events without an insert id, appended across a column's life: `region` is added after
# the first run, filled in, dropped and added back. Each step that changes stored rows
# gives them a later load time, as a warehouse's load column would, so every run reads
# them again. The oracle is plain: of the final source's rows, each event (name, user,
# time and amount: the columns of the first run) keeps the rows of its latest load.
EVENTS_DDL = (
    "CREATE OR REPLACE TABLE ev (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ, "
    "amount INTEGER, loaded_at TIMESTAMPTZ)"
)
event_rows = st.lists(
    st.tuples(
        st.sampled_from(["login", "buy"]),
        st.sampled_from(["u1", "u2"]),
        st.integers(min_value=1, max_value=2),
        st.sampled_from([1, 2, None]),
        st.sampled_from(["eu", "us", None]),
    ),
    min_size=1,
    max_size=3,
)
event_steps = st.lists(
    st.tuples(
        st.one_of(
            st.tuples(st.just("load"), event_rows),
            st.tuples(st.just("add region"), st.none()),
            st.tuples(st.just("fill region"), st.sampled_from(["eu", "us"])),
            st.tuples(st.just("drop region"), st.none()),
        ),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


def has_region(project: Project) -> bool:
    con = duckdb.connect(str(project.warehouse), read_only=True)
    try:
        found = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'ev' "
            "AND column_name = 'region'"
        ).fetchall()
        return found[0][0] == 1
    finally:
        con.close()


def event_step(project: Project, step: tuple, clock: int) -> None:
    kind, detail = step
    loaded = f"2024-06-01 00:{clock:02d}:00+00"
    region = has_region(project)
    if kind == "load":
        rows = [
            (name, user, f"2024-01-0{day} 00:00:00+00", amount, loaded)
            + ((place,) if region else ())
            for name, user, day, amount, place in detail
        ]
        columns = "event, distinct_id, time, amount, loaded_at" + (", region" if region else "")
        project.source_sql(
            f"INSERT INTO ev ({columns}) VALUES " + ", ".join(sql_row(row) for row in rows)
        )
    elif kind == "add region" and not region:
        project.source_sql(
            "ALTER TABLE ev ADD COLUMN region VARCHAR", f"UPDATE ev SET loaded_at = '{loaded}'"
        )
    elif kind == "fill region" and region:
        project.source_sql(
            f"UPDATE ev SET region = '{detail}', loaded_at = '{loaded}' WHERE event = 'login'"
        )
    elif kind == "drop region" and region:
        project.source_sql(
            "ALTER TABLE ev DROP COLUMN region", f"UPDATE ev SET loaded_at = '{loaded}'"
        )


@EXAMPLES
@given(steps=event_steps)
def test_events_without_insert_id_keep_the_latest_load_of_each_event_across_a_column(
    steps: list[tuple],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = empty_source(Path(folder) / "events", EVENTS_DDL)
        project.configure("ev", kind="events", mode="append", cursor="loaded_at")
        project.sync("ev")
        for clock, (step, run) in enumerate(steps, start=1):
            event_step(project, step, clock)
            if run:
                project.sync("ev")
        project.sync("ev")

        columns = "event, distinct_id, time, amount" + (", region" if has_region(project) else "")
        con = duckdb.connect(str(project.warehouse), read_only=True)
        try:
            expected = con.execute(
                f"SELECT {columns} FROM ev QUALIFY loaded_at = max(loaded_at) "
                "OVER (PARTITION BY event, distinct_id, time, amount) ORDER BY ALL"
            ).fetchall()
        finally:
            con.close()
        assert project.query(f"SELECT {columns} FROM events ORDER BY ALL") == expected
