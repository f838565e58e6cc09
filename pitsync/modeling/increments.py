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

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import duckdb

from pitsync.errors import ConfigError
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
from pitsync.modeling.staging import STAGED, count
from pitsync.quoting import quote_identifier
from pitsync.store import END_TIME, INTERNAL_SCHEMA, START_TIME

log = logging.getLogger(__name__)

BATCH = "__pitsync_batch"
CHANGED = "__pitsync_changed_keys"
AFFECTED = "__pitsync_affected_entities"
REMODELLED = "__pitsync_remodelled"
ARRIVING = "__pitsync_arriving"  # append: the batch's rows not stored already
REPLACED = "__pitsync_replaced"  # events: the stored events a run's events replace
TOUCHED = "__pitsync_touched"  # append: the stored rows of the entities a run brings


def apply_run(
    con: duckdb.DuckDBPyConnection, model: HistoryModel | EventsModel, run_id: int
) -> tuple[ModelCounts, HistoryModel | EventsModel]:
    """Apply the staged run as its table's mode says: replace, merge (append) or mirror.

    Returns the counts and the model as stored after the run: a history table that keeps
    a column its source dropped has that property still.
    """
    if model.table.mode == "full":
        return model.apply(con, run_id), model
    rows_read, quarantined = model.stage(con, run_id)
    if not table_exists(con, model.stored):
        return model.replace(con, run_id, rows_read, quarantined), model  # the first run
    if isinstance(model, EventsModel):
        inserted, updated = merge_events(
            con, model.stored, model.select_good_rows(), model.table.insert_id, model.table.cursor
        )
        return ModelCounts(rows_read, inserted, quarantined, 0, updated), model

    stored = reconcile_columns(con, model)
    # A view, not a copy: the good rows are read from the staged rows where needed.
    con.execute(f"CREATE OR REPLACE TEMP VIEW {BATCH} AS {good_rows_sql(model)}")
    if model.table.mode == "mirror":
        changes = find_mirror_changes(con, model)
    else:
        keep_touched(con, model)
        changes = find_append_changes(con, model)
    conflicts = remodel(con, model, stored, run_id, mirror=model.table.mode == "mirror")
    write_view(con, stored)
    counts = ModelCounts(
        rows_read,
        changes.inserted,
        quarantined,
        conflicts,
        changes.updated,
        entities_changed=count(con, f"SELECT count(*) FROM {AFFECTED}"),
        deleted=changes.deleted,
    )
    return counts, stored


@dataclass(frozen=True)
class KeyChanges:
    """How many history keys a run inserts, updates and deletes."""

    inserted: int
    updated: int
    deleted: int = 0


# Types each type can hold every value of, for a source column whose type changed.
INTEGER_WIDTHS = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"]
FLOAT_WIDTHS = ["FLOAT", "DOUBLE"]
DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def holds(wide: str, narrow: str) -> bool:
    """Whether every value of type `narrow` is a value of type `wide`."""
    if wide == narrow:
        return True
    for chain in (INTEGER_WIDTHS, FLOAT_WIDTHS):
        if wide in chain and narrow in chain:
            return chain.index(wide) >= chain.index(narrow)
    if wide == "DOUBLE" and narrow in INTEGER_WIDTHS[:3]:
        return True  # up to 32-bit integers are exact in a double
    wide_decimal, narrow_decimal = DECIMAL.fullmatch(wide), DECIMAL.fullmatch(narrow)
    if wide_decimal and narrow_decimal:
        (wp, ws), (np_, ns) = (map(int, m.groups()) for m in (wide_decimal, narrow_decimal))
        return ws >= ns and wp - ws >= np_ - ns
    return False


def column_types(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, *, temporary: bool = False
) -> dict[str, str]:
    """A table's columns and DuckDB types, in order."""
    where = "database_name = 'temp'" if temporary else "database_name <> 'temp'"
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        f"WHERE {where} AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def reconcile_columns(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> HistoryModel:
    """Meet a source whose columns changed since the last run; return the stored model.

    A new column becomes a property (stored rows have it NULL, so they are unchanged); a
    column the source dropped stays, with its old values, and new rows leave it NULL; a
    type that holds the old one's values is widened to; any other type change stops the
    run before anything is applied.
    """
    stored_types = column_types(con, INTERNAL_SCHEMA, f"intervals__{model.table.name}")
    staged_types = column_types(con, "main", STAGED, temporary=True)
    table = model.table.name
    for name in model.kept:
        old, new = stored_types.get(name), staged_types[name]
        if old is None:
            log.warning("table %s: new source column `%s` becomes a property", table, name)
            con.execute(f"ALTER TABLE {model.stored} ADD COLUMN {quote_identifier(name)} {new}")
        elif holds(old, new):
            continue
        elif holds(new, old):
            log.warning("table %s: column `%s` widens from %s to %s", table, name, old, new)
            con.execute(
                f"ALTER TABLE {model.stored} ALTER COLUMN {quote_identifier(name)} TYPE {new}"
            )
        else:
            raise ConfigError(
                f"table `{table}`: source column `{name}` changed type from {old} to {new}, "
                "which cannot hold the stored values; nothing was applied: cast it in the "
                "source, or sync once in full mode to start the table over",
                table=table,
            )
    keys = {model.table.id_column, START_TIME, END_TIME, model.table.tie_breaker}
    dropped = [name for name in stored_types if name not in keys and name not in model.kept]
    for name in dropped:
        log.warning(
            "table %s: column `%s` is gone from the source; its stored values stay, and new "
            "rows leave it undefined",
            table,
            name,
        )
    return replace(model, properties=model.properties + dropped)


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, _, name = qualified.partition(".")
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [schema, name.strip('"').replace('""', '"')],
    ).fetchone()
    return bool(found and found[0])


def compared_columns(model: HistoryModel) -> str:
    entity = quote_identifier(model.table.id_column)
    return f"{entity}, {START_TIME}{kept_columns(model)}"


def same_key(model: HistoryModel, left: str = "s", right: str = "b") -> str:
    entity = quote_identifier(model.table.id_column)
    return f"{left}.{entity} = {right}.{entity} AND {left}.{START_TIME} = {right}.{START_TIME}"


def keep_touched(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """The stored rows of the batch's entities: the one scan of the whole stored table."""
    entity = quote_identifier(model.table.id_column)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {TOUCHED} AS SELECT * FROM {model.stored} AS s "
        f"SEMI JOIN (SELECT DISTINCT {entity} FROM {BATCH}) AS b ON s.{entity} = b.{entity}"
    )


def find_append_changes(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> KeyChanges:
    """The keys that get a new row: one not stored already, exactly, at its key.

    Rows read again as stored (at the watermark, or inside the lookback) bring nothing,
    even when only some of a key's stored rows are read again. A key's new rows replace
    all of its stored rows.
    """
    entity = quote_identifier(model.table.id_column)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ARRIVING} AS SELECT b.* FROM {BATCH} AS b "
        f"ANTI JOIN {TOUCHED} AS s ON {equal_rows(model)}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHANGED} AS "
        f"SELECT DISTINCT {entity}, {START_TIME} FROM {ARRIVING}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {AFFECTED} AS SELECT DISTINCT {entity} FROM {CHANGED}"
    )
    existed = count_changed_keys_in(con, model, TOUCHED)
    return KeyChanges(inserted=count_changed(con) - existed, updated=existed)


def equal_rows(model: HistoryModel) -> str:
    """Rows b and s are equal when every compared column is: NULL equals NULL, and each
    column is compared on its own, so nothing is joined into text."""
    names = [model.table.id_column, START_TIME, *model.kept]
    return " AND ".join(
        f"b.{quote_identifier(name)} IS NOT DISTINCT FROM s.{quote_identifier(name)}"
        for name in names
    )


def find_mirror_changes(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> KeyChanges:
    """Every key whose rows differ between the source (the batch) and the store."""
    record_changed_keys(con, model, model.stored)
    stored = count_changed_keys_in(con, model, model.stored)
    arriving = count_changed_keys_in(con, model, BATCH)
    changed = count_changed(con)
    return KeyChanges(
        inserted=changed - stored, updated=stored + arriving - changed, deleted=changed - arriving
    )


def record_changed_keys(con: duckdb.DuckDBPyConnection, model: HistoryModel, stored: str) -> None:
    """The keys with a row on one side that has no equal row on the other.

    Identical rows of one key count once, as they mean one row (DESIGN rule 4).
    """
    entity = quote_identifier(model.table.id_column)
    equal = equal_rows(model)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHANGED} AS "
        f"SELECT DISTINCT coalesce(b.{entity}, s.{entity}) AS {entity}, "
        f"coalesce(b.{START_TIME}, s.{START_TIME}) AS {START_TIME} "
        f"FROM {BATCH} AS b FULL JOIN {stored} AS s ON {equal} "
        f"WHERE b.{entity} IS NULL OR s.{entity} IS NULL"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {AFFECTED} AS SELECT DISTINCT {entity} FROM {CHANGED}"
    )


def count_changed(con: duckdb.DuckDBPyConnection) -> int:
    return count(con, f"SELECT count(*) FROM {CHANGED}")


def count_changed_keys_in(con: duckdb.DuckDBPyConnection, model: HistoryModel, table: str) -> int:
    return count(
        con,
        f"SELECT count(*) FROM {CHANGED} AS b WHERE EXISTS "
        f"(SELECT 1 FROM {table} AS s WHERE {same_key(model)})",
    )


def remodel(
    con: duckdb.DuckDBPyConnection,
    model: HistoryModel,
    stored: HistoryModel,
    run_id: int,
    *,
    mirror: bool,
) -> int:
    """Sort the changed entities' rows again and put them back; return conflicting keys.

    Append: an entity's rows are its stored rows at unchanged keys plus the batch's rows
    at changed keys. Mirror: the source holds all of an entity's rows, so they are the
    batch's rows alone, and a deleted row's interval is gone, the one before it now
    reaching the next remaining start (DESIGN rule 10).
    """
    entity = quote_identifier(model.table.id_column)
    # Every stored column, typed, and no row: the batch lacks columns its source dropped,
    # and UNION BY NAME gives those NULL.
    shape = f"SELECT {compared_columns(stored)} FROM {model.stored} WHERE false"
    arriving = f"SELECT {compared_columns(model)} FROM {BATCH} AS s"
    if mirror:
        parts = [f"{arriving} SEMI JOIN {AFFECTED} AS a ON s.{entity} = a.{entity}"]
    else:
        remaining = (
            f"SELECT {compared_columns(stored)} FROM {TOUCHED} AS s "
            f"SEMI JOIN {AFFECTED} AS a ON s.{entity} = a.{entity} "
            f"ANTI JOIN {CHANGED} AS b ON {same_key(model)}"
        )
        parts = [remaining, f"SELECT {compared_columns(model)} FROM {ARRIVING}"]
    rows = " UNION ALL BY NAME ".join(f"({part})" for part in [shape, *parts])
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REMODELLED} AS {ended_rows_sql(stored, rows)}")
    con.execute(
        f"DELETE FROM {model.stored} AS s WHERE s.{entity} IN (SELECT {entity} FROM {AFFECTED})"
    )
    con.execute(f"INSERT INTO {model.stored} BY NAME SELECT * FROM {REMODELLED}")
    return write_superseded(con, stored, run_id, only=AFFECTED, rows=REMODELLED)


def merge_events(
    con: duckdb.DuckDBPyConnection,
    stored: str,
    rows: str,
    insert_id: str | None,
    cursor: str | None,
) -> tuple[int, int]:
    """Insert the run's events, replacing stored ones of the same key; (new, updated).

    An event read again exactly as stored replaces itself and is no update. Without an
    insert id, an event is known by all its columns but the cursor: loaded again with a
    new load time, it is the same event.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE {BATCH} AS {rows}")
    columns = [name for name in column_types(con, "main", BATCH, temporary=True)]
    key = event_key(insert_id, [name for name in columns if name != cursor])
    in_batch = f"{key('s')} IN (SELECT {key('b')} FROM {BATCH} AS b)"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {REPLACED} AS SELECT * FROM {stored} AS s WHERE {in_batch}"
    )
    replaced = count(con, f"SELECT count(*) FROM {REPLACED}")
    unchanged = count(
        con,
        f"SELECT count(*) FROM {BATCH} AS b WHERE hash(b) IN (SELECT hash(r) FROM {REPLACED} AS r)",
    )
    con.execute(f"DELETE FROM {stored} AS s WHERE {in_batch}")
    con.execute(f"INSERT INTO {stored} BY NAME SELECT * FROM {BATCH}")
    arrived = count(con, f"SELECT count(*) FROM {BATCH}")
    return arrived - replaced, replaced - unchanged


def event_key(insert_id: str | None, columns: list[str]) -> Callable[[str], str]:
    """An event's key under a table alias: its insert id, or a hash of the named columns."""
    if insert_id:
        return lambda alias: f"{alias}.{quote_identifier(insert_id)}"

    def row_hash(alias: str) -> str:
        fields = ", ".join(
            f"{quote_identifier(name)} := {alias}.{quote_identifier(name)}" for name in columns
        )
        return f"hash(struct_pack({fields}))"

    return row_hash
