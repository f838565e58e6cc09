"""Append runs: merge a run's rows into the store, re-modelling only what they change.

A history row is keyed by (entity, start time). A run's rows for a key replace every
stored row of that key; a key whose rows come back exactly as stored (the boundary rows
an append run reads again, or rows inside the lookback) is no change at all. Only the
entities with a changed key are re-modelled: their remaining stored rows and their new
rows are sorted again, so every end time, tie and hidden event of theirs is as a full
sync would make it, and no other entity is touched.

The comparison is of whole rows with EXCEPT ALL, which treats NULLs as equal and compares
column by column: NULL -> 10 -> NULL is two changes, and no joining of text can make
"pro" + "10" look like "pro1" + "0".

Events are keyed by their insert id, or, without one, by a hash of the whole row; a
run's event replaces a stored event of the same key.
"""

from __future__ import annotations

import duckdb

from pitsync.modeling.events import EventsModel
from pitsync.modeling.intervals import (
    HistoryModel,
    ModelCounts,
    ended_rows_sql,
    good_rows_sql,
    kept_columns,
    write_superseded,
    write_view,
)
from pitsync.modeling.staging import count
from pitsync.quoting import quote_identifier
from pitsync.store import START_TIME

BATCH = "__pitsync_batch"
CHANGED = "__pitsync_changed_keys"
AFFECTED = "__pitsync_affected_entities"
REMODELLED = "__pitsync_remodelled"


def apply_run(
    con: duckdb.DuckDBPyConnection, model: HistoryModel | EventsModel, run_id: int
) -> ModelCounts:
    """Apply the staged run as its table's mode says: replace, or merge (append)."""
    if model.table.mode != "append":
        return model.apply(con, run_id)
    rows_read, quarantined = model.stage(con, run_id)
    if not table_exists(con, model.stored):
        return model.replace(con, run_id, rows_read, quarantined)  # the first run
    if isinstance(model, HistoryModel):
        inserted, updated, entities, conflicts = merge_history(con, model, run_id)
        write_view(con, model)
        return ModelCounts(rows_read, inserted, quarantined, conflicts, updated, entities)
    key = model.table.insert_id or ""
    inserted, updated = merge_events(con, model.stored, model.select_good_rows(), key)
    return ModelCounts(rows_read, inserted, quarantined, 0, updated)


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, _, name = qualified.partition(".")
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [schema, name.strip('"').replace('""', '"')],
    ).fetchone()
    return bool(found and found[0])


def merge_history(
    con: duckdb.DuckDBPyConnection, model: HistoryModel, run_id: int
) -> tuple[int, int, int, int]:
    """Merge the staged rows; return (keys inserted, keys updated, entities, conflicts)."""
    entity = quote_identifier(model.table.id_column)
    columns = f"{entity}, {START_TIME}{kept_columns(model)}"
    same_key = f"s.{entity} = b.{entity} AND s.{START_TIME} = b.{START_TIME}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {BATCH} AS {good_rows_sql(model)}")

    stored_at_keys = (
        f"SELECT {columns} FROM {model.stored} AS s SEMI JOIN {BATCH} AS b ON {same_key}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHANGED} AS "
        f"SELECT DISTINCT {entity}, {START_TIME} FROM ("
        f"(SELECT {columns} FROM {BATCH} EXCEPT ALL {stored_at_keys}) UNION ALL "
        f"({stored_at_keys} EXCEPT ALL SELECT {columns} FROM {BATCH}))"
    )
    updated = count(
        con,
        f"SELECT count(*) FROM {CHANGED} AS b WHERE EXISTS "
        f"(SELECT 1 FROM {model.stored} AS s WHERE {same_key})",
    )
    changed = count(con, f"SELECT count(*) FROM {CHANGED}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {AFFECTED} AS SELECT DISTINCT {entity} FROM {CHANGED}"
    )

    remaining = (
        f"SELECT {columns} FROM {model.stored} AS s "
        f"SEMI JOIN {AFFECTED} AS a ON s.{entity} = a.{entity} "
        f"ANTI JOIN {CHANGED} AS b ON {same_key}"
    )
    arriving = f"SELECT {columns} FROM {BATCH} AS s SEMI JOIN {CHANGED} AS b ON {same_key}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {REMODELLED} AS "
        f"{ended_rows_sql(model, f'{remaining} UNION ALL {arriving}')}"
    )
    con.execute(
        f"DELETE FROM {model.stored} AS s WHERE s.{entity} IN (SELECT {entity} FROM {AFFECTED})"
    )
    con.execute(f"INSERT INTO {model.stored} SELECT * FROM {REMODELLED}")

    conflicts = write_superseded(con, model, run_id, only=AFFECTED)
    entities = count(con, f"SELECT count(*) FROM {AFFECTED}")
    return changed - updated, updated, entities, conflicts


def merge_events(
    con: duckdb.DuckDBPyConnection, stored: str, rows: str, key: str
) -> tuple[int, int]:
    """Insert the run's events, replacing stored ones of the same key; (new, replaced)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {BATCH} AS {rows}")
    replaced = count(
        con,
        f"SELECT count(*) FROM {stored} AS s WHERE {key_of('s', key)} IN "
        f"(SELECT {key_of('b', key)} FROM {BATCH} AS b)",
    )
    con.execute(
        f"DELETE FROM {stored} AS s WHERE {key_of('s', key)} IN "
        f"(SELECT {key_of('b', key)} FROM {BATCH} AS b)"
    )
    con.execute(f"INSERT INTO {stored} BY NAME SELECT * FROM {BATCH}")
    arrived = count(con, f"SELECT count(*) FROM {BATCH}")
    return arrived - replaced, replaced


def key_of(alias: str, key: str) -> str:
    """An event's key: its insert id column, or (key '') a hash of the whole row."""
    if key:
        return f"{alias}.{quote_identifier(key)}"
    return f"hash({alias})"
