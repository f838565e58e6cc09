"""Events tables: visible events with their own columns, ids as strings, times as instants.

An events table is stored as it came, less the bad rows: `event`, `distinct_id`, `time`,
then every other source column as an event property. Columns that hold an entity id
(`distinct_id` and any group key of a configured group history table) are cast to text,
so `e.company_id = h.company_id` compares ids the way DESIGN rule 7 says.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pitsync.config import TableConfig
from pitsync.modeling.intervals import (
    ModelCounts,
    StagedModel,
    cursor_rejections,
    latest_load_sql,
    require_column,
)
from pitsync.modeling.staging import (
    REASON,
    STAGED,
    DerivedColumn,
    Rejection,
    check_column_names,
    count,
    refuse_row_id_column,
)
from pitsync.modeling.timestamps import beyond_moments_sql, instant_sql, time_reading
from pitsync.quoting import fold_name, quote_identifier
from pitsync.store import DISTINCT_ID, EVENT, EVENT_IDENTITY, INTERNAL_SCHEMA, PROPERTIES, TIME

NAME = "__pitsync_event"
ENTITY = "__pitsync_entity"
MOMENT = "__pitsync_time"
EVENT_COLUMNS = (EVENT, DISTINCT_ID, TIME, PROPERTIES)


def stored_events_table(name: str) -> str:
    """Where the store keeps an events table (the public `events` view unions them)."""
    return f"{INTERNAL_SCHEMA}.{quote_identifier('events__' + name)}"


@dataclass(frozen=True)
class EventsModel(StagedModel):
    """How one events table's source columns become stored events."""

    table: TableConfig
    source_columns: list[str]
    properties: list[str]
    # Ids stored as their text (rule 7): the group keys, which join with the groups'
    # ids, and the insert id.
    id_properties: list[str]
    time_sql: str
    # Without an insert id, the properties that tell events apart besides their name,
    # user and time (see `event_identity`); None: every property but the cursor.
    identity: tuple[str, ...] | None = None
    # The settings that say each event's moment (`time_reading`); others move every key.
    moments_read_by: str = ""

    @property
    def relation(self) -> str:
        return stored_events_table(self.table.name)

    @property
    def stored_cursor(self) -> str | None:
        """The cursor column as the stored events name it: the event's name, user or time
        when it is that column (stored as `event`, `distinct_id`, `time`)."""
        cursor = self.table.cursor
        if cursor is None:
            return None
        renamed = {
            fold_name(self.table.event_column): EVENT,
            fold_name(self.table.id_column): DISTINCT_ID,
            fold_name(self.table.time_column): TIME,
        }
        return renamed.get(fold_name(cursor), cursor)

    @property
    def stored(self) -> str:
        return self.relation

    def replace(
        self, con: duckdb.DuckDBPyConnection, run_id: int, rows_read: int, quarantined: int
    ) -> ModelCounts:
        con.execute(f"CREATE OR REPLACE TABLE {self.relation} AS {self.select_good_rows()}")
        # The events start over: they are told apart by the columns they have now.
        con.execute(f"DELETE FROM {EVENT_IDENTITY} WHERE table_name = ?", [self.table.name])
        return ModelCounts(
            rows_read=rows_read,
            inserted=count(con, f"SELECT count(*) FROM {self.relation}"),
            quarantined=quarantined,
            conflicts=0,
        )

    def derived_columns(self) -> list[DerivedColumn]:
        return [
            DerivedColumn(
                NAME, f"CAST(src.{quote_identifier(self.table.event_column)} AS VARCHAR)"
            ),
            DerivedColumn(ENTITY, f"CAST(src.{quote_identifier(self.table.id_column)} AS VARCHAR)"),
            DerivedColumn(MOMENT, self.time_sql),
        ]

    def rejections(self) -> list[Rejection]:
        raw_time = quote_identifier(self.table.time_column)
        return [
            Rejection(f"{NAME} IS NULL OR {NAME} = ''", "missing event name"),
            Rejection(f"{raw_time} IS NULL", "missing event time"),
            Rejection(f"{MOMENT} IS NULL", "unreadable event time"),
            Rejection(beyond_moments_sql(MOMENT), "infinite or out-of-range event time"),
            *cursor_rejections(self.table),
            *insert_id_rejections(self.table),
        ]

    def select_good_rows(self) -> str:
        columns = [f"{NAME} AS {EVENT}", f"{ENTITY} AS {DISTINCT_ID}", f"{MOMENT} AS {TIME}"]
        for name in self.properties:
            column = quote_identifier(name)
            if name in self.id_properties:
                columns.append(f"CAST({column} AS VARCHAR) AS {column}")
            else:
                columns.append(column)
        rows = f"SELECT {', '.join(columns)} FROM {STAGED} WHERE {REASON} IS NULL"
        return rows + latest_load_sql(self.table, ", ".join(self.key_columns()))

    def key_columns(self) -> list[str]:
        """What tells one event from another: its insert id, as the text it is stored as
        (0.0 and -0.0 are equal numbers, but two ids), or its name, user, time and identity
        properties (under their staged names)."""
        if self.table.insert_id:
            return [f"CAST({quote_identifier(self.table.insert_id)} AS VARCHAR)"]
        return [NAME, ENTITY, MOMENT, *(quote_identifier(name) for name in self.identifying())]

    def identifying(self) -> list[str]:
        """The properties that tell events without an insert id apart."""
        if self.identity is not None:
            return list(self.identity)
        return [name for name in self.properties if name != self.table.cursor]


def insert_id_rejections(table: TableConfig) -> list[Rejection]:
    """An appended event without its insert id (NULL or empty text, as an id is) could
    never be matched again: every event of an empty one would be one event."""
    if table.mode != "append" or not table.insert_id:
        return []
    insert_id = quote_identifier(table.insert_id)
    missing = f"{insert_id} IS NULL OR CAST({insert_id} AS VARCHAR) = ''"
    return [Rejection(missing, "missing insert id")]


def plan_events(table: TableConfig, schema: pa.Schema, group_keys: set[str]) -> EventsModel:
    """Check an events table's columns and plan how it is stored."""
    names = list(schema.names)
    keys = [table.event_column, table.id_column, table.time_column]
    for key, column in zip(("event_column", "id_column", "time_column"), keys, strict=True):
        require_column(column, names, key=key, table=table)
    for key, optional in (("cursor", table.cursor), ("insert_id", table.insert_id)):
        if optional is not None:
            require_column(optional, names, key=key, table=table)

    properties = [name for name in names if name not in keys]
    check_column_names(table, properties, EVENT_COLUMNS)
    refuse_row_id_column(table, properties)
    time_sql = instant_sql(
        f"src.{quote_identifier(table.time_column)}",
        schema.field(table.time_column),
        timezone=table.timezone,
        time_unit=table.time_unit,
        where=f"table `{table.name}`: column `{table.time_column}` (time_column)",
    )
    # Names compare without case, as in the store: `Company_Id` is the group key company_id.
    folded_keys = {fold_name(key) for key in group_keys}
    id_properties = [
        name for name in properties if fold_name(name) in folded_keys or name == table.insert_id
    ]
    reading = time_reading(
        table.time_column, schema.field(table.time_column).type, table.timezone, table.time_unit
    )
    return EventsModel(table, names, properties, id_properties, time_sql, moments_read_by=reading)
