"""The tables the store holds: those the configuration no longer names, and dropping one.

A table renamed or removed in the configuration stays in the store until it is dropped:
it answers queries, its events stay in `all_events` and its values in the profiles, and
it keeps owning its property names (DESIGN rule 11), so a table renamed over the same
source table cannot take them. `drop_table` removes one table in one transaction: its
rows, its relation and every row the store keeps of it by its name, then rebuilds the
public views as a run does at its end.

The runs stay, with the drop's own record: they are the account of what was done. So
do the table's quarantined rows, each the bad row of one of those runs, which its
record counts (DESIGN rule 8: bad rows are never dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb

from pitsync.config import Config
from pitsync.connectors.runs import DROPPED, RunRecord, next_run_id, utc_now, write_run
from pitsync.errors import PitsyncError, StoreError, first_line
from pitsync.interrupts import held_while_committing, is_interrupt
from pitsync.modeling.events import stored_events_table
from pitsync.modeling.hidden_events import CatalogEntry, read_catalog, refresh_views
from pitsync.modeling.intervals import stored_intervals_table
from pitsync.modeling.loads import remembered_loads_table
from pitsync.modeling.profile_tables import applied_rows_table
from pitsync.modeling.staging import count
from pitsync.paths import FILE, path_kind
from pitsync.quoting import fold_name
from pitsync.store import (
    CATALOG,
    EVENT_IDENTITY,
    SUPERSEDED,
    WATERMARKS,
    check_store_exists,
    open_for_writing,
    open_read_only,
    roll_back,
)

log = logging.getLogger(__name__)

# The internal tables that keep rows of many tables, each row under its table's name.
KEPT_BY_NAME = (SUPERSEDED, WATERMARKS, EVENT_IDENTITY, CATALOG)

# Where each kind of table keeps its own rows. All are dropped, whatever the kind now: a
# name whose kind changed between configurations may have left the other kind's behind.
STORED_RELATIONS = (
    stored_intervals_table,
    stored_events_table,
    applied_rows_table,
    remembered_loads_table,
)


@dataclass(frozen=True)
class DroppedTable:
    """What the store held of a table it no longer holds, and the record of the drop."""

    entry: CatalogEntry
    record: RunRecord  # `deleted`: its intervals, events, or (a profile table) its ids


def drop_table(config: Config, name: str, *, wait: float) -> DroppedTable:
    """`pitsync drop-table NAME`: remove one table from the store, in one transaction.

    Properties a profile table set stay in the profiles, as any update's do: the store
    keeps the values, not which table or file set them.
    """
    check_store_exists(config.store_path, "tables")
    con = open_for_writing(config.store_path, config.memory_limit, wait)
    try:
        entry = stored_entry(con, name)
        con.execute("BEGIN TRANSACTION")
        committed = False
        try:
            dropped = drop_in_transaction(con, entry)
            with held_while_committing():
                con.execute("COMMIT")
                committed = True
        except BaseException as error:
            if committed:
                raise  # an interrupt just after the commit: the drop stands
            roll_back(con)
            if not isinstance(error, duckdb.Error) or is_interrupt(error):
                raise
            raise StoreError(
                f"dropping `{entry.table_name}` failed, and nothing was changed: "
                f"{first_line(error)}"
            ) from error
    finally:
        with held_while_committing():  # closing writes the committed drop into the file
            con.close()
    log.debug("table %s: dropped %d rows", entry.table_name, dropped.record.deleted)
    return dropped


def drop_in_transaction(con: duckdb.DuckDBPyConnection, entry: CatalogEntry) -> DroppedTable:
    """Count, remove, rebuild the views and record the drop, in the open transaction."""
    record = RunRecord(run_id=next_run_id(con), table_name=entry.table_name, mode=DROPPED)
    record.deleted = held_rows(con, entry)
    remove(con, entry)
    refresh_views(con)
    record.status = "succeeded"
    record.finished_at = utc_now()
    write_run(con, record)
    return DroppedTable(entry, record)


def stored_entry(con: duckdb.DuckDBPyConnection, name: str) -> CatalogEntry:
    """The catalog entry of the table called `name`, in any case, as the store compares
    names; a clear error listing the tables when there is none."""
    catalog = read_catalog(con)
    exact = [entry for entry in catalog if entry.table_name == name]
    found = exact or [entry for entry in catalog if fold_name(entry.table_name) == fold_name(name)]
    if len(found) == 1:
        return found[0]
    held = ", ".join(f"{entry.table_name} ({entry.kind})" for entry in catalog)
    raise StoreError(
        f"the store holds no table `{name}`; "
        + (f"it holds: {held}" if held else "it holds no synced tables")
    )


def held_rows(con: duckdb.DuckDBPyConnection, entry: CatalogEntry) -> int:
    """How many rows the table holds: a profile table's go to the shared profiles, so
    its own are the ids it keeps the last applied row of."""
    if entry.is_history or entry.is_events:
        return count(con, f"SELECT count(*) FROM {entry.stored_as}")
    return count(con, f"SELECT count(*) FROM {applied_rows_table(entry.table_name)}")


def remove(con: duckdb.DuckDBPyConnection, entry: CatalogEntry) -> None:
    """Drop the table's relations and delete every row kept under its name."""
    if entry.is_history:  # a view over its intervals, the only public relation of its own
        con.execute(f"DROP VIEW IF EXISTS {entry.stored_as}")
    for relation in STORED_RELATIONS:
        con.execute(f"DROP TABLE IF EXISTS {relation(entry.table_name)}")
    for table in KEPT_BY_NAME:
        con.execute(f"DELETE FROM {table} WHERE table_name = ?", [entry.table_name])


def unconfigured_tables(config: Config) -> list[str]:
    """The tables the store holds that the configuration does not name, in name order.

    Only a hint is made of them, so the store is not waited for: none are found while
    another process holds it, or before it exists.
    """
    if path_kind(config.store_path) != FILE:
        return []
    try:
        con = open_read_only(config.store_path, config.memory_limit, wait_seconds=0)
    except PitsyncError:
        return []
    try:
        names = [entry.table_name for entry in read_catalog(con)]
    finally:
        con.close()
    return [name for name in names if not config.configures(name)]
