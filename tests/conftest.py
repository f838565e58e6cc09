"""Shared test scaffolding: a real warehouse DuckDB file, a config, and a store per test."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pitsync.config import Config, load_config
from pitsync.connectors.runs import RunRecord
from pitsync.connectors.sync import SyncOptions, sync_table
from pitsync.queries.execute import QuerySession

UTC = dt.UTC


def utc(text: str) -> dt.datetime:
    """A UTC instant from ISO text, for expected values."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Project:
    """A warehouse file, a pitsync.toml pointing at it, and a store beside them."""

    root: Path
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

    def source_sql(self, *statements: str) -> None:
        """Run SQL against the warehouse file (create tables, insert, delete)."""
        con = duckdb.connect(str(self.warehouse))
        try:
            con.execute("SET TimeZone = 'UTC'")
            for statement in statements:
                con.execute(statement)
        finally:
            con.close()

    def configure(self, name: str, **settings: Any) -> None:
        """Add a [tables.NAME] section (source defaults to the warehouse)."""
        self.tables[name] = {"source": "warehouse", **settings}
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        lines = [
            "[store]",
            'path = "store.duckdb"',
            "[sources.warehouse]",
            'type = "duckdb"',
            'path = "warehouse.duckdb"',
        ]
        for name, settings in self.tables.items():
            lines.append(f"[tables.{name}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in settings.items())
        self.config_path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")

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


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(root=tmp_path)


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
    project.configure(
        "company_plan_history",
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time="start_timestamp",
        **settings,
    )


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
