"""Run records: one row per sync of one table, committed with the run's data.

A run that succeeds writes its record in the same transaction as its data. A run that
fails rolls back, then writes a `failed` record (with the error) in a transaction of its
own, so the history of attempts survives while the data stays as it was. Profile
updates and dropped tables leave records too, each with its command as its mode.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import duckdb

from pitsync.modeling.intervals import ModelCounts
from pitsync.modeling.staging import count
from pitsync.quoting import fold_name_sql
from pitsync.store import RUNS

RunStatus = Literal["succeeded", "failed", "dry run"]
DROPPED = "drop-table"  # the mode of the record `pitsync drop-table` leaves


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def transaction_start(con: duckdb.DuckDBPyConnection) -> dt.datetime:
    """When the open transaction began: DuckDB's `now()` inside it, in UTC."""
    [(microseconds,)] = con.execute("SELECT epoch_us(now())").fetchall()
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=microseconds)


@dataclass
class RunRecord:
    """What one run read, changed and set aside."""

    run_id: int
    table_name: str
    mode: str
    status: RunStatus = "failed"
    started_at: dt.datetime = field(default_factory=utc_now)
    finished_at: dt.datetime | None = None
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    quarantined: int = 0
    conflicts: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None
    error: str | None = None
    entities_changed: int = 0

    def count(self, counts: ModelCounts) -> None:
        """Take what the modeling counted; a failed run keeps only its rows read."""
        self.rows_read = counts.rows_read
        self.inserted = counts.inserted
        self.updated = counts.updated
        self.deleted = counts.deleted
        self.quarantined = counts.quarantined
        self.conflicts = counts.conflicts
        self.entities_changed = counts.entities_changed

    @property
    def seconds(self) -> float:
        end = self.finished_at or utc_now()
        return (end - self.started_at).total_seconds()

    def as_json(self) -> dict[str, Any]:
        """The record with instants as ISO 8601 strings."""
        record = asdict(self)
        for key in ("started_at", "finished_at"):
            if record[key] is not None:
                record[key] = record[key].astimezone(dt.UTC).isoformat()
        return record


RUN_COLUMNS = list(RunRecord.__dataclass_fields__)


def next_run_id(con: duckdb.DuckDBPyConnection) -> int:
    return count(con, f"SELECT coalesce(max(run_id), 0) + 1 FROM {RUNS}")


def write_run(con: duckdb.DuckDBPyConnection, record: RunRecord) -> None:
    """Insert the record (inside whatever transaction is open)."""
    placeholders = ", ".join("?" for _ in RUN_COLUMNS)
    values = [getattr(record, name) for name in RUN_COLUMNS]
    con.execute(f"INSERT INTO {RUNS} ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})", values)


def read_runs(con: duckdb.DuckDBPyConnection, table: str | None = None) -> list[RunRecord]:
    """Recorded runs, oldest first, of one table (its name in any case) or of all."""
    same_name = f"{fold_name_sql('table_name')} = {fold_name_sql('?')}"
    where, parameters = (f"WHERE {same_name}", [table]) if table else ("", [])
    rows = con.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM {RUNS} {where} ORDER BY run_id", parameters
    ).fetchall()
    return [RunRecord(**dict(zip(RUN_COLUMNS, row, strict=True))) for row in rows]


def counted(number: int, noun: str) -> str:
    """A count and its noun, as a run's report says it: `1 row`, `3 rows`."""
    return f"{number} {noun}" + ("" if number == 1 else "s")
