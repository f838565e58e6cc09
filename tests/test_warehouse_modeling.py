"""The modeling SQL for other engines gives exactly the store's answers.

The same random histories as the oracle test are synced into the store (the reference:
tests/test_temporal_oracle.py checks it against a brute-force oracle) and modeled by
`pitsync model` in PostgreSQL and on Spark; intervals and enriched events must match
row for row. Snowflake and BigQuery have no server here: their SQL is parsed back in
its own dialect and must give the same tree.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from pitsync.connectors.engines import (
    execute_on_postgres,
    execute_on_spark,
    local_spark_session,
    plan_model_sql,
)
from pitsync.errors import ConfigError, SourceError
from pitsync.modeling.portable import for_engine
from tests.conftest import (
    PostgresSchema,
    Project,
    company_history,
    configure_companies,
    configure_company_history,
    login_events,
)
from tests.test_temporal_oracle import probe_moments, rows_strategy, seed

HISTORY = "company_plan_history"
INTERVALS = "SELECT company_id, start_time, end_time, plan, seats FROM {relation}"
STORE_ENRICHED = (
    "SELECT e.probe, h.plan, h.seats FROM events AS e "
    "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
    "ON h.company_id = e.company_id"
)
MODEL_ENRICHED = "SELECT probe, plan, seats FROM {relation}"


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def store_answers(project: Project) -> tuple[list[tuple], list[tuple]]:
    """The store's intervals and enriched probes, sorted for comparison."""
    project.sync(HISTORY)
    project.sync("probes")
    intervals = project.query(INTERVALS.format(relation=HISTORY))
    return sorted(intervals, key=repr), sorted(project.query(STORE_ENRICHED), key=repr)


# --- PostgreSQL ----------------------------------------------------------------------------


@examples(40)
@given(rows=rows_strategy)
def test_postgres_modeling_gives_the_store_answers(postgres_uri: str, rows: list[tuple]) -> None:
    schema = PostgresSchema.create(postgres_uri)
    try:
        with tempfile.TemporaryDirectory() as folder:
            project = Project(root=Path(folder), backend="postgres", postgres=schema)
            seed(project, rows, probe_moments(rows))
            intervals, enriched = store_answers(project)

            config = project.config()
            execute_on_postgres(
                config, HISTORY, plan_model_sql(config, HISTORY, "postgres", "probes")
            )

            modeled = schema.execute(INTERVALS.format(relation=f"{HISTORY}_intervals"))
            assert sorted(modeled, key=repr) == intervals
            joined = schema.execute(MODEL_ENRICHED.format(relation="probes_enriched"))
            assert sorted(joined, key=repr) == enriched
    finally:
        schema.drop()


def test_model_execute_creates_the_views_in_the_postgres_source(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # c1: free from 1 Jan, then a tie on 1 Feb that team wins by its later updated_at.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    company_history(
        project,
        [
            ("c1", "free", 1, "2024-01-01 00:00:00+00", None),
            ("c1", "team", 9, "2024-02-01 00:00:00+00", "2024-02-02 00:00:00+00"),
            ("c1", "pro", 5, "2024-02-01 00:00:00+00", "2024-02-01 00:00:00+00"),
        ],
        tie_breaker="updated_at",
    )

    result = project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")

    assert "created views: company_plan_history_intervals" in result.stdout
    rows = postgres_schema.execute(
        "SELECT plan, seats, to_char(start_time AT TIME ZONE 'UTC', 'MM-DD'), "
        "to_char(end_time AT TIME ZONE 'UTC', 'MM-DD') FROM company_plan_history_intervals "
        "ORDER BY start_time"
    )
    assert rows == [("free", 1, "01-01", "02-01"), ("team", 9, "02-01", None)]


def test_model_execute_over_uuid_columns_matches_the_store(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # Two accounts with uuid ids. Account A has a tie on 1 Feb between two rows that differ
    # only in their uuid owner: with no tie-breaker the greater value wins, and a uuid's
    # order is its hex text's order, so PostgreSQL and the store pick the same row (owner
    # f..., not 0...). Account B's second row has no owner: undefined from 1 Mar.
    a, b = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "0ba7b810-9dad-11d1-80b4-00c04fd430c8"
    low, high = "0aaaaaaa-0000-4000-8000-000000000000", "faaaaaaa-0000-4000-8000-000000000000"
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    project.source_sql(
        "CREATE TABLE account_history (account_id uuid, start_timestamp timestamptz, "
        "owner_id uuid)",
        "INSERT INTO account_history VALUES "
        f"('{a.upper()}', '2024-01-01 00:00:00+00', '{low}'), "
        f"('{a}', '2024-02-01 00:00:00+00', '{high}'), "
        f"('{a}', '2024-02-01 00:00:00+00', '{low}'), "
        f"('{b}', '2024-01-01 00:00:00+00', '{high}'), "
        f"('{b}', '2024-03-01 00:00:00+00', NULL)",
    )
    project.configure(
        "account_history",
        kind="group_history",
        id_column="account_id",
        group_key="account_id",
        start_time="start_timestamp",
    )
    project.cli("model", "--table", "account_history", "--engine", "postgres", "--execute")

    rows = postgres_schema.execute(
        "SELECT account_id::text, to_char(start_time AT TIME ZONE 'UTC', 'MM-DD'), "
        "to_char(end_time AT TIME ZONE 'UTC', 'MM-DD'), owner_id::text "
        "FROM account_history_intervals ORDER BY 1, 2"
    )
    expected = [
        (b, "01-01", "03-01", high),
        (b, "03-01", None, None),
        (a, "01-01", "02-01", low),
        (a, "02-01", None, high),
    ]
    assert rows == expected
    project.sync("account_history")
    stored = project.query(
        "SELECT account_id, strftime(start_time, '%m-%d'), strftime(end_time, '%m-%d'), "
        "owner_id FROM account_history ORDER BY 1, 2"
    )
    assert stored == expected


def test_model_leaves_out_rows_starting_at_an_infinity_as_the_store_does(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # The store quarantines the rows starting at -infinity, infinity or past year 9999;
    # the view leaves them out, so each company is free from 2024 on, and open.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    project.database_sql(
        "CREATE TABLE company_plan_history (company_id text, start_timestamp timestamptz, "
        "plan text, renews_at timestamptz)",
        "INSERT INTO company_plan_history VALUES ('c1', '-infinity', 'legacy', NULL), "
        "('c1', '2024-01-01 00:00+00', 'free', 'infinity'), ('c1', 'infinity', 'never', NULL), "
        "('c2', '10000-01-01 00:00+00', 'future', NULL), "
        "('c2', '2024-01-01 00:00+00', 'free', '2025-01-01 00:00+00')",
    )
    configure_company_history(project)
    project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")

    # A property that is infinite is kept as the infinity, in both.
    modeled = postgres_schema.execute(
        "SELECT company_id, to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD'), end_time, "
        "plan, CASE WHEN isfinite(renews_at) THEN 'finite' ELSE renews_at::text END "
        "FROM company_plan_history_intervals ORDER BY 1"
    )
    expected = [
        ("c1", "2024-01-01", None, "free", "infinity"),
        ("c2", "2024-01-01", None, "free", "finite"),
    ]
    assert modeled == expected
    project.sync(HISTORY)
    stored = project.query(
        "SELECT company_id, strftime(start_time, '%Y-%m-%d'), end_time, plan, "
        "CASE WHEN isfinite(renews_at) THEN 'finite' ELSE renews_at::VARCHAR END "
        "FROM company_plan_history ORDER BY 1"
    )
    assert stored == expected


def test_model_over_an_epoch_start_column_compares_it_as_stored(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # Epoch seconds: the view orders them as numbers (no time range applies to them).
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    project.database_sql(
        "CREATE TABLE company_plan_history (company_id text, start_timestamp bigint, plan text)",
        "INSERT INTO company_plan_history VALUES ('c1', 1704067200, 'free'), "
        "('c1', 1706745600, 'pro')",
    )
    configure_company_history(project, time_unit="s")
    project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")

    assert postgres_schema.execute(
        "SELECT plan, start_time, end_time FROM company_plan_history_intervals ORDER BY 2"
    ) == [("free", 1704067200, 1706745600), ("pro", 1706745600, None)]


# --- Spark ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local Spark session; without pyspark or Java the tests skip, or fail when CI is set."""
    missing = spark_missing()
    if missing and os.environ.get("CI"):
        pytest.fail(missing, pytrace=False)
    if missing:
        pytest.skip(missing)
    session = local_spark_session()
    yield session
    session.stop()


def spark_missing() -> str | None:
    """Why Spark cannot run here, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install '.[spark]')"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Spark needs Java 17 or newer, and none is on PATH or in JAVA_HOME"
    return None


def spark_rows(spark: Any, sql: str) -> list[tuple]:
    """Rows of a Spark query, read through Arrow so instants keep their zone."""
    table = spark.sql(sql).toArrow()
    return [tuple(row.values()) for row in table.to_pylist()]


@examples(8)
@given(histories=st.lists(rows_strategy, min_size=1, max_size=4))
def test_spark_modeling_gives_the_store_answers(spark: Any, histories: list[list[tuple]]) -> None:
    for rows in histories:
        with tempfile.TemporaryDirectory() as folder:
            project = Project(root=Path(folder), backend="parquet")
            seed(project, rows, probe_moments(rows))
            intervals, enriched = store_answers(project)

            config = project.config()
            for name in (HISTORY, "probes"):
                table = config.table(name)
                path = project.root / "parquet" / f"{table.source_table}.parquet"
                spark.read.parquet(str(path)).createOrReplaceTempView(table.source_table)
            for statement in plan_model_sql(config, HISTORY, "spark", "probes").rendered():
                spark.sql(statement)

            modeled = spark_rows(spark, INTERVALS.format(relation=f"{HISTORY}_intervals"))
            assert sorted(modeled, key=repr) == intervals
            joined = spark_rows(spark, MODEL_ENRICHED.format(relation="probes_enriched"))
            assert sorted(joined, key=repr) == enriched


def test_model_execute_on_spark_writes_the_views_as_parquet(tmp_path: Path, spark: Any) -> None:
    # c1 is free from 1 Jan and team from 1 Feb; the login on 15 Feb happened on team,
    # the one on 15 Jan on free, and c9's has no history.
    project = Project(root=tmp_path, backend="parquet")
    company_history(
        project,
        [("c1", "free", 1, "2024-01-01 00:00:00+00", None), ("c1", "team", 9, "2024-02-01", None)],
    )
    login_events(
        project,
        [
            ("e1", "c1", "2024-01-15 00:00:00+00"),
            ("e2", "c1", "2024-02-15 00:00:00+00"),
            ("e3", "c9", "2024-02-15 00:00:00+00"),
        ],
    )

    printed, enriched = enriched_on_spark(project, HISTORY)

    assert "company_plan_history_intervals: 2 rows" in printed
    assert enriched == [("e1", "free", 1), ("e2", "team", 9), ("e3", None, None)]


def enriched_on_spark(project: Project, history: str) -> tuple[str, list[tuple]]:
    """Model `history` with product_events on Spark; what it prints, and the enriched
    events it wrote (id, plan, seats), by id."""
    out = project.root / "out"
    result = project.cli(
        "model",
        "--table",
        history,
        "--engine",
        "spark",
        "--events",
        "product_events",
        "--execute",
        "--output",
        str(out),
    )
    return result.stdout, written_enrichment(out)


def enriched_in_session(spark: Any, project: Project, history: str) -> list[tuple]:
    """What `enriched_on_spark` writes, modeled in this process on the running session."""
    out = project.root / "out"
    config = project.config()
    planned = plan_model_sql(config, history, "spark", "product_events")
    execute_on_spark(config, [history, "product_events"], planned, out, session=spark)
    return written_enrichment(out)


def written_enrichment(out: Path) -> list[tuple]:
    """The enriched events written under `out` (id, plan, seats), by id."""
    return duckdb.sql(
        f"SELECT insert_id, plan, seats FROM '{out}/product_events_enriched/*.parquet' "
        "ORDER BY insert_id"
    ).fetchall()


# --- Snowflake and BigQuery: no server here, so the SQL is parsed back ------------------


# Spark's SQL is run above instead (and sqlglot reads a Spark CAST back as TRY_CAST).
@pytest.mark.parametrize("engine", ["snowflake", "bigquery", "postgres", "duckdb"])
@pytest.mark.parametrize("settings", [{}, {"mode": "append", "cursor": "updated_at"}])
def test_model_sql_parses_back_to_the_same_tree_in_its_dialect(
    project: Project, engine: str, settings: dict[str, str]
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)], **settings)
    project.source_sql(
        "CREATE TABLE events (event VARCHAR, distinct_id VARCHAR, company_id VARCHAR, "
        "time TIMESTAMPTZ)"
    )
    project.configure("events", kind="events")
    planned = plan_model_sql(project.config(), HISTORY, engine, "events")

    for statement, text in zip(planned.sql.statements(), planned.rendered(), strict=True):
        parsed = sqlglot.parse_one(text, read=engine)
        # One neutral spelling of both trees: equal text means equal trees.
        assert parsed.sql(dialect="duckdb") == for_engine(statement, engine).sql(dialect="duckdb")


def test_snowflake_sql_quotes_every_name_so_none_is_folded_to_upper_case(
    project: Project,
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    login_events(project, [("e1", "c1", "2024-01-15 00:00:00+00")])

    planned = plan_model_sql(project.config(), HISTORY, "snowflake", "product_events")

    for text in planned.rendered():
        names = list(sqlglot.parse_one(text, read="snowflake").find_all(exp.Identifier))
        assert names and all(name.quoted for name in names), text


@pytest.mark.parametrize("engine", ["bigquery", "snowflake", "postgres", "duckdb", "spark"])
def test_no_bare_column_name_is_also_a_tables_or_a_subquerys(project: Project, engine: str) -> None:
    # In BigQuery a bare name that is also a table's or a subquery's in scope means that
    # whole row. A table `plan` with a property `plan`, properties named like the query's
    # own subqueries, and a cursor `loaded`; events with columns `e` and `h`.
    project.source_sql(
        "CREATE TABLE plan (company_id VARCHAR, start_timestamp TIMESTAMPTZ, "
        "loaded BIGINT, plan VARCHAR, ranked BIGINT, rows BIGINT, e BIGINT, h BIGINT)",
        "CREATE TABLE events (event VARCHAR, distinct_id VARCHAR, company_id VARCHAR, "
        "time TIMESTAMPTZ, e BIGINT, h BIGINT)",
    )
    configure_companies(project, "plan", "start_timestamp", mode="append", cursor="loaded")
    project.configure("events", kind="events")

    for text in plan_model_sql(project.config(), "plan", engine, "events").rendered():
        tree = sqlglot.parse_one(text, read=engine)
        ranges = {table.alias_or_name.lower() for table in tree.find_all(exp.Table)}
        ranges |= {query.alias.lower() for query in tree.find_all(exp.Subquery) if query.alias}
        bare = {column.name.lower() for column in tree.find_all(exp.Column) if not column.table}
        assert not bare & ranges, text


def test_enriched_columns_never_repeat_a_name_in_any_case(project: Project) -> None:
    # The events table has `Plan`, `seats` and `company_plan_history_seats`: the history's
    # `plan` and `seats` must come out under names unlike those, ignoring case.
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.source_sql(
        "CREATE TABLE events (event VARCHAR, distinct_id VARCHAR, company_id VARCHAR, "
        'time TIMESTAMPTZ, "Plan" VARCHAR, seats INTEGER, company_plan_history_seats INTEGER)'
    )
    project.configure("events", kind="events")

    enriched = plan_model_sql(project.config(), HISTORY, "duckdb", "events").sql.enriched
    assert enriched is not None
    names = [column.alias_or_name for column in enriched.expression.expressions]
    assert len({name.lower() for name in names}) == len(names), names
    assert names[-3:] == [
        "company_plan_history_plan",
        "company_plan_history_seats_2",
        "updated_at",
    ]


def test_executing_again_after_the_columns_changed_replaces_the_views(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    postgres_schema.execute("CREATE TYPE mood AS ENUM ('sad', 'happy')")
    postgres_schema.execute(
        "ALTER TABLE company_plan_history ADD COLUMN feeling mood DEFAULT 'happy'"
    )
    project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")

    # With a tie-breaker, updated_at is no longer a property: the view loses a column,
    # which CREATE OR REPLACE VIEW alone cannot do.
    configure_company_history(project, tie_breaker="updated_at")
    project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")

    columns = postgres_schema.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'company_plan_history_intervals' "
        f"AND table_schema = '{postgres_schema.name}' ORDER BY ordinal_position"
    )
    assert [name for (name,) in columns] == [
        "company_id",
        "start_time",
        "end_time",
        "plan",
        "seats",
        "feeling",
    ]
    rows = postgres_schema.execute(
        "SELECT plan, seats, feeling::text FROM company_plan_history_intervals"
    )
    assert rows == [("free", 1, "happy")]


# --- Where the model and the store once differed ----------------------------------------------


def model_in_postgres(
    project: Project, *statements: str, events: bool = True, check: bool = True, **settings: str
) -> subprocess.CompletedProcess[str]:
    """The warehouse tables the statements make in PostgreSQL: `hist`, a history of
    companies from `start_ts` (with the settings given), and `ev`, its events unless told
    otherwise; configured, then modeled there with `--execute`."""
    project.database_sql(*statements)
    configure_companies(project, "hist", "start_ts", **settings)
    command = ["model", "--table", "hist", "--engine", "postgres", "--execute"]
    if events:
        project.configure("ev", kind="events")
        command += ["--events", "ev"]
    return project.cli(*command, check=check)


def test_numeric_ids_are_entities_by_their_text_in_the_model_as_in_the_store(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # 1.0 and 1.00 are one number but two ids (rule 7): 1.0 stays free, open, and its
    # event on 15 Feb is on free, not on 1.00's pro.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    model_in_postgres(
        project,
        "CREATE TABLE hist (company_id numeric, start_ts timestamptz, plan text)",
        "INSERT INTO hist VALUES (1.0, '2024-01-01 00:00+00', 'free'), "
        "(1.00, '2024-02-01 00:00+00', 'pro')",
        "CREATE TABLE ev (distinct_id text, time timestamptz, event text, company_id numeric)",
        "INSERT INTO ev VALUES ('u1', '2024-02-15 00:00+00', 'x', 1.0)",
    )

    intervals = postgres_schema.execute(
        "SELECT company_id, plan, end_time FROM hist_intervals ORDER BY 1"
    )
    assert intervals == [("1.0", "free", None), ("1.00", "pro", None)]
    assert postgres_schema.execute("SELECT plan FROM ev_enriched") == [("free",)]
    project.sync("hist")
    project.sync("ev")
    assert project.query(
        "SELECT h.plan FROM events AS e LEFT JOIN hist FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id"
    ) == [("free",)]


@pytest.mark.parametrize(
    ("start_type", "zone", "first_start", "event_time", "expected"),
    [
        # A date starts at midnight UTC: the event at 22:00 on 31 Jan is still on free,
        # whatever zone the session that reads the view is in.
        ("date", "UTC", "2024-01-01", "2024-01-31 22:00+00", "free"),
        # A naive 1 Feb 00:00 in New York is 05:00 UTC: an event at 02:00 UTC is on free.
        ("timestamp", "America/New_York", "2024-01-01 00:00", "2024-02-01 02:00+00", "free"),
        ("timestamp", "America/New_York", "2024-01-01 00:00", "2024-02-01 05:00+00", "pro"),
    ],
)
def test_naive_starts_are_read_in_the_tables_zone_whatever_the_session_zone(
    tmp_path: Path,
    postgres_schema: PostgresSchema,
    start_type: str,
    zone: str,
    first_start: str,
    event_time: str,
    expected: str,
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    second_start = "2024-02-01" if start_type == "date" else "2024-02-01 00:00"
    model_in_postgres(
        project,
        f"CREATE TABLE hist (company_id text, start_ts {start_type}, plan text)",
        f"INSERT INTO hist VALUES ('c1', '{first_start}', 'free'), ('c1', '{second_start}', 'pro')",
        "CREATE TABLE ev (distinct_id text, time timestamptz, event text, company_id text)",
        f"INSERT INTO ev VALUES ('u1', '{event_time}', 'x', 'c1')",
        timezone=zone,
    )

    for session_zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        assert postgres_schema.execute(
            f"SET TIME ZONE '{session_zone}'", "SELECT plan FROM ev_enriched"
        ) == [(expected,)]
    project.sync("hist")
    project.sync("ev")
    assert project.query(
        "SELECT h.plan FROM events AS e LEFT JOIN hist FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id"
    ) == [(expected,)]


def modeled_with_a_users_view(root: Path, schema: PostgresSchema) -> Project:
    """c1's history modeled in PostgreSQL, and a view of the user's own, `my_report`,
    reading the intervals view."""
    project = Project(root=root, backend="postgres", postgres=schema)
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")
    schema.execute("CREATE VIEW my_report AS SELECT plan FROM company_plan_history_intervals")
    return project


def test_executing_again_keeps_a_users_view_that_reads_the_model(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = modeled_with_a_users_view(tmp_path, postgres_schema)
    postgres_schema.execute(
        "INSERT INTO company_plan_history VALUES ('c2', 'team', 3, '2024-01-01 00:00+00', NULL)"
    )

    project.cli("model", "--table", HISTORY, "--engine", "postgres", "--execute")

    assert postgres_schema.execute("SELECT plan FROM my_report ORDER BY 1") == [
        ("free",),
        ("team",),
    ]


def test_a_failure_in_postgres_gives_its_own_sentence(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)

    result = model_in_postgres(
        project,
        "CREATE TABLE hist (company_id text, start_ts bigint, plan text)",
        "CREATE TABLE ev (distinct_id text, time timestamptz, event text, company_id text)",
        check=False,
        time_unit="s",
    )

    assert result.returncode == 1
    message = result.stderr.strip()
    assert "creating the views failed: ERROR: operator does not exist: bigint" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1


def write_parquet(path: Path, sql: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.sql(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")


def test_spark_reads_the_files_a_sync_reads_and_leaves_out_unreadable_starts(
    tmp_path: Path, spark: Any
) -> None:
    # c1: free from 1 Jan (in a file named `_...`), pro from 1 Feb (one folder down, with a
    # seats column the other files lack), team from 1 Mar (two folders down); rows at
    # -infinity, at infinity and in year 12000 cannot be read and are left out, so an event
    # in 2023 finds nothing, as in the store.
    hist, ev = tmp_path / "data" / "my hist", tmp_path / "data" / "ev"
    start = "CAST('{}' AS TIMESTAMPTZ)"
    write_parquet(
        hist / "_2024-01.parquet",
        f"SELECT 'c1' AS company_id, {start.format('2024-01-01 00:00+00')} AS start_ts, "
        f"'free' AS plan UNION ALL SELECT 'c1', {start.format('-infinity')}, 'ancient'",
    )
    write_parquet(
        hist / "x" / "b.parquet",
        f"SELECT 'c1' AS company_id, {start.format('2024-02-01 00:00+00')} AS start_ts, "
        "'pro' AS plan, 5 AS seats",
    )
    write_parquet(
        hist / "x" / "y" / "c.parquet",
        f"SELECT 'c1' AS company_id, {start.format('2024-03-01 00:00+00')} AS start_ts, "
        f"'team' AS plan UNION ALL SELECT 'c1', {start.format('infinity')}, 'never' "
        f"UNION ALL SELECT 'c1', {start.format('12000-01-01 00:00+00')}, 'far'",
    )
    times = ["2023-06-01", "2024-01-15", "2024-02-15", "2024-03-15"]
    write_parquet(
        ev / "x" / "e.parquet",
        " UNION ALL ".join(
            f"SELECT 'e{n}' AS insert_id, 'login' AS event, 'u' AS distinct_id, "
            f"'c1' AS company_id, {start.format(t + ' 00:00+00')} AS time"
            for n, t in enumerate(times)
        ),
    )
    project = Project(root=tmp_path)
    (tmp_path / "pitsync.toml").write_text(
        '[store]\npath = "store.duckdb"\n'
        '[sources.files]\ntype = "parquet"\npath = "data/{table}/**/*.parquet"\n'
        '[tables."my hist"]\nsource = "files"\nfrom = "my hist"\nkind = "group_history"\n'
        'id_column = "company_id"\ngroup_key = "company_id"\nstart_time = "start_ts"\n'
        '[tables.product_events]\nsource = "files"\nfrom = "ev"\nkind = "events"\n',
        encoding="utf-8",
    )

    modeled = enriched_in_session(spark, project, "my hist")

    expected = [("e0", None, None), ("e1", "free", None), ("e2", "pro", 5), ("e3", "team", None)]
    assert modeled == expected
    project.cli("sync", "--all")
    assert (
        project.query(
            'SELECT e.insert_id, h.plan, h.seats FROM events AS e LEFT JOIN "my hist" '
            "FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id ORDER BY 1"
        )
        == expected
    )


def test_a_view_of_the_users_that_blocks_new_columns_is_named(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = modeled_with_a_users_view(tmp_path, postgres_schema)

    # updated_at becomes the tie-breaker: the view loses a column, so it must be dropped,
    # and my_report is in the way.
    configure_company_history(project, tie_breaker="updated_at")
    result = project.cli(
        "model", "--table", HISTORY, "--engine", "postgres", "--execute", check=False
    )

    assert result.returncode == 1
    assert "cannot drop view" in result.stderr
    assert f"DETAIL: view {postgres_schema.name}.my_report depends on" in result.stderr


def test_spark_says_why_it_cannot_read_files_of_one_table(tmp_path: Path, spark: Any) -> None:
    # One file types seats as a number, the other as text: Spark cannot merge them.
    hist = tmp_path / "data" / HISTORY
    write_parquet(
        hist / "a.parquet",
        "SELECT 'c1' AS company_id, TIMESTAMPTZ '2024-01-01 00:00+00' AS start_timestamp, "
        "'free' AS plan, 1 AS seats",
    )
    write_parquet(
        hist / "b.parquet",
        "SELECT 'c1' AS company_id, TIMESTAMPTZ '2024-02-01 00:00+00' AS start_timestamp, "
        "'pro' AS plan, 'ten' AS seats",
    )
    project = Project(root=tmp_path)
    (tmp_path / "pitsync.toml").write_text(
        '[store]\npath = "store.duckdb"\n'
        '[sources.files]\ntype = "parquet"\npath = "data/{table}/*.parquet"\n'
        f'[tables.{HISTORY}]\nsource = "files"\nkind = "group_history"\n'
        'id_column = "company_id"\ngroup_key = "company_id"\nstart_time = "start_timestamp"\n',
        encoding="utf-8",
    )

    config = project.config()
    planned = plan_model_sql(config, HISTORY, "spark")
    with pytest.raises(SourceError) as raised:
        execute_on_spark(config, [HISTORY], planned, None, session=spark)

    message = str(raised.value)
    assert message.startswith("Spark could not run the model:")
    assert "merge" in message.lower() and "o3" not in message
    assert spark_rows(spark, "SELECT 1 AS one") == [(1,)], "the session given is left running"


def test_the_last_moments_of_year_9999_are_kept_in_every_session_zone(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # Noon on 31 December 9999 in New York is 17:00 UTC, still within year 9999: the store
    # keeps the row, and so must the view, whatever zone its reader's session is in.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    model_in_postgres(
        project,
        "CREATE TABLE hist (company_id text, start_ts timestamp, plan text)",
        "INSERT INTO hist VALUES ('c9', '9999-12-31 12:00', 'last')",
        events=False,
        timezone="America/New_York",
    )

    for session_zone in ("UTC", "Asia/Tokyo", "Pacific/Kiritimati"):
        assert postgres_schema.execute(
            f"SET TIME ZONE '{session_zone}'", "SELECT count(*) FROM hist_intervals"
        ) == [(1,)]
    project.sync("hist")
    assert project.query("SELECT count(*) FROM hist") == [(1,)]


# c1 was loaded as team for 1 Feb, then corrected to pro by a later load: pro counts,
# though team would win a tie. c1's row for 1 Mar has no cursor value, so the store
# quarantines it and pro stays open. c2's two rows for 1 Jan come in one load: a tie,
# which free wins over basic.
APPENDED_HISTORY = (
    "INSERT INTO hist VALUES ('c1', '2024-01-01 00:00+00', 'free', 1), "
    "('c1', '2024-02-01 00:00+00', 'team', 1), ('c1', '2024-02-01 00:00+00', 'pro', 2), "
    "('c1', '2024-03-01 00:00+00', 'enterprise', NULL), "
    "('c2', '2024-01-01 00:00+00', 'basic', 3), ('c2', '2024-01-01 00:00+00', 'free', 3)"
)
APPENDED_INTERVALS = [
    ("c1", "01-01", "02-01", "free"),
    ("c1", "02-01", None, "pro"),
    ("c2", "01-01", None, "free"),
]
APPEND_MODE = {"mode": "append", "cursor": "loaded_at"}


def test_an_append_table_keeps_each_keys_latest_load_in_postgres_as_in_the_store(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    model_in_postgres(
        project,
        "CREATE TABLE hist (company_id text, start_ts timestamptz, plan text, loaded_at bigint)",
        APPENDED_HISTORY,
        events=False,
        **APPEND_MODE,
    )

    assert (
        postgres_schema.execute(
            "SELECT company_id, to_char(start_time AT TIME ZONE 'UTC', 'MM-DD'), "
            "to_char(end_time AT TIME ZONE 'UTC', 'MM-DD'), plan FROM hist_intervals "
            "ORDER BY 1, 2"
        )
        == APPENDED_INTERVALS
    )
    project.sync("hist")
    assert (
        project.query(
            "SELECT company_id, strftime(start_time, '%m-%d'), strftime(end_time, '%m-%d'), "
            "plan FROM hist ORDER BY 1, 2"
        )
        == APPENDED_INTERVALS
    )


def test_an_append_table_keeps_each_keys_latest_load_on_spark(tmp_path: Path, spark: Any) -> None:
    project = Project(root=tmp_path, backend="parquet")
    project.source_sql(
        "CREATE TABLE hist (company_id VARCHAR, start_ts TIMESTAMPTZ, plan VARCHAR, "
        "loaded_at BIGINT)",
        APPENDED_HISTORY,
    )
    configure_companies(project, "hist", "start_ts", **APPEND_MODE)
    spark.read.parquet(str(tmp_path / "parquet" / "hist.parquet")).createOrReplaceTempView("hist")

    for statement in plan_model_sql(project.config(), "hist", "spark").rendered():
        spark.sql(statement)

    assert (
        spark_rows(
            spark,
            "SELECT company_id, date_format(start_time, 'MM-dd'), "
            "date_format(end_time, 'MM-dd'), plan FROM hist_intervals ORDER BY 1, 2",
        )
        == APPENDED_INTERVALS
    )


# c1 is free from 1 Jan. Of the events on it, only e1 has a name and a time a moment can
# have; the store quarantines the others, and the enriched view leaves them out.
QUARANTINED_EVENTS = (
    "INSERT INTO ev VALUES ('e1', 'u1', '2024-02-15 00:00+00', 'login', 'c1', 1), "
    "('e2', 'u1', NULL, 'login', 'c1', 1), ('e3', 'u1', '2024-02-15 00:00+00', NULL, 'c1', 1), "
    "('e4', 'u1', '2024-02-15 00:00+00', '', 'c1', 1), ('e5', 'u1', 'infinity', 'login', 'c1', 1), "
    "('e6', 'u1', '-infinity', 'login', 'c1', 1), "
    "('e7', 'u1', '10000-01-01 00:00+00', 'login', 'c1', 1)"
)
EVENTS_TABLE = (
    "CREATE TABLE ev (insert_id {text}, distinct_id {text}, time timestamptz, event {text}, "
    "company_id {text}, loaded_at bigint)"
)
ONE_PLAN = (
    "CREATE TABLE hist (company_id {text}, start_ts timestamptz, plan {text})",
    "INSERT INTO hist VALUES ('c1', '2024-01-01 00:00+00', 'free')",
)
STORED_EVENTS = (
    "SELECT e.insert_id, h.plan FROM events AS e "
    "LEFT JOIN hist FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id"
)


def events_in_postgres(project: Project, *rows: str, **settings: str) -> None:
    """`hist` (c1 free from 1 Jan) and the events `ev` of these rows, modeled in PostgreSQL."""
    statements = [*ONE_PLAN, EVENTS_TABLE, *rows]
    project.database_sql(*(statement.format(text="text") for statement in statements))
    configure_companies(project, "hist", "start_ts")
    project.configure("ev", kind="events", **settings)
    project.cli("model", "--table", "hist", "--engine", "postgres", "--execute", "--events", "ev")


def test_events_the_store_quarantines_are_left_out_of_the_enriched_view_in_postgres(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    events_in_postgres(project, QUARANTINED_EVENTS)

    assert postgres_schema.execute("SELECT insert_id, plan FROM ev_enriched") == [("e1", "free")]
    project.sync("hist")
    project.sync("ev")
    assert project.query(STORED_EVENTS) == [("e1", "free")]


def test_appended_events_without_a_cursor_or_an_insert_id_are_left_out_in_postgres(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # e8 has no cursor value, and the last two events no insert id (an empty one is none
    # either): the store quarantines all three.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    events_in_postgres(
        project,
        "INSERT INTO ev VALUES ('e1', 'u1', '2024-02-15 00:00+00', 'login', 'c1', 1), "
        "('e8', 'u1', '2024-02-15 00:00+00', 'login', 'c1', NULL), "
        "(NULL, 'u1', '2024-02-16 00:00+00', 'login', 'c1', 2), "
        "('', 'u1', '2024-02-17 00:00+00', 'login', 'c1', 2)",
        mode="append",
        cursor="loaded_at",
        insert_id="insert_id",
    )

    assert postgres_schema.execute("SELECT insert_id, plan FROM ev_enriched") == [("e1", "free")]
    project.sync("hist")
    project.sync("ev")
    assert project.query(STORED_EVENTS) == [("e1", "free")]


def test_a_text_cursors_latest_load_is_the_greatest_by_code_point_in_postgres_as_in_the_store(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # Under a linguistic collation `Z-batch` sorts after `a-batch`; by code point, which
    # the store orders by, `a` (0x61) is after `Z` (0x5A), so a-batch is the latest load.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    model_in_postgres(
        project,
        "CREATE TABLE hist (company_id text, start_ts timestamptz, plan text, "
        'loaded_at text COLLATE "und-x-icu")',
        "INSERT INTO hist VALUES ('c1', '2024-01-01 00:00+00', 'from Z', 'Z-batch'), "
        "('c1', '2024-01-01 00:00+00', 'from a', 'a-batch')",
        events=False,
        **APPEND_MODE,
    )

    assert postgres_schema.execute("SELECT plan FROM hist_intervals") == [("from a",)]
    project.sync("hist")
    assert project.query("SELECT plan FROM hist") == [("from a",)]


def test_the_duckdb_model_cuts_nanoseconds_off_naive_times_as_the_store_does(
    project: Project,
) -> None:
    # Rounded, 00:00:00.000000999 would become 00:00:00.000001 and tie with b's start;
    # cut off (rule 6), a holds from midnight to b's start, when the event is.
    project.source_sql(
        "CREATE TABLE hist (company_id VARCHAR, start_ts TIMESTAMP_NS, plan VARCHAR)",
        "INSERT INTO hist VALUES ('c1', '2024-01-01 00:00:00.000000999', 'a'), "
        "('c1', '2024-01-01 00:00:00.000001', 'b')",
        "CREATE TABLE ev (distinct_id VARCHAR, event VARCHAR, time TIMESTAMP_NS, company_id "
        "VARCHAR)",
        "INSERT INTO ev VALUES ('u1', 'login', '2024-01-01 00:00:00.000000999', 'c1')",
    )
    configure_companies(project, "hist", "start_ts")
    project.configure("ev", kind="events")
    statements = plan_model_sql(project.config(), "hist", "duckdb", "ev").rendered()

    with duckdb.connect(str(project.warehouse)) as con:
        con.execute("SET TimeZone = 'UTC'")
        for statement in statements:
            con.execute(statement)
        intervals = con.execute(
            "SELECT plan, strftime(start_time, '%H:%M:%S.%f'), strftime(end_time, '%S.%f') "
            "FROM hist_intervals ORDER BY start_time"
        ).fetchall()
        enriched = con.execute("SELECT event, plan FROM ev_enriched").fetchall()

    assert intervals == [("a", "00:00:00.000000", "00.000001"), ("b", "00:00:00.000001", None)]
    assert enriched == [("login", "a")]


def test_printed_spark_views_are_not_qualified_by_the_sources_schema(
    tmp_path: Path, postgres_schema: PostgresSchema, spark: Any
) -> None:
    # Spark's temporary views live outside every database, and refuse a qualified name.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    project.database_sql(*(statement.format(text="text") for statement in ONE_PLAN))
    configure_companies(project, "hist", "start_ts")
    rows = [("c1", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "free")]
    spark.createDataFrame(
        rows, "company_id string, start_ts timestamp, plan string"
    ).createOrReplaceTempView("hist")

    [statement] = plan_model_sql(project.config(), "hist", "spark").rendered()
    # The source table, read here from the view registered above.
    spark.sql(statement.replace(f"`{postgres_schema.name}`.`hist`", "`hist`"))

    assert spark_rows(spark, "SELECT plan FROM hist_intervals") == [("free",)]


def test_events_the_store_quarantines_are_left_out_of_the_enriched_view_on_spark(
    tmp_path: Path, spark: Any
) -> None:
    project = Project(root=tmp_path, backend="parquet")
    statements = [*ONE_PLAN, EVENTS_TABLE, QUARANTINED_EVENTS]
    project.source_sql(*(statement.format(text="VARCHAR") for statement in statements))
    configure_companies(project, "hist", "start_ts")
    project.configure("ev", kind="events")
    for name in ("hist", "ev"):
        spark.read.parquet(str(tmp_path / "parquet" / f"{name}.parquet")).createOrReplaceTempView(
            name
        )

    for statement in plan_model_sql(project.config(), "hist", "spark", "ev").rendered():
        spark.sql(statement)

    assert spark_rows(spark, "SELECT insert_id, plan FROM ev_enriched") == [("e1", "free")]


def test_an_events_group_key_spelled_in_another_case_is_joined_as_the_store_joins_it(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # The events name the group key COMPANY_ID: c1's login on 15 Feb is on free.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    model_in_postgres(
        project,
        *(statement.format(text="text") for statement in ONE_PLAN),
        'CREATE TABLE ev (distinct_id text, time timestamptz, event text, "COMPANY_ID" text)',
        "INSERT INTO ev VALUES ('u1', '2024-02-15 00:00+00', 'login', 'c1')",
    )

    assert postgres_schema.execute('SELECT "COMPANY_ID", plan FROM ev_enriched') == [("c1", "free")]
    project.sync("hist")
    project.sync("ev")
    assert project.query(
        "SELECT e.company_id, h.plan FROM events AS e LEFT JOIN hist FOR SYSTEM_TIME AS OF "
        "e.time AS h ON h.company_id = e.company_id"
    ) == [("c1", "free")]


@pytest.mark.parametrize("name", ["h" * 54, "é" * 27])
def test_a_view_name_postgresql_would_cut_is_refused_before_anything_runs(
    tmp_path: Path, postgres_schema: PostgresSchema, name: str
) -> None:
    # `<name>_intervals` is 64 bytes (27 é are 54 bytes): PostgreSQL would keep 63 of them,
    # `<name>_interval`, which is the name of a view of the user's own.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    project.database_sql(
        ONE_PLAN[0].format(text="text"),
        ONE_PLAN[1],
        f"CREATE VIEW \"{name}_interval\" AS SELECT 'mine' AS owner",
    )
    configure_companies(project, name, "start_ts", **{"from": "hist"})
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(text.replace(f"[tables.{name}]", f'[tables."{name}"]'), "utf-8")

    result = project.cli("model", "--table", name, "--engine", "postgres", "--execute", check=False)

    assert result.returncode == 1
    assert f"`{name}_intervals` has a name of 64 bytes" in result.stderr
    assert "keeps 63 bytes" in result.stderr and "Traceback" not in result.stderr
    assert postgres_schema.execute(f'SELECT owner FROM "{name}_interval"') == [("mine",)]


def test_an_enriched_column_name_postgresql_would_cut_is_refused(project: Project) -> None:
    # The events share both properties' names, so the view names them after the history
    # table: 67 bytes each, which PostgreSQL would cut to the same 63.
    history = "h" * 40
    first, second = "property_number_one_xxxxxx", "property_number_one_xxxxxy"
    project.source_sql(
        f"CREATE TABLE hist (company_id VARCHAR, start_ts TIMESTAMPTZ, {first} INT, {second} INT)",
        "CREATE TABLE events (event VARCHAR, distinct_id VARCHAR, company_id VARCHAR, "
        f"time TIMESTAMPTZ, {first} INT, {second} INT)",
    )
    configure_companies(project, history, "start_ts", **{"from": "hist"})
    project.configure("events", kind="events")

    with pytest.raises(ConfigError, match=f"`{history}_{first}`.* 67 bytes.* keeps 63"):
        plan_model_sql(project.config(), history, "postgres", "events")
    assert plan_model_sql(project.config(), history, "duckdb", "events").sql.enriched


@pytest.mark.parametrize(
    ("relation", "kind"),
    [
        ("CREATE TABLE hist_intervals (owner text)", "table"),
        ("CREATE VIEW hist_intervals AS SELECT 'mine'::text AS owner", "view"),
    ],
)
def test_a_relation_of_the_users_with_a_views_name_is_not_replaced(
    tmp_path: Path, postgres_schema: PostgresSchema, relation: str, kind: str
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    result = model_in_postgres(
        project,
        *(statement.format(text="text") for statement in ONE_PLAN),
        relation,
        events=False,
        check=False,
    )

    assert result.returncode == 1
    message = result.stderr.strip()
    assert f"{kind} `{postgres_schema.name}.hist_intervals` is in the way" in message
    assert "pitsync did not make it" in message and "drop or rename it" in message
    assert len(message.splitlines()) == 1
    # Only this test's schema: tests running beside it make relations of that name too.
    assert postgres_schema.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'hist_intervals' "
        f"AND table_schema = '{postgres_schema.name}'"
    ) == [("owner",)]


def test_a_failure_of_creating_the_views_is_reported_as_it_first_happened(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # Every transaction is read-only: creating the views fails, and that is what is said,
    # not why dropping them in a second try failed as well.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    project.database_sql(*(statement.format(text="text") for statement in ONE_PLAN))
    configure_companies(project, "hist", "start_ts")
    read_only = postgres_schema.uri + "?options=-c%20default_transaction_read_only%3Don"
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(text.replace(postgres_schema.uri, read_only), "utf-8")

    result = project.cli(
        "model", "--table", "hist", "--engine", "postgres", "--execute", check=False
    )

    assert result.returncode == 1
    assert "cannot execute CREATE VIEW in a read-only transaction" in result.stderr
    assert "DROP VIEW" not in result.stderr


def spark_model_without_java(project: Project, java_home: Path) -> str:
    """What `model --engine spark --execute` says, run with JAVA_HOME set to `java_home`."""
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    result = project.cli(
        "model",
        "--table",
        HISTORY,
        "--engine",
        "spark",
        "--execute",
        check=False,
        env={"JAVA_HOME": str(java_home)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def require_pyspark() -> None:
    """Without pyspark the test skips, saying so, or fails when CI is set."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing = "pyspark is not installed: pip install '.[spark]'"
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)


def test_spark_without_java_is_one_line_saying_where_java_was_looked_for(tmp_path: Path) -> None:
    require_pyspark()
    missing = tmp_path / "no-java"

    message = spark_model_without_java(Project(root=tmp_path, backend="parquet"), missing)

    assert message == (
        f"pitsync: error: Spark cannot start: JAVA_HOME is {missing}, which has no bin/java; "
        "set JAVA_HOME to a Java installation, 17 or newer, or unset it to use the java on PATH"
    )


def test_a_java_that_fails_to_start_spark_ends_in_one_line(tmp_path: Path) -> None:
    # A `java` that exits at once: Spark's gateway never starts.
    require_pyspark()
    java = tmp_path / "broken-java" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    java.chmod(0o755)

    message = spark_model_without_java(
        Project(root=tmp_path, backend="parquet"), java.parent.parent
    )

    assert message.splitlines()[-1].startswith("pitsync: error: Spark could not start: ")


@pytest.mark.parametrize("relative", [True, False])
def test_spark_output_refuses_a_table_name_leading_out_of_the_folder(
    tmp_path: Path, relative: bool
) -> None:
    # `../victim` and `<tmp>/victim` would both be written to <tmp>/victim_intervals.
    victim = tmp_path / "victim_intervals"
    (victim / "precious.txt").parent.mkdir()
    (victim / "precious.txt").write_text("keep", encoding="utf-8")
    name = "../victim" if relative else str(tmp_path / "victim")
    project = Project(root=tmp_path, backend="parquet")
    project.source_sql(
        "CREATE TABLE hist (company_id VARCHAR, start_ts TIMESTAMPTZ, plan VARCHAR)",
        "INSERT INTO hist VALUES ('c1', '2024-01-01 00:00+00', 'free')",
    )
    configure_companies(project, "hist", "start_ts")
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        text.replace("[tables.hist]", f'[tables."{name}"]\nfrom = "hist"'), "utf-8"
    )

    command = ["model", "--table", name, "--engine", "spark", "--execute"]
    result = project.cli(*command, "--output", str(tmp_path / "out"), check=False)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"pitsync: error: --output {tmp_path / 'out'}: view `{name}_intervals` would be "
        f"written to {tmp_path / 'out' / (name + '_intervals')}, outside that folder, "
        "replacing what is there; give its table a name in pitsync.toml without `..` or a "
        "leading `/`"
    )
    assert (victim / "precious.txt").read_text(encoding="utf-8") == "keep"


def test_a_table_of_another_kind_is_named_by_its_kind(project: Project) -> None:
    project.source_sql(*(statement.format(text="VARCHAR") for statement in ONE_PLAN))
    configure_companies(project, "hist", "start_ts")
    project.configure("people", kind="user_profiles", id_column="user_id")

    refused = project.cli(
        "model", "--table", "hist", "--engine", "duckdb", "--events", "people", check=False
    )

    assert refused.returncode == 1
    assert "--events `people` is a user_profiles table; name an events table" in refused.stderr


@pytest.mark.parametrize(
    ("id_type", "id_value", "engine"),
    [
        ("BLOB", "'\\x68\\x69'::BLOB", "postgres"),
        ("TIMESTAMPTZ", "TIMESTAMPTZ '2024-01-01 00:00+00'", "duckdb"),
        ("DATE", "DATE '2024-01-01'", "spark"),
        ("INTERVAL", "INTERVAL 1 DAY", "snowflake"),
        ("INTEGER[]", "[1, 2]", "bigquery"),
    ],
)
def test_an_id_column_each_engine_writes_as_its_own_text_is_refused(
    project: Project, id_type: str, id_value: str, engine: str
) -> None:
    # The bytes `hi` are `hi` in the store and `\x6869` in PostgreSQL; a time's text
    # follows the session's zone: the view would file the entity apart from the store.
    project.source_sql(
        f"CREATE TABLE hist (company_id {id_type}, start_ts TIMESTAMPTZ, plan VARCHAR)",
        f"INSERT INTO hist VALUES ({id_value}, '2024-01-01 00:00+00', 'free')",
    )
    configure_companies(project, "hist", "start_ts")

    refused = project.cli("model", "--table", "hist", "--engine", engine, check=False)

    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "its id column `company_id` is of type" in refused.stderr
    assert "model ids of text or numbers" in refused.stderr


def test_an_events_column_joined_on_that_each_engine_writes_its_own_way_is_refused(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    # The history's ids are text; the events' company_id is a time, whose text in a
    # view would follow the session's zone and date style.
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    refused = model_in_postgres(
        project,
        *(statement.format(text="text") for statement in ONE_PLAN),
        "CREATE TABLE ev (distinct_id text, time timestamptz, event text, company_id timestamptz)",
        "INSERT INTO ev VALUES ('u1', '2024-02-15 00:00+00', 'login', '2024-01-01 00:00+00')",
        check=False,
    )

    assert refused.returncode == 1
    assert (
        "table `ev`: its column `company_id` (joined with the ids of `hist`) is of type timestamp"
    ) in refused.stderr
    views = postgres_schema.execute(
        "SELECT table_name FROM information_schema.views "
        f"WHERE table_schema = '{postgres_schema.name}'"
    )
    assert views == []


def test_uuid_and_integer_ids_are_modeled(project: Project) -> None:
    project.source_sql(
        "CREATE TABLE hist (company_id UUID, start_ts TIMESTAMPTZ, plan VARCHAR)",
        "INSERT INTO hist VALUES ('00000000-0000-0000-0000-00000000000a', "
        "'2024-01-01 00:00+00', 'free')",
        "CREATE TABLE ints (company_id HUGEINT, start_ts TIMESTAMPTZ, plan VARCHAR)",
    )
    configure_companies(project, "hist", "start_ts")
    configure_companies(project, "ints", "start_ts")

    for table in ("hist", "ints"):
        printed = project.cli("model", "--table", table, "--engine", "postgres")
        assert f'CREATE OR REPLACE VIEW "{table}_intervals"' in printed.stdout


def test_a_from_in_another_case_is_modeled_under_the_tables_own_name(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    model_in_postgres(
        project,
        *(statement.format(text="text") for statement in ONE_PLAN),
        events=False,
        **{"from": "HIST"},
    )

    assert postgres_schema.execute("SELECT company_id, plan FROM hist_intervals") == [
        ("c1", "free")
    ]


def test_the_duckdb_model_compares_text_by_code_point_whatever_the_columns_collation(
    project: Project,
) -> None:
    # By code point `a` (97) is after `B` (66), the latest load, and `b` after `C`, the
    # tie's winner; without case, as the columns would compare, each the other way.
    project.source_sql(
        "CREATE TABLE hist (company_id VARCHAR, start_ts TIMESTAMPTZ, "
        "plan VARCHAR COLLATE NOCASE, loaded_at VARCHAR COLLATE NOCASE)",
        "INSERT INTO hist VALUES ('c1', '2024-01-01', 'pro', 'a'), "
        "('c1', '2024-01-01', 'free', 'B'), ('c2', '2024-01-01', 'b', 'x'), "
        "('c2', '2024-01-01', 'C', 'x')",
    )
    configure_companies(project, "hist", "start_ts", **APPEND_MODE)
    statements = plan_model_sql(project.config(), "hist", "duckdb").rendered()

    with duckdb.connect(str(project.warehouse)) as con:
        for statement in statements:
            con.execute(statement)
        modeled = con.execute("SELECT company_id, plan FROM hist_intervals ORDER BY 1").fetchall()

    assert modeled == [("c1", "pro"), ("c2", "b")]
    project.sync("hist")
    assert project.query("SELECT company_id, plan FROM hist ORDER BY 1") == modeled


@pytest.mark.parametrize(
    ("table", "source_table", "view"),
    [("plan", "plan_intervals", "plan_intervals"), ("ev", "EV_ENRICHED", "ev_enriched")],
)
def test_a_view_named_as_a_table_it_reads_is_refused_before_anything_runs(
    tmp_path: Path, table: str, source_table: str, view: str
) -> None:
    # Spark would see the view read itself; PostgreSQL would refuse to replace the very
    # table being modeled. Either way, the table's section wants another name.
    project = Project(root=tmp_path, backend="parquet")
    project.source_sql(
        *(statement.format(text="VARCHAR") for statement in ONE_PLAN),
        EVENTS_TABLE.format(text="VARCHAR"),
    )
    history = {"from": "hist"} if table == "ev" else {"from": source_table}
    events = {"from": source_table} if table == "ev" else {"from": "ev"}
    source_files = tmp_path / "parquet"
    (source_files / "hist.parquet").rename(source_files / f"{history['from']}.parquet")
    (source_files / "ev.parquet").rename(source_files / f"{events['from']}.parquet")
    configure_companies(project, "plan", "start_ts", **history)
    project.configure("ev", kind="events", **events)

    command = ["model", "--table", "plan", "--events", "ev", "--engine", "spark", "--execute"]
    result = project.cli(*command, check=False)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"pitsync: error: table `{table}`: its view `{view}` would have the name of the "
        f"source table `{table}` reads, in that table's place; give `{table}` another "
        f'name in pitsync.toml (`from = "{source_table}"` still reads the same source table)'
    )


def test_the_views_events_made_name_what_to_do_when_they_block_new_columns(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    project = Project(root=tmp_path, backend="postgres", postgres=postgres_schema)
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    login_events(project, [("e1", "c1", "2024-02-01 00:00:00+00")])
    command = ["model", "--table", HISTORY, "--engine", "postgres", "--execute"]
    project.cli(*command, "--events", "product_events")

    # updated_at is no longer a property: the intervals lose a column, so their view is
    # dropped and made anew, which the enriched view made with --events prevents.
    configure_company_history(project, tie_breaker="updated_at")
    refused = project.cli(*command, check=False)

    assert refused.returncode == 1
    assert "product_events_enriched depends on view" in refused.stderr
    assert refused.stderr.rstrip().endswith(
        "drop the views that depend on them (one made by `pitsync model --events NAME` is "
        "made again by running the command with that --events), then run the command again"
    )
    project.cli(*command, "--events", "product_events")
    columns = postgres_schema.execute(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_name = '{HISTORY}_intervals' AND table_schema = '{postgres_schema.name}'"
    )
    assert "updated_at" not in {name for (name,) in columns}


@pytest.mark.parametrize(
    ("options", "said", "status"),
    [
        (["--engine", "duckdb", "--execute"], "--execute runs on postgres or spark; for duckdb", 2),
        (["--engine", "duckdb", "--output", "out"], "--output goes with --engine spark", 2),
        (["--engine", "spark", "--execute", "--output", "taken"], "--output taken is a file", 1),
    ],
)
def test_options_that_cannot_run_are_refused_before_the_source_is_read(
    tmp_path: Path, options: list[str], said: str, status: int
) -> None:
    # Options that do not go together are a usage error (2); a file in the way, not.
    project = Project(root=tmp_path)
    configure_companies(project, "hist", "start_ts")  # its warehouse file does not exist
    (tmp_path / "taken").write_text("a file", encoding="utf-8")

    result = project.cli("model", "--table", "hist", *options, check=False)

    assert result.returncode == status
    assert result.stderr.startswith(f"pitsync: error: {said}")
    assert not project.warehouse.exists()
