"""History rows into intervals: one row per (entity, start time), ending at the next start.

The steps, each one set-based SQL over the staged rows (DESIGN section 2), all resting
on one sort of each entity's rows:

1. identical rows for one key merge silently (rule 4);
2. rows for one key that differ are a conflict: the highest tie-breaker value wins, then,
   so that input order never matters, the greatest property values in column order; the
   losers stay as hidden events in `_pitsync.superseded`;
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
from pitsync.modeling.profile_records import refuse_last_seen_column
from pitsync.modeling.staging import (
    REASON,
    STAGED,
    DerivedColumn,
    Rejection,
    check_column_names,
    check_key_names,
    count,
    json_object_sql,
    quarantine_rows,
    refuse_row_id_column,
    stage_rows,
)
from pitsync.modeling.timestamps import beyond_moments_sql, instant_sql, iso_sql, time_reading
from pitsync.quoting import quote_identifier
from pitsync.store import (
    END_TIME,
    INTERNAL_SCHEMA,
    RESERVED_COLUMNS,
    START_TIME,
    SUPERSEDED,
)

log = logging.getLogger(__name__)

ENTITY = "__pitsync_entity"
START = "__pitsync_start"
LOSERS = "__pitsync_losers"
CONFLICT_EXAMPLES = 10


def stored_intervals_table(name: str) -> str:
    """Where the store keeps a history table's intervals; `main.<name>` is a view of it."""
    return f"{INTERNAL_SCHEMA}.{quote_identifier('intervals__' + name)}"


@dataclass(frozen=True)
class ModelCounts:
    """What one run did to one table, for its run record."""

    rows_read: int
    inserted: int
    quarantined: int
    conflicts: int
    updated: int = 0
    entities_changed: int = 0
    deleted: int = 0


class StagedModel:
    """What history and events models share: a run's rows are staged with the columns
    the model derives, the rows it rejects are quarantined, and the good ones replace
    what the store holds (a full run) or merge into it (see increments.py)."""

    table: TableConfig
    source_columns: list[str]

    def derived_columns(self) -> list[DerivedColumn]:
        raise NotImplementedError

    def rejections(self) -> list[Rejection]:
        raise NotImplementedError

    def replace(
        self, con: duckdb.DuckDBPyConnection, run_id: int, rows_read: int, quarantined: int
    ) -> ModelCounts:
        raise NotImplementedError

    def apply(self, con: duckdb.DuckDBPyConnection, run_id: int) -> ModelCounts:
        """Stage, quarantine and replace what the store holds for the table, in the run."""
        rows_read, quarantined = self.stage(con, run_id)
        return self.replace(con, run_id, rows_read, quarantined)

    def stage(self, con: duckdb.DuckDBPyConnection, run_id: int) -> tuple[int, int]:
        """Stage the run's rows and quarantine the bad ones: (rows read, quarantined)."""
        stage_rows(con, self.derived_columns(), self.rejections())
        quarantined = quarantine_rows(
            con, table=self.table.name, run_id=run_id, source_columns=self.source_columns
        )
        return count(con, f"SELECT count(*) FROM {STAGED}"), quarantined


@dataclass(frozen=True)
class HistoryModel(StagedModel):
    """How one history table's source columns become intervals."""

    table: TableConfig
    source_columns: list[str]
    properties: list[str]
    start_sql: str
    integer_ids: bool
    # Floating-point columns: their -0.0 is stored as 0.0 (see `good_rows_sql`).
    float_columns: frozenset[str] = frozenset()
    # The settings that say where each row starts (`time_reading`); others move every key.
    moments_read_by: str = ""

    @property
    def relation(self) -> str:
        return quote_identifier(self.table.name)

    @property
    def kept(self) -> list[str]:
        """The tie-breaker (kept so later runs resolve ties the same way), then properties."""
        tie = [self.table.tie_breaker] if self.table.tie_breaker else []
        return tie + self.properties

    @property
    def stored(self) -> str:
        return stored_intervals_table(self.table.name)

    def replace(
        self, con: duckdb.DuckDBPyConnection, run_id: int, rows_read: int, quarantined: int
    ) -> ModelCounts:
        """Replace everything stored for the table with the staged rows."""
        write_intervals(con, self)
        conflicts = write_superseded(con, self, run_id)
        return ModelCounts(
            rows_read=rows_read,
            inserted=count(con, f"SELECT count(*) FROM {self.relation}"),
            quarantined=quarantined,
            conflicts=conflicts,
            # Each entity has one open interval, its last: counting them counts entities.
            entities_changed=count(
                con, f"SELECT count(*) FROM {self.stored} WHERE {END_TIME} IS NULL"
            ),
        )

    def derived_columns(self) -> list[DerivedColumn]:
        # Integer ids are sorted as integers (cheaper than text, and the cast to text is
        # one-to-one, so the intervals are the same); they become text when written.
        entity = f"src.{quote_identifier(self.table.id_column)}"
        return [
            DerivedColumn(ENTITY, entity if self.integer_ids else f"CAST({entity} AS VARCHAR)"),
            DerivedColumn(START, self.start_sql),
        ]

    def rejections(self) -> list[Rejection]:
        raw_start = quote_identifier(self.table.time_source_column)
        return [
            Rejection(
                f"{ENTITY} IS NULL" if self.integer_ids else f"{ENTITY} IS NULL OR {ENTITY} = ''",
                "missing id",
            ),
            Rejection(f"{raw_start} IS NULL", "missing start time"),
            Rejection(f"{START} IS NULL", "unreadable start time"),
            Rejection(beyond_moments_sql(START), "infinite or out-of-range start time"),
            *cursor_rejections(self.table),
        ]


def cursor_rejections(table: TableConfig) -> list[Rejection]:
    """An append run cannot tell when a row without a cursor value is new."""
    if table.mode != "append" or not table.cursor:
        return []
    return [Rejection(f"{quote_identifier(table.cursor)} IS NULL", "missing cursor")]


def plan_history(table: TableConfig, schema: pa.Schema) -> HistoryModel:
    """Check the table's columns against its configuration and plan its modeling."""
    where = f"table `{table.name}`"
    names = list(schema.names)
    start = table.time_source_column
    # The key columns, by the setting that names them. When a row was loaded (the cursor)
    # is no property of the entity, and neither is the tie-breaker.
    settings: dict[str, str | None] = {"id_column": table.id_column, "start_time": start}
    settings |= {"tie_breaker": table.tie_breaker, "cursor": table.cursor}
    for key, column in settings.items():
        if column is not None:
            require_column(column, names, key=key, table=table)

    keys = {column for column in settings.values() if column is not None}
    properties = [name for name in names if name not in keys]
    stored_keys = {"id_column": table.id_column, "tie_breaker": table.tie_breaker}
    check_key_names(table, stored_keys, RESERVED_COLUMNS)
    check_column_names(table, properties, (*RESERVED_COLUMNS, table.id_column))
    refuse_last_seen_column(table, properties)  # history tables feed the profiles too
    refuse_row_id_column(table, [table.id_column, table.tie_breaker or "", *properties])
    start_sql = instant_sql(
        f"src.{quote_identifier(start)}",
        schema.field(start),
        timezone=table.timezone,
        time_unit=table.time_unit,
        where=f"{where}: column `{start}` (start_time)",
    )
    integer_ids = pa.types.is_integer(schema.field(table.id_column).type)
    floats = frozenset(field.name for field in schema if pa.types.is_floating(field.type))
    reading = time_reading(start, schema.field(start).type, table.timezone, table.time_unit)
    return HistoryModel(
        table, names, properties, start_sql, integer_ids, floats, moments_read_by=reading
    )


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


def write_intervals(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """Replace the stored rows with this run's good rows, each ending at the next start.

    Integer ids are stored as integers, which DuckDB writes much faster than text; the
    view shows them as text, the same strings, since the cast is one-to-one.
    """
    con.execute(
        f"CREATE OR REPLACE TABLE {model.stored} AS {ended_rows_sql(model, good_rows_sql(model))}"
    )
    write_view(con, model)


def good_rows_sql(model: HistoryModel) -> str:
    """This run's good rows under the stored column names.

    In append mode a key holds the rows of its latest load: of a key's rows, only those
    with its greatest cursor value count. A row read again from an earlier load (at the
    watermark, or inside the lookback) is replaced by the later one, whenever the runs
    happened; rows of one load at one key are a tie, as in a full sync.
    """
    entity = quote_identifier(model.table.id_column)
    rows = (
        f"SELECT {ENTITY} AS {entity}, {START} AS {START_TIME}{kept_values(model)} "
        f"FROM {STAGED} WHERE {REASON} IS NULL"
    )
    return rows + latest_load_sql(model.table, f"{ENTITY}, {START}")


def kept_values(model: HistoryModel) -> str:
    """`kept_columns`, with a floating-point -0.0 read as 0.0.

    The two zeros are equal, so rows that differ only there are duplicates, and no
    comparison (a tie, a mirror's or an append's) can tell which to keep: only one of
    them is ever stored.
    """
    values = []
    for name in model.kept:
        column = quote_identifier(name)
        if name in model.float_columns:
            values.append(
                f", CASE WHEN {column} = 0 THEN abs({column}) ELSE {column} END AS {column}"
            )
        else:
            values.append(f", {column}")
    return "".join(values)


def latest_load_sql(table: TableConfig, key: str) -> str:
    """In append mode, a QUALIFY keeping each key's rows of its greatest cursor value."""
    if table.mode != "append" or not table.cursor:
        return ""
    cursor = quote_identifier(table.cursor)
    return f" QUALIFY {cursor} = max({cursor}) OVER (PARTITION BY {key})"


def kept_columns(model: HistoryModel) -> str:
    """`, tie_breaker, property...`: what a stored row keeps besides its key and end."""
    return "".join(f", {quote_identifier(name)}" for name in model.kept)


def ended_rows_sql(model: HistoryModel, rows: str) -> str:
    """Each row of `rows` with its end: the start of the row after it in its entity.

    Within one key the order is tie-breaker (NULL lowest), then the properties in column
    order (NULL lowest), so the last row of a key is its winner whatever the input order.
    Every row before it at that key ends at its own start: an empty interval, which holds
    no moment. The history relation is a view of the non-empty intervals; the empty ones
    are the rows that lost a tie, kept for `write_superseded`.
    """
    entity = quote_identifier(model.table.id_column)
    order = ", ".join(
        [START_TIME, *(f"{quote_identifier(name)} ASC NULLS FIRST" for name in model.kept)]
    )
    return (
        f"SELECT {entity}, {START_TIME}, "
        f"lead({START_TIME}) OVER (PARTITION BY {entity} ORDER BY {order}) AS {END_TIME}"
        f"{kept_columns(model)} FROM ({rows})"
    )


def write_view(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """The history relation: non-empty intervals, ids as text, without the tie-breaker."""
    entity = quote_identifier(model.table.id_column)
    props = "".join(f", {quote_identifier(name)}" for name in model.properties)
    con.execute(
        f"CREATE OR REPLACE VIEW main.{model.relation} AS "
        f"SELECT CAST({entity} AS VARCHAR) AS {entity}, {START_TIME}, {END_TIME}{props} "
        f"FROM {model.stored} WHERE {non_empty()}"
    )


def non_empty(prefix: str = "") -> str:
    """An interval that holds some moment; a row that lost a tie ends where it starts."""
    return f"({prefix}{END_TIME} IS NULL OR {prefix}{END_TIME} > {prefix}{START_TIME})"


def write_superseded(
    con: duckdb.DuckDBPyConnection,
    model: HistoryModel,
    run_id: int,
    only: str | None = None,
    rows: str | None = None,
    *,
    warn: bool = True,
    counted: str | None = None,
) -> int:
    """Keep rows that lost a conflict as hidden events; log a few; return conflicting keys.

    A row that lost only to an identical row is a duplicate, merged silently. With `only`
    (a table of entity ids), just those entities' losers are rewritten, found in `rows`
    (their rows as now stored). Without `warn`, the losers are only written anew: the
    run that found them said so. With `counted` (a table of entity ids), only those
    entities' conflicts are logged and counted.
    """
    name = model.table.name
    entity = quote_identifier(model.table.id_column)
    if only is None:
        con.execute(f"DELETE FROM {SUPERSEDED} WHERE table_name = ?", [name])
    else:
        con.execute(
            f"DELETE FROM {SUPERSEDED} WHERE table_name = ? AND entity_id IN "
            f"(SELECT CAST({entity} AS VARCHAR) FROM {only})",
            [name],
        )
    if not model.properties:
        return 0  # rows with no properties are identical whenever their keys are
    losers = losers_sql(model, rows or model.stored)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {LOSERS} AS {losers}")
    con.execute(
        f"INSERT INTO {SUPERSEDED} SELECT ?, ?, CAST({entity} AS VARCHAR), {START_TIME}, "
        f"{json_object_sql(model.properties)} FROM {LOSERS}",
        [run_id, name],
    )
    if counted is not None:
        con.execute(f"DELETE FROM {LOSERS} WHERE {entity} NOT IN (SELECT {entity} FROM {counted})")
    if warn:
        warn_conflicts(con, model)
    return count(con, f"SELECT count(DISTINCT ({entity}, {START_TIME})) FROM {LOSERS}")


def losers_sql(model: HistoryModel, rows: str) -> str:
    """Distinct rows that share a key with the winner but differ from it.

    The empty intervals are few: they are picked out first, and a semi join finds their
    winners, so the hash table holds the few, not the whole table.
    """
    entity = quote_identifier(model.table.id_column)
    tie = [quote_identifier(model.table.tie_breaker)] if model.table.tie_breaker else []
    same_key = f"w.{entity} = e.{entity} AND w.{START_TIME} = e.{START_TIME}"
    loser = struct_of(model.properties, "e")
    winner = struct_of(model.properties, "w")
    return (
        f"WITH empty AS MATERIALIZED (SELECT * FROM {rows} WHERE {END_TIME} = {START_TIME}), "
        f"winners AS MATERIALIZED (SELECT w.* FROM {rows} AS w "
        f"SEMI JOIN empty AS e ON {same_key} WHERE {non_empty('w.')}) "
        f"SELECT DISTINCT e.* EXCLUDE ({', '.join([END_TIME, *tie])}) FROM empty AS e "
        f"JOIN winners AS w ON {same_key} WHERE {loser} IS DISTINCT FROM {winner}"
    )


def struct_of(columns: list[str], alias: str) -> str:
    fields = ", ".join(f"{quote_identifier(c)} := {alias}.{quote_identifier(c)}" for c in columns)
    return f"struct_pack({fields})"


def warn_conflicts(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """One warning per conflicting key, for the first few keys."""
    entity = quote_identifier(model.table.id_column)
    examples = con.execute(
        f"SELECT CAST({entity} AS VARCHAR), {iso_sql(START_TIME, 'TIMESTAMPTZ', utc_suffix='Z')}, "
        "count(*) + 1 "
        f"FROM {LOSERS} GROUP BY ALL ORDER BY ALL LIMIT {CONFLICT_EXAMPLES}"
    ).fetchall()
    if model.table.tie_breaker:
        rule = f"the highest {model.table.tie_breaker}, then the greatest property values"
    else:
        rule = "the greatest property values (set tie_breaker to choose by a column)"
    for entity, start, rows in examples:
        log.warning(
            "table %s: %s has %s conflicting rows at %s; kept one by %s",
            model.table.name,
            entity,
            rows,
            start,
            rule,
        )
