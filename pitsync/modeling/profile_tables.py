"""Warehouse profile tables: each row sets its profile's properties, as a `$set` would.

`kind = "user_profiles"` (or `"group_profiles"` with a `group_key`) names a table whose
rows are profiles: the id column, then one column per property. A run turns every good
row into a `$set` of its columns (a NULL removes the property, as NULL means undefined
everywhere) and folds them with the other profile updates. In append mode only the rows
past the watermark are read, so only they set anything.

Every row sets every column, so of an id's rows in one run the last decides: the one with
the highest cursor, then the greatest values, so a run's result never depends on how the
source returned them; each extra row of an id is counted as a conflict. The store keeps
a hash of the row it last applied for each id: a row read again unchanged (every full
run, and the boundary rows of an append run) sets nothing, so what updates have set
since stays until the warehouse row itself changes. A row from a warehouse is no sign
of activity, so a sync leaves `$last_seen` as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pitsync.config import TableConfig
from pitsync.modeling.intervals import ModelCounts, cursor_rejections, require_column
from pitsync.modeling.profile_operators import (
    OPERATIONS,
    UPDATES,
    USER_KEY,
    UpdateOutcome,
    apply_updates,
    begin_run,
    count_profiles,
    refused_table,
    stage_schema,
)
from pitsync.modeling.profile_records import (
    MAX_NAME_CHARACTERS,
    cut_value_sql,
    finite_sql,
    refuse_last_seen_column,
)
from pitsync.modeling.staging import (
    REASON,
    STAGED,
    DerivedColumn,
    Rejection,
    check_column_names,
    count,
    json_object_sql,
    json_text_sql,
    quarantine_rows,
    stage_rows,
)
from pitsync.quoting import quote_identifier, quote_string
from pitsync.store import INTERNAL_SCHEMA, PROFILES, QUARANTINE

ENTITY = "__pitsync_entity"
LINE = "__pitsync_line"
REFUSAL = "__pitsync_refusal"  # why a row was refused, beside its columns
ROW_HASH = "__pitsync_row_hash"
ORDERED = "__pitsync_profile_rows"
APPLIED_BEFORE = "__pitsync_applied_before"  # the rows last applied, before this run


def applied_rows_table(name: str) -> str:
    """Where the store keeps, per id, a hash of the profile table's row it last applied."""
    return f"{INTERNAL_SCHEMA}.{quote_identifier('profile_rows__' + name)}"


@dataclass(frozen=True)
class ProfilesModel:
    """How one profile table's columns become `$set` updates."""

    table: TableConfig
    source_columns: list[str]
    properties: list[str]

    @property
    def relation(self) -> str:
        return PROFILES

    @property
    def group_key(self) -> str:
        return self.table.group_key or USER_KEY

    def apply(self, con: duckdb.DuckDBPyConnection, run_id: int) -> ModelCounts:
        """Stage and quarantine the rows, then fold them into the profiles."""
        stage_rows(con, self.derived_columns(), self.rejections())
        quarantined = quarantine_rows(
            con, table=self.table.name, run_id=run_id, source_columns=self.source_columns
        )
        rows_read = count(con, f"SELECT count(*) FROM {STAGED}")
        self.stage_updates(con)
        outcome = UpdateOutcome()
        begin_run(con)
        apply_updates(con, outcome)
        count_profiles(con, outcome)
        self.quarantine_refused(con, run_id, outcome)
        good = rows_read - quarantined
        ids = count(con, f"SELECT count(DISTINCT {ENTITY}) FROM {STAGED} WHERE {REASON} IS NULL")
        conflicts = good - ids
        return ModelCounts(
            rows_read=rows_read,
            inserted=outcome.applied,
            quarantined=quarantined + len(outcome.refused),
            conflicts=conflicts,
            entities_changed=outcome.profiles_changed,
        )

    def quarantine_refused(
        self, con: duckdb.DuckDBPyConnection, run_id: int, outcome: UpdateOutcome
    ) -> None:
        """Rows refused for the property limit go to quarantine, and are not remembered as
        applied, so a later run tries them again; the row applied before them stays the
        one a later row is compared with."""
        if not outcome.refused:
            return
        con.register("__pitsync_refused_rows", refused_table(outcome.refused))
        # The row as the source had it, the id under its own name.
        entity = quote_identifier(self.table.id_column)
        row = json_object_sql([self.table.id_column, *self.properties])
        con.execute(
            f"INSERT INTO {QUARANTINE} SELECT ?, ?, {REFUSAL}, {row} FROM ("
            f"SELECT f.reason AS {REFUSAL}, o.* RENAME ({ENTITY} AS {entity}) "
            f"FROM __pitsync_refused_rows f JOIN {ORDERED} o ON o.{LINE} = f.line)",
            [run_id, self.table.name],
        )
        refused_ids = (
            f"SELECT o.{ENTITY} FROM {ORDERED} o JOIN __pitsync_refused_rows f ON o.{LINE} = f.line"
        )
        con.execute(f"DELETE FROM {self.applied_rows} WHERE profile_id IN ({refused_ids})")
        con.execute(
            f"INSERT INTO {self.applied_rows} SELECT * FROM {APPLIED_BEFORE} "
            f"WHERE profile_id IN ({refused_ids})"
        )
        con.unregister("__pitsync_refused_rows")

    def derived_columns(self) -> list[DerivedColumn]:
        entity = f"CAST(src.{quote_identifier(self.table.id_column)} AS VARCHAR)"
        return [DerivedColumn(ENTITY, entity)]

    def rejections(self) -> list[Rejection]:
        return [
            Rejection(f"{ENTITY} IS NULL OR {ENTITY} = ''", "missing id"),
            *cursor_rejections(self.table),
        ]

    @property
    def applied_rows(self) -> str:
        return applied_rows_table(self.table.name)

    def keep_applied_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """The table of rows last applied, each with the group key it was applied under:
        under another key (the configuration changed) no row has been applied yet."""
        key = quote_string(self.group_key)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {self.applied_rows} "
            "(profile_id VARCHAR NOT NULL, row_hash UBIGINT NOT NULL, group_key VARCHAR)"
        )
        # A store written before the key was kept applied its rows under the key of now.
        con.execute(
            f"ALTER TABLE {self.applied_rows} ADD COLUMN IF NOT EXISTS group_key VARCHAR "
            f"DEFAULT {key}"
        )

    def stage_updates(self, con: duckdb.DuckDBPyConnection) -> None:
        """UPDATES: a `$set` for each id whose last row changed; OPERATIONS: its columns."""
        stage_schema(con)
        key = quote_string(self.group_key)
        self.keep_applied_rows(con)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ORDERED} AS {self.changed_rows_sql()}")
        # What was applied before, for the ids whose row changed: a row the property limit
        # refuses leaves it standing (see `quarantine_refused`).
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {APPLIED_BEFORE} AS SELECT a.* FROM "
            f"{self.applied_rows} a SEMI JOIN {ORDERED} o ON a.profile_id = o.{ENTITY}"
        )
        con.execute(
            f"DELETE FROM {self.applied_rows} a USING {ORDERED} o WHERE a.profile_id = o.{ENTITY}"
        )
        con.execute(
            f"INSERT INTO {self.applied_rows} SELECT {ENTITY}, {ROW_HASH}, {key} FROM {ORDERED}"
        )
        con.execute(
            f"INSERT INTO {UPDATES} SELECT {LINE}, {key}, {ENTITY}, '$set', now(), true "
            f"FROM {ORDERED}"
        )
        if not self.properties:
            return
        names = ", ".join(quote_identifier(name) for name in self.properties)
        value = stored_value_sql("value")
        con.execute(
            f"INSERT INTO {OPERATIONS} SELECT {LINE}, {key}, {ENTITY}, '$set', 0, "
            f"left(name, {MAX_NAME_CHARACTERS}), coalesce({value}, 'null') FROM "
            f"(SELECT * EXCLUDE ({ROW_HASH}) FROM {ORDERED}) "
            f"UNPIVOT INCLUDE NULLS (value FOR name IN ({names}))"
        )

    def changed_rows_sql(self) -> str:
        """Each id's last good row (every row sets every column, so the last decides),
        unless it is the row last applied: a row read again changes nothing, and leaves
        what updates set since."""
        # As JSON, and made a property's value only once unpivoted (`stage_updates`): the
        # one expression for every column, where a wide table made it thousands.
        values = ", ".join(
            f"CAST({json_text_sql(quote_identifier(name))} AS JSON) AS {quote_identifier(name)}"
            for name in self.properties
        )
        row_text = f"CAST({json_object_sql(self.properties, exact=False)} AS VARCHAR)"
        # As history ties resolve (rule 4): the greatest values in column order, NULL lowest.
        ordered = ([self.table.cursor] if self.table.cursor else []) + self.properties
        latest = [f"{quote_identifier(name)} DESC NULLS LAST" for name in ordered]
        latest.append(f"{row_text} DESC")  # columns whose values sort equal
        return f"""
            WITH ranked AS (
                SELECT *, hash({row_text}) AS {ROW_HASH},
                    row_number() OVER (PARTITION BY {ENTITY} ORDER BY {", ".join(latest)})
                        AS __pitsync_rank
                FROM {STAGED} WHERE {REASON} IS NULL
            )
            SELECT row_number() OVER (ORDER BY r.{ENTITY}) AS {LINE}, r.{ENTITY},
                r.{ROW_HASH}{", " + values if values else ""}
            FROM ranked r
            ANTI JOIN {self.applied_rows} a
                ON a.profile_id = r.{ENTITY} AND a.row_hash = r.{ROW_HASH}
                AND a.group_key = {quote_string(self.group_key)}
            WHERE r.__pitsync_rank = 1
        """


def stored_value_sql(value: str) -> str:
    """A column's JSON value as a property: strings (and list items) cut as an update's
    are, and a NaN or infinite number undefined."""
    return cut_value_sql(f"({finite_sql(value)})", "'$set'")


def plan_profiles(table: TableConfig, schema: pa.Schema) -> ProfilesModel:
    """Check a profile table's columns; every column but the id and cursor is a property."""
    names = list(schema.names)
    require_column(table.id_column, names, key="id_column", table=table)
    if table.cursor is not None:
        require_column(table.cursor, names, key="cursor", table=table)
    keys = {table.id_column, table.cursor}
    properties = [name for name in names if name not in keys]
    check_column_names(table, properties, (table.id_column,))
    refuse_last_seen_column(table, properties)
    return ProfilesModel(table, names, properties)
