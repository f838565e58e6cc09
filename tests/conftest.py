"""Shared test scaffolding: a real warehouse, a config, and a store per test.

Tests build the warehouse as a DuckDB file. With another backend (Parquet files, a
PostgreSQL schema, an SQLite file) every table of that file is copied there after each
change, and the config reads the copy, so one test states one answer for every source.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pytest

from pitsync.config import Config, load_config
from pitsync.connectors.runs import RunRecord
from pitsync.connectors.sync import SyncOptions, sync_table
from pitsync.queries.execute import QuerySession

UTC = dt.UTC

BACKENDS = ("duckdb", "parquet", "postgres", "sqlite")
POSTGRES_URI_ENV = "PITSYNC_TEST_POSTGRES_URI"
DEFAULT_POSTGRES_URI = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "pitsync_test_"

# Modules whose tests run once per backend with the same expected values.
EVERY_BACKEND_MODULES = {
    "test_point_in_time_rules",
    "test_reported_cases",
    "test_append_sync",
    "test_mirror_sync",
}
# Tests of those modules that stay on the DuckDB file, and why.
DUCKDB_ONLY = {
    # It writes its own nanosecond Parquet file and reads it through a source of its own;
    # the warehouse backend takes no part, so other backends would only repeat it.
    "test_nanosecond_parquet_times_are_truncated_not_rounded",
}


def utc(text: str) -> dt.datetime:
    """A UTC instant from ISO text, for expected values."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Project:
    """A warehouse (a DuckDB file, copied to the backend), its pitsync.toml, and a store."""

    root: Path
    backend: str = "duckdb"
    postgres: PostgresSchema | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def config_path(self) -> Path:
        return self.root / "pitsync.toml"

    @property
    def store(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def sqlite_file(self) -> Path:
        return self.root / "warehouse.sqlite"

    def source_sql(self, *statements: str) -> None:
        """Run SQL against the warehouse file, then copy its tables to the backend."""
        con = duckdb.connect(str(self.warehouse))
        try:
            con.execute("SET TimeZone = 'UTC'")
            for statement in statements:
                con.execute(statement)
            if self.backend != "duckdb":
                self.export(con)
        finally:
            con.close()

    def export(self, con: duckdb.DuckDBPyConnection) -> None:
        """Copy every table, so a test need not say which ones it changed."""
        tables = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        if self.backend == "parquet":
            (self.root / "parquet").mkdir(exist_ok=True)
            for table in tables:
                target = sql_literal(str(self.root / "parquet" / f"{table}.parquet"))
                con.execute(f"COPY {quoted(table)} TO {target} (FORMAT parquet)")
        elif self.backend == "postgres":
            assert self.postgres is not None
            for table in tables:
                self.postgres.ingest(table, con.sql(f"FROM {quoted(table)}").to_arrow_table())
        else:
            ingest_sqlite(self.sqlite_file, {table: sqlite_rows(con, table) for table in tables})

    def database_sql(self, *statements: str) -> list[tuple]:
        """Run SQL in the backend database itself (PostgreSQL schema or SQLite file).

        Returns the last statement's rows.
        """
        if self.backend == "postgres":
            assert self.postgres is not None
            return self.postgres.execute(*statements)
        assert self.backend == "sqlite", "database_sql needs the postgres or sqlite backend"
        con = sqlite3.connect(self.sqlite_file)
        try:
            rows: list[tuple] = []
            for statement in statements:
                rows = con.execute(statement).fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    def configure(self, name: str, **settings: Any) -> None:
        """Add a [tables.NAME] section (source defaults to the warehouse)."""
        self.tables[name] = {"source": "warehouse", **settings}
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        lines = ["[store]", 'path = "store.duckdb"', "[sources.warehouse]", *self.source_keys()]
        for name, settings in self.tables.items():
            lines.append(f"[tables.{name}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in settings.items())
        self.config_path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")

    def source_keys(self) -> list[str]:
        """The [sources.warehouse] section that reads this project's backend."""
        if self.backend == "parquet":
            return ['type = "parquet"', 'path = "parquet/{table}.parquet"']
        if self.backend == "postgres":
            assert self.postgres is not None
            return [
                'type = "postgres"',
                f"uri = {toml_value(self.postgres.uri)}",
                f"schema = {toml_value(self.postgres.name)}",
            ]
        if self.backend == "sqlite":
            return ['type = "sqlite"', 'path = "warehouse.sqlite"']
        return ['type = "duckdb"', 'path = "warehouse.duckdb"']

    def config(self) -> Config:
        return load_config(str(self.config_path))

    def sync(self, name: str, *, strict: bool = False) -> RunRecord:
        config = self.config()
        return sync_table(config, config.table(name), SyncOptions(strict=strict))

    def query(self, sql: str) -> list[tuple]:
        with QuerySession(self.store) as session:
            return session.query(sql).fetchall()

    def cli(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `pitsync` command as a subprocess in the project folder."""
        command = [sys.executable, "-m", "pitsync.cli", "--config", str(self.config_path), *args]
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, env=env, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pitsync {args} failed ({result.returncode}):\n{result.stderr}")
        return result


def stopped_by(job: subprocess.Popen[str], signum: int, timeout: float = 30) -> str:
    """Send the signal; the job's standard error once it ended, killed if it went on
    past `timeout` seconds (the test then fails, leaving no process behind)."""
    job.send_signal(signum)
    try:
        _, stderr = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.kill()
        raise
    return stderr


def arrow_held_per_batch(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes Arrow holds after each batch of a profile import is applied, filled in as
    the import runs."""
    from pitsync.connectors import profile_updates

    held: list[int] = []
    apply_batch = profile_updates.apply_batch

    def measured(*args: Any) -> None:
        apply_batch(*args)
        gc.collect()
        held.append(pa.total_allocated_bytes())

    monkeypatch.setattr(profile_updates, "apply_batch", measured)
    return held


def growth_per_batch(held: list[int]) -> float:
    """How much more Arrow holds after each batch, from a quarter of the batches to three
    quarters: away from the start and the end, where the read-ahead fills and drains."""
    first, last = len(held) // 4, 3 * len(held) // 4
    return (held[last] - held[first]) / (last - first)


def unreadable(path: Path) -> list[str]:
    """Make the file unreadable; returns the prefix a command needs to be refused it too.

    Root reads any file whatever its mode, unless its right to override modes is dropped."""
    path.chmod(0)
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv, every file can be read")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_rows(con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
    """The table's rows, instants as ISO text with offset: SQLite has no timestamp type."""
    columns = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    selected = ", ".join(
        f"strftime({quoted(name)}, '%Y-%m-%dT%H:%M:%S.%f+00:00') AS {quoted(name)}"
        if data_type == "TIMESTAMP WITH TIME ZONE"
        else quoted(name)
        for name, data_type in columns
    )
    return con.sql(f"SELECT {selected} FROM {quoted(table)}").to_arrow_table()


def ingest_sqlite(path: Path, tables: dict[str, pa.Table]) -> None:
    import adbc_driver_sqlite.dbapi as sqlite_adbc

    with sqlite_adbc.connect(str(path)) as con, con.cursor() as cursor:
        for table, rows in tables.items():
            cursor.adbc_ingest(table, rows, mode="replace")
        con.commit()


@dataclass
class PostgresSchema:
    """A fresh schema in the test server; `drop` removes it with everything in it."""

    uri: str
    name: str
    connection: Any

    @classmethod
    def create(cls, uri: str) -> PostgresSchema:
        import adbc_driver_postgresql.dbapi as postgres_adbc

        schema = cls(uri, SCHEMA_PREFIX + secrets.token_hex(6), postgres_adbc.connect(uri))
        schema.execute(f"CREATE SCHEMA {quoted(schema.name)}")
        return schema

    def execute(self, *statements: str) -> list[tuple]:
        """Run statements with the schema first on the search path; the last one's rows."""
        rows: list[tuple] = []
        with self.connection.cursor() as cursor:
            cursor.execute(f"SET search_path TO {quoted(self.name)}")
            for statement in statements:
                cursor.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
        self.connection.commit()
        return rows

    def ingest(self, table: str, rows: pa.Table) -> None:
        with self.connection.cursor() as cursor:
            cursor.adbc_ingest(table, rows, mode="replace", db_schema_name=self.name)
        self.connection.commit()

    def drop(self) -> None:
        self.connection.rollback()  # a failed statement leaves the transaction aborted
        self.execute(f"DROP SCHEMA {quoted(self.name)} CASCADE")
        self.connection.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run the test on these backends only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the rule modules on every backend; `@pytest.mark.backends` picks others."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if marker is not None:
        metafunc.parametrize("backend", marker.args, indirect=True)
    elif module in EVERY_BACKEND_MODULES and metafunc.function.__name__ not in DUCKDB_ONLY:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "duckdb")


@pytest.fixture(scope="session")
def postgres_uri() -> str:
    """The test server's URI; unreachable, its tests skip, or fail when CI is set."""
    uri = os.environ.get(POSTGRES_URI_ENV, DEFAULT_POSTGRES_URI)
    reason = postgres_unreachable(uri)
    if reason and os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    if reason:
        pytest.skip(reason)
    return uri


def postgres_unreachable(uri: str) -> str | None:
    """Why no test can use the server at `uri`, or None when it answers."""
    try:
        import adbc_driver_postgresql.dbapi as postgres_adbc
    except ImportError:
        return "adbc-driver-postgresql is not installed"
    try:
        postgres_adbc.connect(uri).close()
    except Exception as error:  # the driver's own DB-API error classes
        address = urlsplit(uri)  # host and port only: the URI may hold a password
        return (
            f"no PostgreSQL server at {address.hostname}:{address.port or 5432} "
            f"({type(error).__name__}); set {POSTGRES_URI_ENV} to reach one"
        )
    return None


@pytest.fixture
def postgres_schema(postgres_uri: str) -> Iterator[PostgresSchema]:
    schema = PostgresSchema.create(postgres_uri)
    yield schema
    schema.drop()


@pytest.fixture
def project(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Project:
    postgres = request.getfixturevalue("postgres_schema") if backend == "postgres" else None
    return Project(root=tmp_path, backend=backend, postgres=postgres)


COMPANY_HISTORY_DDL = (
    "CREATE OR REPLACE TABLE company_plan_history (company_id VARCHAR, plan VARCHAR, "
    "seats INTEGER, start_timestamp TIMESTAMPTZ, updated_at TIMESTAMPTZ)"
)


def company_history(project: Project, rows: list[tuple], **settings: Any) -> None:
    """A company_plan_history table with these (id, plan, seats, start, updated_at) rows."""
    statements = [COMPANY_HISTORY_DDL]
    if rows:
        statements.append(
            "INSERT INTO company_plan_history VALUES " + ", ".join(sql_row(row) for row in rows)
        )
    project.source_sql(*statements)
    configure_company_history(project, **settings)


def configure_company_history(project: Project, **settings: Any) -> None:
    """company_plan_history as a group history of company_id, started by start_timestamp."""
    configure_companies(project, "company_plan_history", "start_timestamp", **settings)


def configure_companies(project: Project, name: str, start_time: str, **settings: Any) -> None:
    """A history table `name` of companies, keyed by company_id, started by `start_time`."""
    project.configure(
        name,
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time=start_time,
        **settings,
    )


def configure_versioned_appends(project: Project, **settings: Any) -> None:
    """A `plans` history of companies from `valid_from`, whose ties `version` decides,
    synced in append mode by its `loaded_at` cursor."""
    configure_companies(
        project,
        "plans",
        "valid_from",
        tie_breaker="version",
        mode="append",
        cursor="loaded_at",
        **settings,
    )


def insert_rows(project: Project, table: str, rows: list[tuple]) -> None:
    """Add rows to a warehouse table."""
    project.source_sql(f"INSERT INTO {table} VALUES " + ", ".join(sql_row(row) for row in rows))


def sql_row(row: tuple) -> str:
    return "(" + ", ".join(sql_literal(value) for value in row) + ")"


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def login_events(project: Project, events: list[tuple[str, str, str]]) -> None:
    """An events table of (event id, distinct_id, time) logins; company_id = distinct_id."""
    project.source_sql(
        "CREATE OR REPLACE TABLE events (insert_id VARCHAR, event VARCHAR, distinct_id VARCHAR, "
        "company_id VARCHAR, time TIMESTAMPTZ)",
        *(
            f"INSERT INTO events VALUES ('{eid}', 'login', '{who}', '{who}', '{at}')"
            for eid, who, at in events
        ),
    )
    project.configure("product_events", kind="events", **{"from": "events"})


RESOLVE_SQL = (
    "SELECT e.insert_id, h.plan, h.seats FROM events AS e "
    "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
    "ON h.company_id = e.company_id ORDER BY e.insert_id"
)


def resolved(project: Project) -> dict[str, dict[str, Any]]:
    """Each event's plan and seats at its moment, by event id."""
    return {eid: {"plan": plan, "seats": seats} for eid, plan, seats in project.query(RESOLVE_SQL)}


def file_size_limit(limit: int) -> Callable[[], None]:
    """For `preexec_fn`: the process may write no file past `limit` bytes (a pipe it may),
    as on a full disk; DuckDB's commit then fails to write its log."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


# Room for a run record in DuckDB's write-ahead log, not for a run's data and catalog.
FULL_DISK = file_size_limit(4000)
