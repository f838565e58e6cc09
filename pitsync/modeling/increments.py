"""Append and mirror runs: merge a run's rows into the store, touching only what changes.

A history row is keyed by (entity, start time). A run's rows for a key (in append mode,
those of the key's latest load) replace every stored row of that key; a key whose rows
come back exactly as stored (the boundary rows an append run reads again, or rows inside
the lookback) is no change at all. Only the
entities with a changed key are re-modelled: their remaining stored rows and their new
rows are sorted again, so every end time, tie and hidden event of theirs is as a full
sync would make it. Of those, only the keys whose rows came out different (a changed
key, and the one before it whose end moved) are written back; no other row is touched.

Rows are compared column by column, NULL equal to NULL (IS NOT DISTINCT FROM, EXCEPT):
NULL -> 10 -> NULL is two changes, and no joining of text can make "pro" + "10" look
like "pro1" + "0". Identical history rows of one key mean one row (DESIGN rule 4), so
they are compared as sets; identical events are as many events, compared as multisets.

Events are keyed by their insert id, or, without one, by the values of the columns
that identify them; a run's events of a key replace the stored events of that key, unless
they are the same.

The source's columns may change between runs; schema_drift.py says how they are met.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import duckdb

from pitsync.modeling.events import EventsModel
from pitsync.modeling.intervals import (
    HistoryModel,
    ModelCounts,
    ended_rows_sql,
    good_rows_sql,
    kept_columns,
    non_empty,
    write_superseded,
    write_view,
)
from pitsync.modeling.loads import drop_superseded_rows, keeps_loads
from pitsync.modeling.schema_drift import (
    check_event_ids_keep_their_text,
    check_keys_read_alike,
    column_types,
    meet_event_columns,
    meet_event_ids,
    reconcile_columns,
)
from pitsync.modeling.staging import STAGED, count, table_exists
from pitsync.quoting import fold_name, quote_identifier
from pitsync.store import (
    DISTINCT_ID,
    END_TIME,
    EVENT,
    EVENT_IDENTITY,
    INTERNAL_SCHEMA,
    START_TIME,
    TIME,
)

log = logging.getLogger(__name__)

FLOATS = ("FLOAT", "DOUBLE")
BATCH = "__pitsync_batch"
CHANGED = "__pitsync_changed_keys"
AFFECTED = "__pitsync_affected_entities"
REMODELLED = "__pitsync_remodelled"
ARRIVING = "__pitsync_arriving"  # the run's rows at the keys it changes
REPLACED = "__pitsync_replaced"  # events: the stored events of the run's event keys
RUN_EVENTS = "__pitsync_run_events"  # events: the run's good events, before keying
EVENT_KEY = "__pitsync_event_key"  # events: an event's insert id, or its identity
TOUCHED = "__pitsync_touched"  # the stored rows of the entities a run may change
REWRITTEN = "__pitsync_rewritten"  # the keys whose stored rows a run replaces
STORED_ROW = "__pitsync_stored_row"  # a touched row's row id in the stored table
HELD = "__pitsync_held"  # what a dropped column held, for a row the source did not change


def apply_run(
    con: duckdb.DuckDBPyConnection,
    model: HistoryModel | EventsModel,
    run_id: int,
    *,
    reads_anew: bool = False,
) -> tuple[ModelCounts, HistoryModel | EventsModel]:
    """Apply the staged run as its table's mode says: replace, merge (append) or mirror.

    A run that `reads_anew` reads every row its source holds now (no watermark): no
    earlier load it meets is one a later load has left behind. Returns the counts and the
    model as stored after the run: a history table that keeps a column its source dropped
    has that property still.
    """
    if model.table.mode == "full":
        return model.apply(con, run_id), model
    rows_read, quarantined = model.stage(con, run_id)
    if isinstance(model, HistoryModel) and keeps_loads(model.table):
        drop_superseded_rows(con, model.table)
    if not table_exists(con, model.stored):
        return model.replace(con, run_id, rows_read, quarantined), model  # the first run
    check_keys_read_alike(con, model)
    if isinstance(model, EventsModel):
        check_event_ids_keep_their_text(con, model)
        inserted, updated, stored_events = merge_events(con, model, reads_anew=reads_anew)
        return ModelCounts(rows_read, inserted, quarantined, 0, updated), stored_events

    stored, columns = reconcile_columns(con, model)
    model = replace(model, float_columns=staged_floats(con, model))
    if model.table.mode == "mirror":
        # A view, not a copy: the whole table's good rows are read from the staged rows.
        con.execute(f"CREATE OR REPLACE TEMP VIEW {BATCH} AS {good_rows_sql(model)}")
        changes = find_mirror_changes(con, model)
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {BATCH} AS {good_rows_sql(model)}")
        keep_touched(
            con, model, f"SELECT DISTINCT {quote_identifier(model.table.id_column)} FROM {BATCH}"
        )
        changes = find_append_changes(con, model)
    conflicts = remodel(con, model, stored, run_id, everything=columns.reordered)
    if columns.reordered:
        changes = replace(changes, updated=changes.updated + count_decided_again(con))
    elif columns.added or columns.renamed or columns.widened:
        # The losers kept as hidden events hold every property, the new ones too, under
        # the names the source spells them with now, as their types write them now. Only
        # the re-modelled entities' conflicts are this run's to count and log.
        write_superseded(con, stored, run_id, warn=False)
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


def compared_columns(model: HistoryModel) -> str:
    entity = quote_identifier(model.table.id_column)
    return f"{entity}, {START_TIME}{kept_columns(model)}"


def same_key(model: HistoryModel, left: str = "s", right: str = "b") -> str:
    entity = quote_identifier(model.table.id_column)
    return f"{left}.{entity} = {right}.{entity} AND {left}.{START_TIME} = {right}.{START_TIME}"


def keep_touched(con: duckdb.DuckDBPyConnection, model: HistoryModel, entities: str) -> None:
    """The stored rows of the `entities` (a query of ids), with their row ids: the one
    scan of the whole stored table."""
    entity = quote_identifier(model.table.id_column)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {TOUCHED} AS SELECT s.rowid AS {STORED_ROW}, s.* "
        f"FROM {model.stored} AS s SEMI JOIN ({entities}) AS b ON s.{entity} = b.{entity}"
    )


def find_append_changes(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> KeyChanges:
    """The keys whose rows in the run (its latest load of each key) are not the stored ones.

    Rows read again as stored (at the watermark, or inside the lookback) bring nothing.
    A changed key's rows in the run replace all of its stored rows. Rows are compared
    as sets: a key whose identical rows only grew or shrank in number is unchanged.
    """
    columns = compared_columns(model)
    run = f"SELECT {columns} FROM {BATCH}"
    kept = f"SELECT {columns} FROM {TOUCHED} AS s SEMI JOIN {BATCH} AS b ON {same_key(model)}"
    differing = differing_rows(run, kept, counted=False)
    record_keys_of(con, model, f"SELECT DISTINCT {key_columns(model)} FROM {differing}")
    keep_arriving(con, model)
    existed = count_changed_keys_in(con, model, TOUCHED)
    return KeyChanges(inserted=count_changed(con) - existed, updated=existed)


def differing_rows(left: str, right: str, *, counted: bool = True) -> str:
    """The rows of either query that the other lacks; NULL equals NULL and columns are
    compared one by one. `counted`: as multisets, a row twice on one side and once on
    the other differs; else as sets."""
    minus = "EXCEPT ALL" if counted else "EXCEPT"
    return f"(({left} {minus} {right}) UNION ALL ({right} {minus} {left}))"


def keep_arriving(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """The batch's rows at the changed keys: what the store takes for them."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ARRIVING} AS SELECT b.* FROM {BATCH} AS b "
        f"SEMI JOIN {CHANGED} AS s ON {same_key(model)}"
    )


def key_columns(model: HistoryModel) -> str:
    return f"{quote_identifier(model.table.id_column)}, {START_TIME}"


def record_keys_of(con: duckdb.DuckDBPyConnection, model: HistoryModel, keys: str) -> None:
    """The run's changed keys, and the entities they belong to."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {CHANGED} AS {keys}")
    record_entities_of(con, model, CHANGED)


def record_entities_of(con: duckdb.DuckDBPyConnection, model: HistoryModel, keys: str) -> None:
    """AFFECTED: the entities of the keys in the table `keys`, the ones the run changes."""
    entity = quote_identifier(model.table.id_column)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {AFFECTED} AS SELECT DISTINCT {entity} FROM {keys}")


def staged_floats(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> frozenset[str]:
    """The model's float columns still staged as floats: one the run holds no value of is
    staged as its stored type now (`meet_source_columns`), and has no -0.0 to read."""
    types = column_types(con, "main", STAGED, temporary=True)
    return frozenset(name for name in model.float_columns if types.get(name) in FLOATS)


def equal_rows(model: HistoryModel) -> str:
    """Rows b and s are equal when every compared column is: NULL equals NULL, and each
    column is compared on its own, so nothing is joined into text."""
    names = [model.table.id_column, START_TIME, *model.kept]
    return " AND ".join(
        f"b.{quote_identifier(name)} IS NOT DISTINCT FROM s.{quote_identifier(name)}"
        for name in names
    )


def find_mirror_changes(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> KeyChanges:
    """Every key whose rows differ between the source (the batch) and the store.

    The changed keys' rows in the batch are what the store takes; a changed key the
    batch no longer has is a delete.
    """
    record_changed_keys(con, model)
    entity = quote_identifier(model.table.id_column)
    keep_touched(con, model, f"SELECT {entity} FROM {AFFECTED}")
    keep_arriving(con, model)
    stored = count_changed_keys_in(con, model, TOUCHED)
    arriving = count_changed_keys_in(con, model, ARRIVING)
    changed = count_changed(con)
    return KeyChanges(
        inserted=changed - stored, updated=stored + arriving - changed, deleted=changed - arriving
    )


def record_changed_keys(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """The keys with a row on one side that has no equal row on the other.

    Identical rows of one key count once, as they mean one row (DESIGN rule 4).
    """
    entity = quote_identifier(model.table.id_column)
    record_keys_of(
        con,
        model,
        f"SELECT DISTINCT coalesce(b.{entity}, s.{entity}) AS {entity}, "
        f"coalesce(b.{START_TIME}, s.{START_TIME}) AS {START_TIME} "
        f"FROM {BATCH} AS b FULL JOIN {model.stored} AS s ON {equal_rows(model)} "
        f"WHERE b.{entity} IS NULL OR s.{entity} IS NULL",
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
    everything: bool = False,
) -> int:
    """Sort the changed entities' rows again and store what differs; return conflicting keys.

    An entity's rows are its stored rows at unchanged keys plus the run's rows at changed
    keys; a key the run deletes (mirror) has neither, so the interval before it now
    reaches the next remaining start (DESIGN rule 10). With `everything`, every entity's
    rows are sorted again and the whole table is written anew.
    """
    entity = quote_identifier(model.table.id_column)
    # Every stored column, typed, and no row: the batch lacks columns its source dropped,
    # and UNION BY NAME gives those NULL.
    shape = f"SELECT {compared_columns(stored)} FROM {model.stored} WHERE false"
    if everything:
        remaining = f"SELECT {compared_columns(stored)} FROM {model.stored} AS s"
    else:
        remaining = (
            f"SELECT {compared_columns(stored)} FROM {TOUCHED} AS s "
            f"SEMI JOIN {AFFECTED} AS a ON s.{entity} = a.{entity}"
        )
    remaining += f" ANTI JOIN {CHANGED} AS b ON {same_key(model)}"
    parts = [shape, remaining, arriving_rows_sql(model, stored)]
    rows = " UNION ALL BY NAME ".join(f"({part})" for part in parts)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REMODELLED} AS {ended_rows_sql(stored, rows)}")
    if everything:
        record_rewritten_keys(con, model, stored, f"SELECT * FROM {model.stored}")
        con.execute(f"CREATE OR REPLACE TABLE {model.stored} AS FROM {REMODELLED}")
        # The entities the run changed are those with a rewritten key: a changed key, or
        # one with a new winner. Every loser is written anew; theirs are the run's.
        record_entities_of(con, model, REWRITTEN)
        return write_superseded(con, stored, run_id, counted=AFFECTED)
    touched = f"SELECT * FROM {TOUCHED} AS s SEMI JOIN {AFFECTED} AS a ON s.{entity} = a.{entity}"
    record_rewritten_keys(con, model, stored, touched)
    rewrite_differing_keys(con, model)
    return write_superseded(con, stored, run_id, only=AFFECTED, rows=REMODELLED)


def arriving_rows_sql(model: HistoryModel, stored: HistoryModel) -> str:
    """The run's rows at changed keys, with what the columns the source dropped held.

    A row the source did not change (equal, in every column it still has, to a stored
    row of its key) keeps the dropped columns' values; a row it changed leaves them
    undefined. Of equal stored rows, the greatest dropped values are taken, so the rows
    are not multiplied.
    """
    current = [model.table.id_column, START_TIME, *model.kept]
    dropped = [name for name in stored.properties if name not in model.properties]
    if not dropped:
        return f"SELECT {compared_columns(model)} FROM {ARRIVING}"
    names = ", ".join(quote_identifier(name) for name in current)
    values = ", ".join(f"{quote_identifier(name)} := {quote_identifier(name)}" for name in dropped)
    held = f"SELECT {names}, max(struct_pack({values})) AS {HELD} FROM {TOUCHED} GROUP BY ALL"
    same = " AND ".join(
        f"a.{quote_identifier(name)} IS NOT DISTINCT FROM h.{quote_identifier(name)}"
        for name in current
    )
    restored = ", ".join(
        f"h.{HELD}.{quote_identifier(name)} AS {quote_identifier(name)}" for name in dropped
    )
    arriving = ", ".join(f"a.{quote_identifier(name)}" for name in current)
    return f"SELECT {arriving}, {restored} FROM {ARRIVING} AS a LEFT JOIN ({held}) AS h ON {same}"


def record_rewritten_keys(
    con: duckdb.DuckDBPyConnection, model: HistoryModel, stored: HistoryModel, before: str
) -> None:
    """The keys whose stored rows (`before`, a query) the re-modelling changed.

    Those are the changed keys, and the unchanged keys whose winning row now differs: for
    the same rows sorted the same way, only its end (the row before a new or deleted
    start); after the order that decides ties changed, also which row wins. The losers of
    an unchanged key, the same rows, end where they start.

    Each unchanged key is marked `new_winner` when more than its end differs.
    """
    entity = quote_identifier(model.table.id_column)
    keys = key_columns(model)
    values = [quote_identifier(name) for name in stored.kept]
    winners = ", ".join(f"s.{name}" for name in [END_TIME, *values])
    before_winners = (
        f"SELECT s.{entity}, s.{START_TIME}, {winners} FROM ({before}) AS s WHERE {non_empty('s.')}"
    )
    after = f"SELECT {keys}, {winners} FROM {REMODELLED} AS s WHERE {non_empty('s.')}"
    new_winner = " OR ".join(f"b.{name} IS DISTINCT FROM s.{name}" for name in values) or "false"
    differs = f"b.{END_TIME} IS DISTINCT FROM s.{END_TIME} OR {new_winner}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {REWRITTEN} AS "
        f"SELECT {keys}, false AS new_winner FROM {CHANGED} UNION ALL "
        f"SELECT b.{entity}, b.{START_TIME}, {new_winner} FROM ({before_winners}) AS b "
        f"JOIN ({after}) AS s ON {same_key(model)} "
        f"ANTI JOIN {CHANGED} AS c ON {same_key(model, 'b', 'c')} WHERE {differs}"
    )
    if log.isEnabledFor(logging.DEBUG):  # the count is a query of its own
        rewritten = count(con, f"SELECT count(*) FROM {REWRITTEN}")
        log.debug("table %s: %d keys written back", model.table.name, rewritten)


def rewrite_differing_keys(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """Replace the stored rows of just the rewritten keys: most rows of a re-modelled
    entity come back as they were, and stay as they are."""
    # The stored rows are found by their row ids, taken when they were read this run.
    con.execute(
        f"DELETE FROM {model.stored} WHERE rowid IN (SELECT s.{STORED_ROW} FROM {TOUCHED} "
        f"AS s SEMI JOIN {REWRITTEN} AS b ON {same_key(model)})"
    )
    con.execute(
        f"INSERT INTO {model.stored} BY NAME SELECT s.* FROM {REMODELLED} AS s "
        f"SEMI JOIN {REWRITTEN} AS b ON {same_key(model)}"
    )


def count_decided_again(con: duckdb.DuckDBPyConnection) -> int:
    """After the order deciding ties changed: how many keys the run did not change have a
    new winner (they are updates; a key whose end alone moved is not)."""
    return count(con, f"SELECT count(*) FROM {REWRITTEN} WHERE new_winner")


def merge_events(
    con: duckdb.DuckDBPyConnection, model: EventsModel, *, reads_anew: bool
) -> tuple[int, int, EventsModel]:
    """Insert the run's events, replacing stored ones of the same key.

    Returns how many of the events written are new, how many replace stored ones, and
    the model as stored (with the columns its source dropped). The run's events of a key
    (those of its latest load) replace the stored ones, unless they are the same events
    (compared as whole rows, duplicates counted): those keys are left as stored, so an
    event read again keeps what a dropped column held. Without an insert id, an event is
    known by its name, user, time and identity properties (`event_identity`): loaded again
    with a new load time, it is the same event, and the copies of its latest load are
    what is kept.
    """
    stored = model.stored
    known = column_types(con, INTERNAL_SCHEMA, f"events__{model.table.name}")
    if not model.table.insert_id:
        model = replace(model, identity=event_identity(con, model, known))
    con.execute(f"CREATE OR REPLACE TEMP VIEW {RUN_EVENTS} AS {model.select_good_rows()}")
    columns = column_types(con, "main", RUN_EVENTS, temporary=True)
    if meet_event_ids(con, model, columns, known):
        known = column_types(con, INTERNAL_SCHEMA, f"events__{model.table.name}")
    stored_events = meet_event_columns(con, model, columns, known)
    key = event_key(model.table.insert_id, key_types(con, model))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {BATCH} AS "
        f"SELECT b.*, {key('b')} AS {EVENT_KEY} FROM {RUN_EVENTS} AS b"
    )
    # The one pass over the stored events: without an insert id, each one's identity is
    # built here, and the ones a run replaces are deleted by the row ids taken with them.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {REPLACED} AS SELECT s.rowid AS {STORED_ROW}, s.*, "
        f"{key('s')} AS {EVENT_KEY} FROM {stored} AS s "
        f"WHERE {key('s')} IN (SELECT {EVENT_KEY} FROM {BATCH})"
    )
    record_changed_events(con, [*columns, EVENT_KEY])
    if model.stored_cursor and model.table.mode == "append" and not reads_anew:
        keep_later_loads(con, model.stored_cursor)
    changed = f"{EVENT_KEY} IN (SELECT {EVENT_KEY} FROM {CHANGED})"
    con.execute(
        f"DELETE FROM {stored} WHERE rowid IN (SELECT {STORED_ROW} FROM {REPLACED} WHERE {changed})"
    )
    con.execute(
        f"INSERT INTO {stored} BY NAME SELECT * EXCLUDE ({EVENT_KEY}) FROM {BATCH} WHERE {changed}"
    )
    stored_before = f"{EVENT_KEY} IN (SELECT {EVENT_KEY} FROM {REPLACED})"
    arrived = f"SELECT count(*) FROM {BATCH} WHERE {changed} AND"
    inserted = count(con, f"{arrived} NOT {stored_before}")
    updated = count(con, f"{arrived} {stored_before}")
    return inserted, updated, stored_events


def record_changed_events(con: duckdb.DuckDBPyConnection, columns: list[str]) -> None:
    """The event keys whose events in the run differ from the stored ones, as multisets."""
    names = ", ".join(quote_identifier(name) for name in columns)
    run, kept = f"SELECT {names} FROM {BATCH}", f"SELECT {names} FROM {REPLACED}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHANGED} AS SELECT DISTINCT {EVENT_KEY} "
        f"FROM {differing_rows(run, kept)}"
    )


def keep_later_loads(con: duckdb.DuckDBPyConnection, cursor: str) -> None:
    """Leave as stored the keys whose stored events are of a later load than the run's:
    an earlier load read again (inside the lookback) never replaces a later one, even one
    that has left the source since. The stored events keep their `cursor` column (under
    its stored name)."""
    loaded = quote_identifier(cursor)
    latest = f"SELECT {EVENT_KEY}, max({loaded}) AS loaded FROM {{}} GROUP BY ALL"
    con.execute(
        f"DELETE FROM {CHANGED} WHERE {EVENT_KEY} IN (SELECT s.{EVENT_KEY} "
        f"FROM ({latest.format(REPLACED)}) AS s JOIN ({latest.format(BATCH)}) AS b "
        f"USING ({EVENT_KEY}) WHERE s.loaded > b.loaded)"
    )


def event_identity(
    con: duckdb.DuckDBPyConnection, model: EventsModel, stored_types: dict[str, str]
) -> tuple[str, ...]:
    """The properties that tell this table's events apart, when it has no insert id.

    Those its events had when the table was first stored, less the ones the source has
    dropped since. A column added later, or dropped and added back, is no part of an
    event's identity: an event read again with it filled in (a backfill) is the same
    event, and its latest load replaces the stored one.
    """
    name, cursor = model.table.name, model.table.cursor
    found = con.execute(
        f"SELECT properties FROM {EVENT_IDENTITY} WHERE table_name = ?", [name]
    ).fetchall()
    # A store written before identities were kept: the stored columns stand in.
    recorded = found[0][0] if found else [*stored_types]
    # Under the names the source spells them with now (names compare without case).
    spelled = {fold_name(name): name for name in model.properties}
    identity = tuple(
        spelled[fold_name(column)]
        for column in recorded
        if fold_name(column) in spelled and spelled[fold_name(column)] != cursor
    )
    con.execute(f"INSERT OR REPLACE INTO {EVENT_IDENTITY} VALUES (?, ?)", [name, list(identity)])
    return identity


def key_types(con: duckdb.DuckDBPyConnection, model: EventsModel) -> dict[str, str]:
    """The columns that tell events apart without an insert id, with their stored types:
    name, user, time and the identity properties. Both sides are cast to the stored
    types, so that a value compares alike from either."""
    stored_types = column_types(con, INTERNAL_SCHEMA, f"events__{model.table.name}")
    names = [EVENT, DISTINCT_ID, TIME, *model.identifying()]
    return {name: stored_types[name] for name in names}


def event_key(insert_id: str | None, columns: dict[str, str]) -> Callable[[str], str]:
    """An event's key under a table alias: its insert id, or a struct of the named
    columns, each cast to the given type.

    The struct is compared whole, never by a hash of it: DuckDB hashes an empty list and
    a NULL list alike, and a hash that met another event's would replace it. Inside a
    struct NULL equals NULL, so an event with an undefined property is found again.
    """
    if insert_id:
        return lambda alias: f"{alias}.{quote_identifier(insert_id)}"

    def identity(alias: str) -> str:
        fields = ", ".join(
            f"{quote_identifier(name)} := CAST({alias}.{quote_identifier(name)} AS {kind})"
            for name, kind in columns.items()
        )
        return f"struct_pack({fields})"

    return identity
