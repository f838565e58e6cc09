"""Meeting a source whose columns changed between runs of an append or mirror table.

A new column becomes a property; a dropped one stays, with its stored values; a type
that holds every value of the stored one is widened to, and any other type change stops
the run before anything is applied. Ids that change type are kept comparable, as text
when integers and text meet.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

import duckdb

from pitsync.config import TableConfig
from pitsync.errors import ConfigError
from pitsync.modeling.events import EventsModel
from pitsync.modeling.hidden_events import CatalogEntry, read_catalog
from pitsync.modeling.intervals import ENTITY, HistoryModel
from pitsync.modeling.staging import REASON, STAGED, count
from pitsync.modeling.timestamps import same_zone
from pitsync.quoting import fold_name, quote_identifier, quote_string, spelled_as_in
from pitsync.store import DISTINCT_ID, END_TIME, EVENT, INTERNAL_SCHEMA, START_TIME, TIME

log = logging.getLogger(__name__)

# Types each type can hold every value of, for a source column whose type changed.
INTEGER_WIDTHS = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"]
FLOAT_WIDTHS = ["FLOAT", "DOUBLE"]
INTEGER_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19, "HUGEINT": 39}
DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
# DuckDB's type of a column that holds nothing but NULL (a source's Arrow null type).
NULL_TYPE = '"NULL"'


def holds(wide: str, narrow: str) -> bool:
    """Whether every value of type `narrow` is a value of type `wide`."""
    if wide == narrow or narrow == NULL_TYPE:
        return True
    if wide.endswith("[]") and narrow.endswith("[]"):  # a list holds what its items hold
        return holds(wide.removesuffix("[]"), narrow.removesuffix("[]"))
    for chain in (INTEGER_WIDTHS, FLOAT_WIDTHS):
        if wide in chain and narrow in chain:
            return chain.index(wide) >= chain.index(narrow)
    if wide == "DOUBLE" and narrow in INTEGER_WIDTHS[:3]:
        return True  # up to 32-bit integers are exact in a double
    wide_decimal, narrow_decimal = DECIMAL.fullmatch(wide), DECIMAL.fullmatch(narrow)
    if wide_decimal and narrow in INTEGER_DIGITS:
        # Without a scale, an integer keeps its text, and so an id stays the same id.
        precision, scale = map(int, wide_decimal.groups())
        return scale == 0 and precision >= INTEGER_DIGITS[narrow]
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


@dataclass(frozen=True)
class ColumnChanges:
    """How the stored columns changed to meet the source's."""

    added: list[str]
    reordered: bool  # the order that decides ties is not the one the stored rows had
    renamed: bool = False  # a column is spelled anew (names compare without case)
    widened: bool = False  # a column's type grew: values are written anew (2 as 2.0)


def reconcile_columns(
    con: duckdb.DuckDBPyConnection, model: HistoryModel
) -> tuple[HistoryModel, ColumnChanges]:
    """Meet a source whose columns changed since the last run.

    A new column becomes a property (stored rows have it NULL, so they are unchanged); a
    column the source dropped stays, with its old values, and new rows leave it NULL; a
    type that holds the old one's values is widened to; any other type change stops the
    run before anything is applied. Ids are met by their own rule (`reconcile_ids`).

    Returns the stored model, and how its columns changed. Ties are decided by the
    source's columns in the source's order, then the dropped ones: when that order is not
    the one the stored rows were decided by, every tie is decided again.
    """
    table = model.table
    intervals = f"intervals__{table.name}"
    before = respell_id_column(con, model, column_types(con, INTERNAL_SCHEMA, intervals))
    staged_types = column_types(con, "main", STAGED, temporary=True)
    reconcile_ids(con, model, before[table.id_column], staged_types[ENTITY])
    arriving = {name: staged_types[name] for name in model.kept}
    meet_source_columns(con, table.name, model.stored, before, arriving)
    after = column_types(con, INTERNAL_SCHEMA, intervals)
    keys = {table.id_column, START_TIME, END_TIME, table.tie_breaker}
    were_properties = properties_at_last_run(con, table.name)
    retired = retire_columns(
        con, model, [name for name in after if name not in keys], were_properties
    )
    dropped = [name for name in after if name not in keys | set(retired) and name not in model.kept]
    report_dropped(table.name, dropped)
    stored = replace(model, properties=model.properties + dropped)
    # The order the stored rows were decided by (retired columns too, under the names they
    # have now); columns added just now come last.
    spelled = {fold_name(name): name for name in after}
    folded = {fold_name(name) for name in before}
    added = [name for name in model.kept if fold_name(name) not in folded]
    decided_by = [
        spelled.get(fold_name(name), name)
        for name in before
        if name not in keys or name == table.tie_breaker
    ]
    reordered = decided_by + added != stored.kept
    if reordered:
        log.info("table %s: the columns' order changed; every tie is decided again", table.name)
    elif tie_breaker_moved(model, folded, were_properties):
        log.info("table %s: the tie-breaker changed; every tie is decided again", table.name)
        reordered = True
    renamed = any(name not in before and fold_name(name) in folded for name in model.kept)
    types_before = {fold_name(name): kind for name, kind in before.items()}
    widened = any(types_before.get(fold_name(name), kind) != kind for name, kind in after.items())
    return stored, ColumnChanges(added, reordered, renamed, widened)


def properties_at_last_run(con: duckdb.DuckDBPyConnection, table: str) -> set[str] | None:
    """The table's properties as the store recorded them at its last run, folded; None
    before the first."""
    entry = next((entry for entry in read_catalog(con) if entry.table_name == table), None)
    return {fold_name(name) for name in entry.properties} if entry else None


def tie_breaker_moved(
    model: HistoryModel, stored: set[str], were_properties: set[str] | None
) -> bool:
    """Whether a stored column turned from a property into the tie-breaker, or back, since
    the last run. Ties may fall as before, but the hidden events of the rows that lost one
    carry the properties, so each is written again. `stored`: the stored columns, folded.
    """
    if were_properties is None:
        return False
    tie = model.table.tie_breaker
    became_tie = tie is not None and fold_name(tie) in were_properties
    became_property = any(
        fold_name(name) in stored and fold_name(name) not in were_properties
        for name in model.properties
    )
    return became_tie or became_property


def retire_columns(
    con: duckdb.DuckDBPyConnection,
    model: HistoryModel,
    stored_columns: list[str],
    were_properties: set[str] | None,
) -> list[str]:
    """Drop the stored columns a sync from scratch would not have: properties that the
    source still has but the configuration now reads as row metadata (the cursor), and a
    former tie-breaker that is neither the tie-breaker nor a property now. (Left, it would
    turn into a property the source dropped, one another table may own.)
    `were_properties`: the properties at the last run, folded; None before the first."""
    kept = {fold_name(name) for name in model.kept}
    retired = [
        name
        for name in stored_columns
        if fold_name(name) not in kept
        and (
            name in model.source_columns
            or (were_properties is not None and fold_name(name) not in were_properties)
        )
    ]
    for name in retired:
        log.info("table %s: column `%s` is no property now, and is dropped", model.table.name, name)
        con.execute(f"ALTER TABLE {model.stored} DROP COLUMN {quote_identifier(name)}")
    return retired


def check_keys_read_alike(
    con: duckdb.DuckDBPyConnection, model: HistoryModel | EventsModel
) -> None:
    """Refuse a run whose keys the stored rows were not keyed by: a history's other id
    column, or (in append mode) times read anew: the time column, its type, `timezone` or
    `time_unit` changed. An append run never deletes, so it would keep every row twice,
    once at its old key (an event without an insert id is keyed by its time too); a
    mirror run compares every row, and moves the starts itself.
    """
    table = model.table
    entry = next((e for e in read_catalog(con) if e.table_name == table.name), None)
    if entry is None:
        return
    if isinstance(model, HistoryModel) and fold_name(entry.id_column) != fold_name(table.id_column):
        raise ConfigError(
            f"table `{table.name}`: its rows are stored by id column `{entry.id_column}`, "
            f"and `id_column` is `{table.id_column}` now; nothing was applied: sync once "
            'with mode = "full" to store the table anew by its new ids',
            key="id_column",
            table=table.name,
        )
    if isinstance(model, EventsModel) and table.mode == "append":
        check_events_named_alike(table, with_event_column_known(con, model, entry))
    if table.mode == "append" and not read_alike(entry.keyed_by, model.moments_read_by):
        raise ConfigError(
            f"table `{table.name}`: its times are read differently now (the time column, "
            f"its type, `timezone` or `time_unit` changed since the last run: "
            f"`{entry.keyed_by}` then, `{model.moments_read_by}` now), which moves every "
            "row; an append run would keep rows read again at their new time beside the "
            f"others at their old one. Nothing was applied: {read_anew_advice(model)}; "
            "or undo the change",
            key="start_time" if isinstance(model, HistoryModel) else "time_column",
            table=table.name,
        )


def with_event_column_known(
    con: duckdb.DuckDBPyConnection, model: EventsModel, entry: CatalogEntry
) -> CatalogEntry:
    """The entry with its event column, where a store from before kept none: when the
    event column of now is among the stored properties, it was not the event column
    then (which one was, is unknown: `?`)."""
    if entry.event_column is not None:
        return entry
    stored = column_types(con, INTERNAL_SCHEMA, f"events__{model.table.name}")
    properties = {fold_name(name) for name in stored} - {EVENT, DISTINCT_ID, TIME}
    if fold_name(model.table.event_column) in properties:
        return replace(entry, event_column="?")
    return entry


def check_events_named_alike(table: TableConfig, entry: CatalogEntry) -> None:
    """Refuse an append run of events whose user or name is read from another column now.

    Every event read again would have another key (without an insert id, an event is
    known by its name and user), and be kept beside its old copy; with one, it would keep
    the column it was named by before as a property the source no longer gives it.
    """
    changed = [
        (key, before, now)
        for key, before, now in (
            ("id_column", entry.id_column, table.id_column),
            ("event_column", entry.event_column, table.event_column),
        )
        if before is not None and fold_name(before) != fold_name(now)
    ]
    if not changed:
        return
    key, before, now = changed[0]
    then = f"`{before}`" if before != "?" else f"another column (`{now}` was a property)"
    raise ConfigError(
        f"table `{table.name}`: its events are stored by `{key}` = {then}, and it is "
        f"`{now}` now; an append run would keep every event read again beside its stored "
        'copy. Nothing was applied: sync once with mode = "full" (without `cursor` and '
        "`lookback`) to store every event anew, then go back to append; or undo the change",
        key=key,
        table=table.name,
    )


def read_anew_advice(model: HistoryModel | EventsModel) -> str:
    if isinstance(model, EventsModel):
        return (
            'sync once with mode = "full" (without `cursor` and `lookback`) to store every '
            "event at its new time, then go back to append"
        )
    return (
        'sync once with mode = "mirror" (or "full", without `cursor` and `lookback`) to '
        "store every row at its new start, then go back to append"
    )


def read_alike(stored: str | None, current: str) -> bool:
    """Whether times are read as the stored rows' were (`time_reading`): the same column,
    kind of values and settings, or only another name of the same zone. A store from
    before the settings were kept has none, and is taken as read alike; one from before
    their type was kept, as of the same type. A column spelled in another case is the
    same column, as the store's columns are."""
    if stored is None or stored == current:
        return True
    column_before, zone_before, unit_before, kind_before = reading_parts(stored)
    column_now, zone_now, unit_now, kind_now = reading_parts(current)
    return (
        (fold_name(column_before), unit_before) == (fold_name(column_now), unit_now)
        and same_kind(kind_before, kind_now)
        and zone_before.startswith(ZONE_SETTING)
        and zone_now.startswith(ZONE_SETTING)
        and same_zone(zone_before.removeprefix(ZONE_SETTING), zone_now.removeprefix(ZONE_SETTING))
    )


def same_kind(before: str | None, now: str | None) -> bool:
    """Whether a time column's values name the same instants across a change of type:
    text (a CSV column sniffed as text one run, as times the next) is read as the times
    it spells, so it goes with any kind; a time cut to a date, or naive times turned
    zoned (converted in some zone by whoever changed them), do not."""
    return before is None or now is None or before == now or "text" in (before, now)


def reading_parts(reading: str) -> tuple[str, str, str, str | None]:
    """`column=...; timezone=...; time_unit=...[; type=...]` as its parts (column, zone,
    unit, type or None); only the column name may hold a "; "."""
    head, _, last = reading.rpartition("; ")
    kind = None
    if last.startswith(TYPE_SETTING):
        reading, kind = head, last.removeprefix(TYPE_SETTING)
    column, zone, unit = reading.rsplit("; ", 2)
    return column, zone, unit, kind


TYPE_SETTING = "type="
ZONE_SETTING = "timezone="


def respell_id_column(
    con: duckdb.DuckDBPyConnection, model: HistoryModel, stored_types: dict[str, str]
) -> dict[str, str]:
    """The stored types, the id column renamed first if the source spells it anew."""
    name = model.table.id_column
    known = spelled_as_in(list(stored_types), name)
    if known == name:
        return stored_types
    respell_column(con, model.table.name, model.stored, known, name)
    return column_types(con, INTERNAL_SCHEMA, f"intervals__{model.table.name}")


def respell_column(
    con: duckdb.DuckDBPyConnection, table: str, stored: str, known: str, name: str
) -> None:
    """Rename a stored column the source spells anew (names compare without case)."""
    log.info("table %s: column `%s` is spelled `%s` now", table, known, name)
    con.execute(
        f"ALTER TABLE {stored} RENAME COLUMN {quote_identifier(known)} TO {quote_identifier(name)}"
    )


def reconcile_ids(
    con: duckdb.DuckDBPyConnection, model: HistoryModel, stored_type: str, staged_type: str
) -> None:
    """Keep stored and arriving ids comparable when the source's id type changes.

    Integer ids are stored as integers. A wider integer type is widened to; any other
    change (integers to text, text to integers) makes the ids text on both sides, which
    loses nothing: an integer id's text is what the history relation always showed.
    """
    if holds(stored_type, staged_type):
        return
    name = model.table.name
    column = quote_identifier(model.table.id_column)
    if holds(staged_type, stored_type):
        log.warning("table %s: ids widen from %s to %s", name, stored_type, staged_type)
        con.execute(f"ALTER TABLE {model.stored} ALTER COLUMN {column} TYPE {staged_type}")
        return
    if model.table.mode == "append" and stored_type in INTEGER_WIDTHS:
        check_ids_keep_their_text(con, model)
    if stored_type != "VARCHAR":
        log.warning(
            "table %s: ids change from %s to %s; ids are kept as text from now on",
            name,
            stored_type,
            staged_type,
        )
        con.execute(f"ALTER TABLE {model.stored} ALTER COLUMN {column} TYPE VARCHAR")
    if staged_type != "VARCHAR":
        con.execute(f"ALTER TABLE {STAGED} ALTER COLUMN {ENTITY} TYPE VARCHAR")


# A number's text as a double or a decimal writes it: `7.0`, `1e+16`, `1.5e+16`.
INTEGER_TEXT = quote_string(r"[+-]?[0-9]+")
FRACTION = quote_string(r"(?i)[+-]?[0-9]+(\.[0-9]+)?e[+-]?[0-9]+|[+-]?[0-9]+\.[0-9]+")


def check_ids_keep_their_text(con: duckdb.DuckDBPyConnection, model: HistoryModel) -> None:
    """Integer ids that now arrive as fractions (`1.0`, from a DOUBLE or DECIMAL column)
    are other ids (rule 7: ids are their text): an append run, which never deletes, would
    keep every entity twice. Text ids spelled as the integers were (`1`) are the same."""
    example = first_fraction(con, STAGED, ENTITY)
    if example is None:
        return
    table = model.table
    raise ConfigError(
        f"table `{table.name}`: its ids were integers and now arrive written with a "
        f"fraction (such as `{example}`), which are other ids, so every entity would be "
        "kept twice. Nothing was applied: cast the id column to an integer in the source, "
        'or sync once with mode = "mirror" (or "full", without `cursor` and `lookback`) '
        "to store the table by its new ids",
        key="id_column",
        table=table.name,
    )


FRACTIONAL_TYPES = ("FLOAT", "DOUBLE", "DECIMAL")
DECIMAL_SCALE = re.compile(r"DECIMAL\(\d+,\s*(\d+)\)")


def check_event_ids_keep_their_text(con: duckdb.DuckDBPyConnection, model: EventsModel) -> None:
    """Refuse an append run whose event ids (user, group keys, insert id) now arrive from
    a floating-point or decimal column written with a fraction (`7.0`), where the stored
    events of the table hold that column without one: they are other ids (rule 7), so an
    event read again would be kept twice, and its group would join no history."""
    table = model.table
    arriving = column_types(con, "main", STAGED, temporary=True)
    stored_names = {table.id_column: DISTINCT_ID} | {name: name for name in model.id_properties}
    for name, stored_name in stored_names.items():
        if not arriving.get(name, "").startswith(FRACTIONAL_TYPES):
            continue
        example = first_fraction(con, STAGED, name, f"{REASON} IS NULL")
        stored = quote_identifier(stored_name)
        if example is None or not count(
            con, f"SELECT count(*) FROM (FROM {model.stored} WHERE {stored} IS NOT NULL LIMIT 1)"
        ):
            continue
        check_decimal_scale_kept(con, model, name, arriving[name], stored_name)
        if holds_integer(con, model.stored, stored_name) and not holds_fraction(
            con, model.stored, stored_name
        ):
            raise ids_written_anew(
                table,
                name,
                f"held integer ids, and now arrives written with a fraction (such as `{example}`)",
            )
        check_values_keep_their_text(con, model, name, arriving[name], stored_name)


def check_decimal_scale_kept(
    con: duckdb.DuckDBPyConnection,
    model: EventsModel,
    name: str,
    arriving_type: str,
    stored_name: str,
) -> None:
    """Refuse ids that now arrive as a DECIMAL of another scale than the stored ids were
    written with: `1.50` and `1.500` are other ids (rule 7)."""
    scale = DECIMAL_SCALE.fullmatch(arriving_type)
    if scale is None or int(scale.group(1)) == 0:
        return
    digits = int(scale.group(1))
    stored = quote_identifier(stored_name)
    other = con.execute(
        f"SELECT {stored} FROM {model.stored} WHERE {fraction(stored)} "
        f"AND length(split_part({stored}, '.', 2)) <> ? LIMIT 1",
        [digits],
    ).fetchall()
    if other:
        raise ids_written_anew(
            model.table,
            name,
            f"held ids such as `{other[0][0]}`, and now arrives as "
            f"{arriving_type}, written with {digits} digits after the point",
        )


def check_values_keep_their_text(
    con: duckdb.DuckDBPyConnection,
    model: EventsModel,
    name: str,
    arriving_type: str,
    stored_name: str,
) -> None:
    """Refuse ids that arrive spelled otherwise than a stored id of the same value: the
    DECIMAL 1.50 read as a DOUBLE is `1.5`, the FLOAT 0.1 widened to a DOUBLE
    `0.10000000149011612`, the DOUBLE 0.123456789 narrowed to a FLOAT `0.12345679`. They
    are other ids (rule 7), so every event read again would be kept twice. An arriving id
    whose own text is stored is that id read again; 0 and -0 are two ids."""
    arriving = f"b.{quote_identifier(name)}"
    stored = f"s.{quote_identifier(stored_name)}"
    same_value = [f"TRY_CAST({stored} AS {arriving_type}) = {arriving}"]
    if arriving_type == "DOUBLE":
        # A FLOAT widened: the value is a FLOAT's, and the stored text that FLOAT's.
        single = f"TRY_CAST({arriving} AS FLOAT)"
        same_value.append(
            f"TRY_CAST({stored} AS FLOAT) = {single} AND CAST({single} AS DOUBLE) = {arriving}"
        )
    for condition in same_value:
        found = spelled_otherwise(con, model, arriving, stored_name, condition)
        if found:
            raise ids_written_anew(
                model.table,
                name,
                f"held ids such as `{found[0]}`, and now arrives as {arriving_type}, written "
                f"`{found[1]}`",
            )


def spelled_otherwise(
    con: duckdb.DuckDBPyConnection, model: EventsModel, arriving: str, stored_name: str, same: str
) -> tuple[str, str] | None:
    """A stored id and an arriving one of the same value (`same`, joining s and b) whose
    texts differ, the arriving one's text stored nowhere; None if there is none."""
    own = f"CAST({arriving} AS VARCHAR)"
    column = quote_identifier(stored_name)
    stored = f"s.{column}"
    rows = con.execute(
        f"SELECT {stored}, {own} FROM {STAGED} AS b JOIN {model.stored} AS s ON {same} "
        f"WHERE b.{REASON} IS NULL AND {own} <> {stored} "
        f"AND ({arriving} <> 0 OR starts_with({own}, '-') = starts_with({stored}, '-')) "
        f"AND NOT EXISTS (SELECT 1 FROM {model.stored} AS o WHERE o.{column} = {own}) LIMIT 1"
    ).fetchall()
    return rows[0] if rows else None


def ids_written_anew(table: TableConfig, name: str, change: str) -> ConfigError:
    """The refusal of ids whose text a new type changes (`change` says how)."""
    return ConfigError(
        f"table `{table.name}`: column `{name}` {change}: other ids, so every event read "
        "again would be kept twice. Nothing was applied: cast the column in the source as "
        'it was, or sync once with mode = "full" (without `cursor` and `lookback`) to store '
        "the events by their new ids",
        key="id_column" if name == table.id_column else None,
        table=table.name,
    )


def first_fraction(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, where: str = "true"
) -> str | None:
    """The least value of the column whose text is written with a fraction, if any."""
    text = f"CAST({quote_identifier(column)} AS VARCHAR)"
    rows = con.execute(f"SELECT min({text}) FROM {relation} WHERE {where} AND {fraction(text)}")
    return rows.fetchall()[0][0]


def holds_integer(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> bool:
    """Whether any value of the column is written as an integer."""
    return holds_written(con, relation, column, INTEGER_TEXT)


def holds_fraction(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> bool:
    """Whether any value of the column is written with a fraction."""
    return holds_written(con, relation, column, FRACTION)


def holds_written(con: duckdb.DuckDBPyConnection, relation: str, column: str, pattern: str) -> bool:
    """Whether any value of the column has text matching `pattern` (the scan stops at one)."""
    text = f"CAST({quote_identifier(column)} AS VARCHAR)"
    found = con.execute(
        f"SELECT 1 FROM {relation} WHERE regexp_full_match({text}, {pattern}) LIMIT 1"
    )
    return bool(found.fetchall())


def fraction(text: str) -> str:
    return f"regexp_full_match({text}, {FRACTION})"


def meet_source_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    stored: str,
    stored_types: dict[str, str],
    arriving_types: dict[str, str],
) -> None:
    """Add the arriving columns the stored table lacks, and widen the ones that grew.

    Names are compared without case, as DuckDB compares them: a column spelled anew is
    renamed. A type change that would not hold the stored values stops the run, before
    anything is applied; a stored column that holds no value at all takes any type.
    """
    spelled = {fold_name(name): name for name in stored_types}
    for name, new in arriving_types.items():
        known = spelled.get(fold_name(name))
        if known is None:
            log.warning("table %s: new source column `%s` becomes a property", table, name)
            con.execute(f"ALTER TABLE {stored} ADD COLUMN {quote_identifier(name)} {new}")
            continue
        if known != name:
            respell_column(con, table, stored, known, name)
        old = stored_types[known]
        if holds(old, new) or holds_arriving_numbers(con, name, old, new):
            continue
        if holds_no_value(con, STAGED, name):
            # A column that holds no value this run tells nothing of its type (a CSV
            # column left empty is sniffed as text): its NULLs take the stored type, here
            # already, so that no comparison with the stored rows casts them the other way.
            column = quote_identifier(name)
            con.execute(f"ALTER TABLE {STAGED} ALTER COLUMN {column} TYPE {old}")
            continue
        if (
            holds(new, old)
            or holds_no_value(con, stored, name)
            or holds_stored_numbers(con, stored, name, old, new)
            or holds_stored_json(con, stored, name, old, new)
        ):
            log.warning("table %s: column `%s` changes from %s to %s", table, name, old, new)
            con.execute(f"ALTER TABLE {stored} ALTER COLUMN {quote_identifier(name)} TYPE {new}")
        else:
            raise ConfigError(
                f"table `{table}`: source column `{name}` changed type from {old} to {new}, "
                f"{not_widened(old, new)}; nothing was applied: cast it in the source, or "
                "sync once in full mode to start the table over",
                table=table,
            )


def not_widened(old: str, new: str) -> str:
    """Why a stored column is not changed to the source's new type."""
    if new == "DOUBLE" and old in INTEGER_WIDTHS:
        return f"and a stored value is not exact as a {new}"
    if old == "DOUBLE" and new in INTEGER_WIDTHS:
        return f"and an arriving value is not exact as the stored {old}"
    return (
        "which is not a change pitsync makes to stored values (it makes an integer wider or "
        "a DOUBLE, an integer a DECIMAL with room for its digits, a DECIMAL wider, and text "
        "JSON when every stored value is JSON)"
    )


def holds_stored_json(
    con: duckdb.DuckDBPyConnection, stored: str, column: str, old: str, new: str
) -> bool:
    """Whether text becomes JSON that is every stored value as written: a DuckDB or
    Parquet source's JSON column was once read as text."""
    if (old, new) != ("VARCHAR", "JSON"):
        return False
    text = quote_identifier(column)
    found = con.execute(f"SELECT 1 FROM {stored} WHERE NOT json_valid({text}) LIMIT 1")
    return not found.fetchall()


def holds_stored_numbers(
    con: duckdb.DuckDBPyConnection, stored: str, column: str, old: str, new: str
) -> bool:
    """Whether 64-bit integers grow into a double that keeps every stored value exactly,
    as it does each integer up to 2^53: CSV and SQLite sources read every integer column
    as BIGINT, so a column that starts holding fractions meets this."""
    if new != "DOUBLE" or old not in INTEGER_WIDTHS:
        return False
    return exact_as_doubles(con, stored, column, old)


def holds_arriving_numbers(con: duckdb.DuckDBPyConnection, column: str, old: str, new: str) -> bool:
    """Whether a stored double keeps every arriving integer exactly: a CSV column whose
    fractions were corrected to whole numbers is sniffed as integers again."""
    if old != "DOUBLE" or new not in INTEGER_WIDTHS:
        return False
    return exact_as_doubles(con, STAGED, column, new)


def exact_as_doubles(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, integer_type: str
) -> bool:
    """Whether every value of an integer column is the same number as a double."""
    cell = quote_identifier(column)
    rows = con.execute(
        f"SELECT count(*) FROM {relation} WHERE {cell} IS NOT NULL AND "
        f"TRY_CAST(TRY_CAST({cell} AS DOUBLE) AS {integer_type}) IS DISTINCT FROM {cell}"
    ).fetchall()
    return rows[0][0] == 0


def holds_no_value(con: duckdb.DuckDBPyConnection, stored: str, column: str) -> bool:
    """Whether every stored value of the column is NULL, which any type holds."""
    rows = con.execute(f"SELECT count({quote_identifier(column)}) FROM {stored}").fetchall()
    return rows[0][0] == 0


def report_dropped(table: str, dropped: list[str]) -> None:
    for name in dropped:
        log.warning(
            "table %s: column `%s` is gone from the source; its stored values stay, and new "
            "rows leave it undefined",
            table,
            name,
        )


def meet_event_columns(
    con: duckdb.DuckDBPyConnection,
    model: EventsModel,
    arriving: dict[str, str],
    stored_types: dict[str, str],
) -> EventsModel:
    """New event columns are added, grown ones widened; a dropped one is left NULL in new
    events and stays a property. Returns the model as stored."""
    name = model.table.name
    meet_source_columns(con, name, model.stored, stored_types, arriving)
    after = column_types(con, INTERNAL_SCHEMA, f"events__{name}")
    dropped = [column for column in after if column not in arriving]
    report_dropped(name, dropped)
    return replace(model, properties=model.properties + dropped)


def meet_event_ids(
    con: duckdb.DuckDBPyConnection,
    model: EventsModel,
    arriving: dict[str, str],
    stored_types: dict[str, str],
) -> bool:
    """Store as text the integer columns that became group keys, or insert ids of text.

    A column named like a configured group key is read as text, so that it joins with
    the group's ids; once a group history names a column that events stored as integers,
    those become their text, which loses nothing. An insert id is an id (rule 7): the
    integer 1 and the text "1" are one event. Returns whether a type was changed.
    """
    changed = False
    for name, new in arriving.items():
        old = stored_types.get(name)
        if new == "VARCHAR" and old in INTEGER_WIDTHS and name in model.id_properties:
            log.warning(
                "table %s: column `%s` holds text now; its stored values are kept as text",
                model.table.name,
                name,
            )
            column = quote_identifier(name)
            con.execute(f"ALTER TABLE {model.stored} ALTER COLUMN {column} TYPE VARCHAR")
            changed = True
    return changed
