"""History rows into intervals: one row per (entity, start time), ending at the next start.

The steps, each one set-based SQL over the staged rows (DESIGN section 2):

1. identical rows for one key merge silently (rule 4);
2. rows for one key that differ are a conflict: the highest tie-breaker value wins, then,
   so that input order never matters, the highest hash of the row's properties; the
   losers stay as hidden events in `pitsync.superseded`;
3. each winner ends at the entity's next higher start, or stays open (rules 1, 3);
4. NULLs are kept as they are: a NULL property is undefined for its interval (rule 5).

Because every entity's intervals are contiguous and never overlap, "the row whose
interval holds t" is the same as "the latest row starting at or before t", which is what
DuckDB's ASOF join finds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pitsync.config import TableConfig
from pitsync.errors import ConfigError
from pitsync.modeling.staging import (
    REASON,
    STAGED,
    DerivedColumn,
    Rejection,
    count,
    json_object_sql,
    quarantine_rows,
    stage_rows,
)
from pitsync.modeling.timestamps import instant_sql, iso_sql
from pitsync.quoting import quote_identifier
from pitsync.store import END_TIME, RESERVED_COLUMNS, START_TIME, SUPERSEDED

log = logging.getLogger(__name__)

ENTITY = "__entity"
START = "__start"
TIE = "__tie"
RANK = "__rank"
RANKED = "ranked"
CONFLICT_EXAMPLES = 10


@dataclass(frozen=True)
class ModelCounts:
    """What one run did to one table, for its run record."""

    rows_read: int
    inserted: int
    quarantined: int
    conflicts: int


@dataclass(frozen=True)
class HistoryModel:
    """How one history table's source columns become intervals."""

    table: TableConfig
    source_columns: list[str]
    properties: list[str]
    start_sql: str

    @property
    def relation(self) -> str:
        return quote_identifier(self.table.name)

    def apply(self, con: duckdb.DuckDBPyConnection, run_id: int) -> ModelCounts:
        """Stage, quarantine, resolve ties and write the intervals, inside the run."""
        stage_rows(con, self.derived_columns(), self.rejections())
        quarantined = quarantine_rows(
            con, table=self.table.name, run_id=run_id, source_columns=self.source_columns
        )
        rank_rows(con, self)
        write_intervals(con, self)
        conflicts = write_superseded(con, self, run_id)
        return ModelCounts(
            rows_read=count(con, f"SELECT count(*) FROM {STAGED}"),
            inserted=count(con, f"SELECT count(*) FROM {self.relation}"),
            quarantined=quarantined,
            conflicts=conflicts,
        )

    def derived_columns(self) -> list[DerivedColumn]:
        entity = quote_identifier(self.table.id_column)
        return [
            DerivedColumn(ENTITY, f"CAST(src.{entity} AS VARCHAR)"),
            DerivedColumn(START, self.start_sql),
        ]

    def rejections(self) -> list[Rejection]:
        raw_start = quote_identifier(self.table.time_source_column)
        return [
            Rejection(f"{ENTITY} IS NULL OR {ENTITY} = ''", "missing id"),
            Rejection(f"{raw_start} IS NULL", "missing start time"),
            Rejection(f"{START} IS NULL", "unreadable start time"),
        ]


def plan_history(table: TableConfig, schema: pa.Schema) -> HistoryModel:
    """Check the table's columns against its configuration and plan its modeling."""
    where = f"table `{table.name}`"
    names = list(schema.names)
    start = table.time_source_column
    keys = [table.id_column, start] + ([table.tie_breaker] if table.tie_breaker else [])
    for key, column in zip(("id_column", "start_time", "tie_breaker"), keys, strict=False):
        require_column(column, names, key=key, table=table)

    properties = [name for name in names if name not in keys]
    for name in properties:
        if name in RESERVED_COLUMNS or name == table.id_column:
            raise ConfigError(
                f"{where}: source column `{name}` has a name the history relation reserves "
                f"({', '.join(RESERVED_COLUMNS)}); rename it in the source or a view",
                table=table.name,
            )
    start_sql = instant_sql(
        f"src.{quote_identifier(start)}",
        schema.field(start).type,
        timezone=table.timezone,
        time_unit=table.time_unit,
        where=f"{where}: column `{start}` (start_time)",
    )
    return HistoryModel(table, names, properties, start_sql)


def require_column(column: str, names: list[str], *, key: str, table: TableConfig) -> None:
    """A configured column must exist in the source; the error lists what does."""
    if column in names:
        return
    raise ConfigError(
        f"table `{table.name}`: column `{column}` not found in source `{table.source}`; "
        f"columns are: {', '.join(names)}; set `{key}` in [tables.{table.name}]",
        key=key,
        table=table.name,
    )


def rank_rows(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """Merge identical rows per key and rank the differing ones, winner first."""
    props = ", ".join(quote_identifier(name) for name in model.properties)
    keep = f"{ENTITY}, {START}" + (f", {props}" if props else "")
    if model.table.tie_breaker:
        tie = f"max({quote_identifier(model.table.tie_breaker)}) AS {TIE}"
        distinct = f"SELECT {keep}, {tie} FROM {STAGED} WHERE {REASON} IS NULL GROUP BY ALL"
        order = f"{TIE} DESC NULLS LAST, "
    else:
        distinct = f"SELECT DISTINCT {keep} FROM {STAGED} WHERE {REASON} IS NULL"
        order = ""
    row_hash = f"md5(CAST({json_object_sql(model.properties)} AS VARCHAR))"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {RANKED} AS SELECT *, row_number() OVER ("
        f"PARTITION BY {ENTITY}, {START} ORDER BY {order}{row_hash} DESC) AS {RANK} "
        f"FROM ({distinct})"
    )


def write_intervals(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """Replace the history relation with the winners, each ending at the next start."""
    props = "".join(f", {quote_identifier(name)}" for name in model.properties)
    entity = quote_identifier(model.table.id_column)
    con.execute(
        f"CREATE OR REPLACE TABLE main.{model.relation} AS "
        f"SELECT {ENTITY} AS {entity}, {START} AS {START_TIME}, "
        f"lead({START}) OVER (PARTITION BY {ENTITY} ORDER BY {START}) AS {END_TIME}{props} "
        f"FROM {RANKED} WHERE {RANK} = 1 ORDER BY {ENTITY}, {START}"
    )


def write_superseded(con: duckdb.DuckDBPyConnection, model: HistoryModel, run_id: int) -> int:
    """Keep conflict losers as hidden events; log a few; return the conflicting keys."""
    name = model.table.name
    con.execute(f"DELETE FROM {SUPERSEDED} WHERE table_name = ?", [name])
    con.execute(
        f"INSERT INTO {SUPERSEDED} SELECT ?, ?, {ENTITY}, {START}, "
        f"{json_object_sql(model.properties)} FROM {RANKED} WHERE {RANK} > 1",
        [run_id, name],
    )
    examples = con.execute(
        f"SELECT {ENTITY}, {iso_sql(START, 'TIMESTAMPTZ', utc_suffix='Z')}, max({RANK}) "
        f"FROM {RANKED} WHERE {RANK} > 1 GROUP BY ALL ORDER BY ALL LIMIT {CONFLICT_EXAMPLES}"
    ).fetchall()
    if model.table.tie_breaker:
        rule = f"the highest {model.table.tie_breaker}, then a hash of its properties"
    else:
        rule = "a hash of its properties (set tie_breaker to choose by a column)"
    for entity, start, rows in examples:
        log.warning(
            "table %s: %s has %s conflicting rows at %s; kept one by %s",
            name,
            entity,
            rows,
            start,
            rule,
        )
    return count(
        con,
        f"SELECT count(*) FROM (SELECT DISTINCT {ENTITY}, {START} FROM {RANKED} WHERE {RANK} > 1)",
    )
