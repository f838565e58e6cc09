"""The public views: `events`, `all_events` (with hidden events), `quarantine`, `runs`,
and the profile relations `user_profiles` and `group_profiles`.

Every history row is a hidden event named after its table, at its start time, whose
properties are the row's other columns. Hidden events are not stored twice: they are
read from the history relation itself, plus the conflict losers kept in
`_pitsync.superseded`. Visible events come from each synced events table.

The views are rebuilt from `_pitsync.catalog` at the end of every run (and of every
drop of a table), inside its transaction, so they always match the tables the store holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pitsync.config import HISTORY_KINDS
from pitsync.modeling.profile_views import group_profiles_sql, user_profiles_sql
from pitsync.modeling.staging import json_object_sql
from pitsync.quoting import fold_name, quote_identifier, quote_string, unquote_identifier
from pitsync.store import CATALOG, QUARANTINE, RUNS, START_TIME, SUPERSEDED

EMPTY_EVENTS = (
    "SELECT CAST(NULL AS VARCHAR) AS event, CAST(NULL AS VARCHAR) AS distinct_id, "
    "CAST(NULL AS TIMESTAMPTZ) AS time, CAST(NULL AS JSON) AS properties WHERE false"
)


@dataclass(frozen=True)
class CatalogEntry:
    """What the store knows of one synced table."""

    table_name: str
    kind: str
    id_column: str
    group_key: str | None
    stored_as: str
    properties: list[str]
    keyed_by: str | None = None  # how a history's start times were read (moments_read_by)
    event_column: str | None = None  # an events table's: its events' names

    @property
    def is_history(self) -> bool:
        return self.kind in HISTORY_KINDS

    @property
    def is_events(self) -> bool:
        return self.kind == "events"


def record_in_catalog(con: duckdb.DuckDBPyConnection, entry: CatalogEntry) -> None:
    """Remember (or update) how a table is stored."""
    con.execute(
        f"INSERT OR REPLACE INTO {CATALOG} (table_name, kind, id_column, group_key, "
        "stored_as, properties, keyed_by, event_column) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry.table_name,
            entry.kind,
            entry.id_column,
            entry.group_key,
            entry.stored_as,
            entry.properties,
            entry.keyed_by,
            entry.event_column,
        ],
    )


def read_catalog(con: duckdb.DuckDBPyConnection) -> list[CatalogEntry]:
    """Every synced table, in name order."""
    rows = con.execute(
        "SELECT table_name, kind, id_column, group_key, stored_as, properties, keyed_by, "
        f"event_column FROM {CATALOG} ORDER BY table_name"
    ).fetchall()
    return [
        CatalogEntry(
            table_name=row[0],
            kind=row[1],
            id_column=row[2],
            group_key=row[3],
            stored_as=row[4],
            properties=list(row[5]),
            keyed_by=row[6],
            event_column=row[7],
        )
        for row in rows
    ]


def refresh_views(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the public views over what the catalog says the store holds."""
    catalog = read_catalog(con)
    events = [entry for entry in catalog if entry.is_events]
    mixed = mixed_columns([stored_types(con, entry) for entry in events])
    con.execute(f"CREATE OR REPLACE VIEW main.events AS {visible_events_sql(events, mixed)}")
    con.execute(f"CREATE OR REPLACE VIEW main.all_events AS {all_events_sql(catalog)}")
    con.execute(
        "CREATE OR REPLACE VIEW main.quarantine AS SELECT run_id, table_name, reason, "
        f"row_data FROM {QUARANTINE}"
    )
    con.execute(f"CREATE OR REPLACE VIEW main.runs AS SELECT * FROM {RUNS}")
    con.execute(f"CREATE OR REPLACE VIEW main.user_profiles AS {user_profiles_sql(catalog)}")
    con.execute(f"CREATE OR REPLACE VIEW main.group_profiles AS {group_profiles_sql(catalog)}")


def visible_events_sql(events: list[CatalogEntry], mixed: dict[str, str]) -> str:
    """Every events table, each property also a column, with a JSON of all properties.

    A property that events tables hold as different types (`mixed`: lower-case name to
    the type all of them take) is cast to one: DuckDB would read a boolean as 1, cut a
    decimal to another's scale, and fail on times and numbers together only as the rows
    were read."""

    def column(name: str) -> str:
        quoted = quote_identifier(name)
        common = mixed.get(fold_name(name))
        return f"CAST({quoted} AS {common}) AS {quoted}" if common else quoted

    parts = [
        f"SELECT event, distinct_id, time, {json_object_sql(entry.properties)} AS properties"
        + "".join(f", {column(name)}" for name in entry.properties)
        + f" FROM {entry.stored_as}"
        for entry in events
    ]
    return " UNION ALL BY NAME ".join(parts) if parts else EMPTY_EVENTS


def stored_types(con: duckdb.DuckDBPyConnection, entry: CatalogEntry) -> dict[str, str]:
    """An events table's stored columns and their types, names in lower case."""
    schema, _, table = entry.stored_as.partition(".")
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name <> 'temp' AND schema_name = ? AND table_name = ?",
        [schema, unquote_identifier(table)],
    ).fetchall()
    return {fold_name(str(name)): str(kind) for name, kind in rows}


def mixed_columns(tables: list[dict[str, str]]) -> dict[str, str]:
    """The columns that tables hold as different types, each with the type all take:
    integers of any width stay as DuckDB widens them (BIGINT, HUGEINT); numbers with a
    fraction (floats, decimals) are doubles; any other mix is text, integers mixed with
    fractions included, so that an integer keeps its text (`100`, not `100.0`) and still
    joins with the id it names."""
    found: dict[str, set[str]] = {}
    for types in tables:
        for name, kind in types.items():
            found.setdefault(name, set()).add(kind)
    common = {name: common_type(kinds) for name, kinds in found.items() if len(kinds) > 1}
    return {name: kind for name, kind in common.items() if kind}


def common_type(kinds: set[str]) -> str:
    """The type a column of these types is read as in `events`; "" where DuckDB's own
    union is exact (integers only)."""
    if kinds <= INTEGER_TYPES:
        return ""
    if all(kind in FLOAT_TYPES or kind.startswith("DECIMAL") for kind in kinds):
        return "DOUBLE"
    return "VARCHAR"


INTEGER_TYPES = frozenset(
    ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"]
    + ["UINTEGER", "UBIGINT", "UHUGEINT"]
)
FLOAT_TYPES = frozenset(["FLOAT", "DOUBLE"])


def all_events_sql(catalog: list[CatalogEntry]) -> str:
    """Visible events and the hidden events of every history table."""
    parts = ["SELECT event, distinct_id, time, properties FROM main.events"]
    for entry in catalog:
        if entry.is_history:
            parts.extend(hidden_events_sql(entry))
    return " UNION ALL ".join(parts)


def hidden_events_sql(entry: CatalogEntry) -> list[str]:
    """One history table's hidden events: its intervals' starts, and the conflict losers."""
    name = quote_string(entry.table_name)
    entity = quote_identifier(entry.id_column)
    return [
        f"SELECT {name} AS event, {entity} AS distinct_id, {START_TIME} AS time, "
        f"{json_object_sql(entry.properties)} AS properties FROM {entry.stored_as}",
        f"SELECT {name}, entity_id, start_time, properties FROM {SUPERSEDED} "
        f"WHERE table_name = {name}",
    ]
