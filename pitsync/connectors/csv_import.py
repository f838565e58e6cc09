"""CSV files of profiles: each row one `$set` of its mapped columns, applied in file order.

`pitsync import-csv FILE --id-column N --column N=property ... [--group-key KEY]` reads a
file with no header row. Columns are numbered from 1; only the mapped ones are imported.

- The profile id is the cell of the id column; without one, of the column mapped to
  `$email` (which is still set as well); without either, DuckDB gives every row a new
  uuid, and a warning says how many new profiles that makes.
- With a group key the rows are group profiles of that key, the id their group id.
- A row is one `$set`; its line is its row number in the file (blank rows count; a quoted
  value spanning lines is one row). An empty cell (nothing, or only spaces) sets nothing:
  the property keeps its value; an export pads a cell it leaves empty. An id cell of
  spaces is an id all the same (rule 7: ids are not trimmed). A row with nothing but
  empty cells holds nothing, and is skipped, like a blank line in an engage file.
- A column is imported as numbers when each of its non-empty values is a plain decimal
  (`42`, `-3.5`; not `007`, `+1` or `1e3`), so zip codes keep their zeros; every other
  value is a string, cut to 255 bytes, and names are cut to 255 characters.
- The file's columns are those DuckDB's reader finds: the widest of the rows it samples
  at the start. A shorter row is padded with empty cells, as exports leave trailing empty
  cells out; a longer row, or one whose id cell is empty, is rejected with its line, and
  the other rows still apply.
- An import is no sign of activity, so `$last_seen` stays as it was (as for warehouse
  profile tables).

DuckDB scans the whole file first, before the store is opened: it counts the rows (an
import takes at most MAX_ROWS), finds the columns, and decides which are numeric, which
needs every row. pyarrow's streaming reader then reads the file a block at a time, in
order, so every row keeps its number and memory stays bounded by the block size. The
blocks go through `run_updates`: one transaction for the whole file.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from pitsync.config import Config
from pitsync.connectors.profile_updates import (
    MAX_REJECTIONS_SHOWN,
    Stager,
    UpdateReport,
    check_strict,
    run_updates,
)
from pitsync.connectors.update_files import numbered, refuse_unless_file, register_block
from pitsync.errors import ConfigError, SourceError, UsageError, first_line
from pitsync.modeling.profile_operators import (
    OPERATIONS,
    UPDATES,
    USER_KEY,
    count,
    stage_schema,
)
from pitsync.modeling.profile_records import (
    LAST_SEEN,
    LINES,
    MAX_NAME_CHARACTERS,
    RECORDS,
    REJECTED,
    cut_string_sql,
)
from pitsync.quoting import quote_identifier, quote_string
from pitsync.store import DEFAULT_WAIT_SECONDS, limit_memory

log = logging.getLogger(__name__)

MODE = "import-csv"  # the mode the run is recorded under
MAX_ROWS = 1_000_000
PREVIEW_ROWS = 10
EMAIL = "$email"
# A plain decimal: no sign but minus, no leading zeros, no exponent.
NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?"

# A block of this many bytes of rows is one batch. CSV rows are short, so fewer bytes than
# an engage file's block make as many records; it is also the longest row either reader takes.
BLOCK_BYTES = 8 << 20

CELLS = "__pitsync_csv_cells"  # a block as pyarrow read it
SHORT = "__pitsync_csv_short"  # the block's short rows, padded
LONG = "__pitsync_csv_long"  # the block's rows with too many cells
RAGGED = "__pitsync_csv_ragged"  # the short rows and the long ones, with their lines


@dataclass(frozen=True)
class Column:
    """A mapped column: its number (from 1), its property, and whether it holds numbers."""

    number: int
    name: str
    numeric: bool = False


@dataclass(frozen=True)
class CsvPlan:
    """What reading the file needs, once DuckDB has scanned it."""

    path: Path
    width: int  # the file's columns
    rows: int  # its rows that are not blank
    columns: tuple[Column, ...]
    id_column: int | None  # None: every row gets a generated id
    group_key: str


class Ragged(NamedTuple):
    """A row pyarrow skipped because its cell count is not the file's."""

    line: int
    text: str
    cells: int


def import_csv(
    config: Config,
    path: str | Path,
    *,
    id_column: int | None,
    columns: dict[int, str],
    group_key: str | None = None,
    dry_run: bool = False,
    strict: bool = False,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> UpdateReport:
    """Apply every row of the file as a `$set`, in one transaction; a dry run only checks.

    A dry run reads and stages the whole file apart from the store, so its report counts
    the records and the rejections the import would have, and nothing changes.
    """
    plan = plan_import(path, id_column, columns, group_key)
    if plan.id_column is None and plan.rows:
        warn_generated_ids(plan)
    if dry_run:
        return check_rows(plan, strict, config.memory_limit)
    stage = functools.partial(stage_rows, plan=plan)
    return run_updates(config, MODE, row_batches(plan), strict, wait, stage=stage)


def preview_csv(
    path: str | Path,
    *,
    id_column: int | None,
    columns: dict[int, str],
    group_key: str | None = None,
    limit: int = PREVIEW_ROWS,
) -> list[tuple[str | None, dict[str, Any]]]:
    """The first records the import would apply, as (id, {property: value}).

    The id is None where the import would generate one. Values are what would be stored:
    numbers, or strings cut to their limit; empty cells are left out.
    """
    plan = plan_import(path, id_column, columns, group_key)
    con = duckdb.connect()
    try:
        return first_records(con, plan, limit)
    finally:
        con.close()


def warn_generated_ids(plan: CsvPlan) -> None:
    log.warning(
        "%s: no --id-column and no column mapped to %s, so each of its %d rows gets a "
        "generated id and becomes a new profile; give --id-column N to update existing ones",
        plan.path,
        EMAIL,
        plan.rows,
    )


# The plan: the mapping checked, and the file scanned by DuckDB.


def plan_import(
    path: str | Path, id_column: int | None, columns: dict[int, str], group_key: str | None
) -> CsvPlan:
    """Check the mapping and the file; refuse before anything is read into the store."""
    mapped = mapped_columns(columns)
    check_id_column(id_column)
    check_group_key(group_key)
    source = existing_file(path)
    width, rows, numeric = scan_file(source, mapped)
    if rows:  # a file without rows has no columns to check against
        check_in_range(source, width, mapped, id_column)
    check_row_limit(source, rows)
    typed = tuple(Column(c.number, c.name, c.number in numeric) for c in mapped)
    ids = id_column if id_column is not None else email_column(mapped)
    return CsvPlan(source, width, rows, typed, ids, group_key or USER_KEY)


def mapped_columns(columns: dict[int, str]) -> tuple[Column, ...]:
    """The mapping in column order, names cut to their limit; each property mapped once."""
    if not columns:
        raise ConfigError(
            "nothing to import: map at least one column with --column N=property",
            key="--column",
        )
    mapped = tuple(Column(n, name[:MAX_NAME_CHARACTERS]) for n, name in sorted(columns.items()))
    seen: dict[str, int] = {}
    for column in mapped:
        check_column_number(column.number, "--column")
        if not column.name.strip():
            raise ConfigError(
                f"column {column.number} is mapped to an empty name; give --column "
                f"{column.number}=property",
                key="--column",
            )
        if column.name == LAST_SEEN:
            raise ConfigError(
                f"column {column.number} is mapped to {LAST_SEEN}, which pitsync keeps as the "
                "time of the last update (an import leaves it alone); map it to another name",
                key="--column",
            )
        if column.name in seen:
            raise UsageError(
                f"columns {seen[column.name]} and {column.number} are both mapped to "
                f"{column.name}; map each property to one column",
                key="--column",
            )
        seen[column.name] = column.number
    return mapped


def check_column_number(number: int, option: str) -> None:
    if number < 1:
        raise ConfigError(
            f"{option} {number}: there is no such column; columns are numbered from 1",
            key=option,
        )


def check_id_column(id_column: int | None) -> None:
    if id_column is not None:
        check_column_number(id_column, "--id-column")


def check_group_key(group_key: str | None) -> None:
    if group_key is not None and not group_key.strip():
        raise ConfigError(
            "the group key is empty; give --group-key KEY, or leave it out for user profiles",
            key="--group-key",
        )


def existing_file(path: str | Path) -> Path:
    source = Path(path)
    refuse_unless_file(source, "give a CSV file")
    return source


def email_column(mapped: tuple[Column, ...]) -> int | None:
    """Without an id column, the column mapped to `$email` gives the id."""
    return next((c.number for c in mapped if c.name == EMAIL), None)


def read_csv_sql(path: Path) -> str:
    """DuckDB's reader: every cell text, short rows padded (which needs the serial reader
    when a quoted value spans lines), and the dialect fixed, so no guess can change it.
    """
    return (
        f"read_csv({quote_string(str(path))}, header = false, all_varchar = true, "
        "null_padding = true, strict_mode = false, parallel = false, delim = ',', "
        f"quote = '\"', escape = '\"', max_line_size = {BLOCK_BYTES})"
    )


def scan_file(path: Path, mapped: tuple[Column, ...]) -> tuple[int, int, set[int]]:
    """The file's columns, its rows, and its numeric columns, from an in-memory DuckDB."""
    con = duckdb.connect()
    try:
        names = duckdb_columns(con, path)
        return (len(names), *scan(con, path, names, mapped))
    finally:
        con.close()


def duckdb_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """The names DuckDB gives the file's columns, in order."""
    try:
        cursor = con.execute(f"SELECT * FROM {read_csv_sql(path)} LIMIT 0")
    except duckdb.Error as error:
        raise unreadable(path, error) from error
    return [entry[0] for entry in cursor.description]


def scan(
    con: duckdb.DuckDBPyConnection, path: Path, names: list[str], mapped: tuple[Column, ...]
) -> tuple[int, set[int]]:
    """The rows that are not blank, and the mapped columns whose values are all numbers."""
    present = [c.number for c in mapped if c.number <= len(names)]
    numeric = [numeric_sql(quote_identifier(names[n - 1])) for n in present]
    try:
        row = con.execute(
            f"SELECT {', '.join([not_blank_count_sql(), *numeric])} FROM {read_csv_sql(path)}"
        ).fetchone()
    except duckdb.Error as error:
        raise unreadable(path, error) from error
    assert row is not None  # an aggregate gives one row
    return int(row[0]), {n for n, is_numeric in zip(present, row[1:], strict=True) if is_numeric}


def not_blank_count_sql() -> str:
    return "count(*) FILTER (WHERE trim(concat(*COLUMNS(*))) <> '')"


def numeric_sql(cell: str) -> str:
    """True when the column has values and every one is a plain decimal.

    Said with plain aggregates (every cell blank or a number, and some cell a number):
    a filter or a CASE in each of thousands of columns' aggregates makes DuckDB's
    planning take seconds.
    """
    blank_or_number = quote_string(f" *|{NUMBER}")
    return (
        f"(coalesce(bool_and(regexp_full_match({cell}, {blank_or_number})), false) "
        f"AND coalesce(bool_or(regexp_full_match({cell}, {quote_string(NUMBER)})), false))"
    )


def unreadable(path: Path, error: Exception) -> SourceError:
    return SourceError(
        f"cannot read {path} as CSV ({csv_error(error)}); give a comma-separated UTF-8 file",
        source=str(path),
    )


def csv_error(error: Exception) -> str:
    """DuckDB says where on its first line and why further down, after the line itself."""
    lines = [line for line in str(error).splitlines()[1:] if line.strip()]
    why = next((line for line in lines if not line.startswith("Original Line")), None)
    return f"{first_line(error)}: {why}" if why else first_line(error)


def check_in_range(
    path: Path, width: int, mapped: tuple[Column, ...], id_column: int | None
) -> None:
    """Every column named must be one of the file's."""
    named = [("--column", c.number) for c in mapped]
    named += [("--id-column", id_column)] if id_column is not None else []
    for option, number in named:
        if number > width:
            # One column where more were named is often a file split by `;` or tabs.
            separators = "; the file must be comma-separated" if width == 1 else ""
            raise ConfigError(
                f"{option} {number}: {path} has {width} column{'' if width == 1 else 's'} "
                f"(numbered from 1, no header row); name a column from 1 to {width}"
                f"{separators}",
                key=option,
            )


def check_row_limit(path: Path, rows: int) -> None:
    if rows > MAX_ROWS:
        raise SourceError(
            f"{path} has {rows:,} rows, more than the {MAX_ROWS:,} one import takes; nothing "
            f"was imported: split it into files of at most {MAX_ROWS:,} rows",
            source=str(path),
        )


# Reading: pyarrow streams the file in blocks; each block becomes LINES.


def row_batches(plan: CsvPlan) -> Iterator[Stager]:
    """One stager per block, every row numbered as it is in the file.

    pyarrow skips the rows whose cell count is not the file's and hands them to a handler,
    maybe while reading ahead, so each block takes the skipped rows that fall among its
    own rows, and the rest wait for the next block.
    """
    if not plan.rows:
        return
    ragged: list[Ragged] = []
    first = 1
    for block in read_blocks(plan, ragged):
        taken = take_ragged(ragged, first, block.num_rows)
        yield functools.partial(register_rows, plan=plan, block=block, first=first, ragged=taken)
        first += block.num_rows + len(taken)
    if ragged:
        rest = sorted(ragged)
        yield functools.partial(
            register_rows, plan=plan, block=empty_block(plan), first=first, ragged=rest
        )


def cell_names(width: int) -> list[str]:
    return [f"c{number}" for number in range(1, width + 1)]


def read_blocks(plan: CsvPlan, ragged: list[Ragged]) -> Iterator[pa.RecordBatch]:
    """The file's rows, a block at a time: every cell as text, blank rows kept."""

    def skip_ragged(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # unnumbered, it could not be put back in its place
            return "error"
        ragged.append(Ragged(row.number, row.text, row.actual_columns))
        return "skip"

    try:
        yield from pacsv.open_csv(plan.path, **csv_options(plan, skip_ragged))
    except pa.ArrowException as error:
        raise unreadable(plan.path, error) from error


def csv_options(plan: CsvPlan, handler: Callable[[pacsv.InvalidRow], str] | None) -> dict[str, Any]:
    """How pyarrow reads the rows: the dialect DuckDB scanned with, every cell as text."""
    names = cell_names(plan.width)
    return {
        # One thread, so pyarrow numbers the rows it skips.
        "read_options": pacsv.ReadOptions(
            column_names=names, block_size=BLOCK_BYTES, use_threads=False
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=",",
            quote_char='"',
            double_quote=True,
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=handler,
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }


def take_ragged(pending: list[Ragged], first: int, rows: int) -> list[Ragged]:
    """The skipped rows among a block's `rows` rows numbered from `first`, and those that
    follow them line after line.

    A skipped row is among them when fewer than `rows` of the block's rows come before
    it: its line, less `first`, less the skipped rows before it. One right after all of
    them (all `rows` before it, and no line between) comes before any row still to be
    read, so it is taken too: in a file of short rows, whose blocks hold none of the
    file's width, the skipped rows are taken block by block, not held to the end.
    """
    pending.sort()
    taken = 0
    for row in pending:
        if row.line - first - taken > rows:
            break
        taken += 1
    block = pending[:taken]
    del pending[:taken]
    return block


def empty_block(plan: CsvPlan) -> pa.RecordBatch:
    names = cell_names(plan.width)
    return pa.record_batch([pa.array([], pa.string()) for _ in names], names=names)


def register_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    plan: CsvPlan,
    block: pa.RecordBatch,
    first: int,
    ragged: list[Ragged],
) -> None:
    """LINES: the block's rows and its skipped ones, each with its line, cells and text."""
    short = [row for row in ragged if row.cells < plan.width]
    long = [row for row in ragged if row.cells > plan.width]
    register_block(con, CELLS, block.append_column("position", numbered(block, 1)))
    register_block(con, SHORT, padded_rows(plan, short))
    register_block(con, LONG, long_rows(long))
    total = block.num_rows + len(ragged)
    # On a failure (Ctrl-C too) the import rolls back and closes the connection, and its
    # registrations go with it: an aborted transaction refuses even to unregister.
    con.execute(f"CREATE OR REPLACE TEMP TABLE {RAGGED} AS {ragged_sql(plan)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {LINES} AS {lines_sql(plan, first, total)}")
    for name in (CELLS, SHORT, LONG):
        con.unregister(name)


def padded_rows(plan: CsvPlan, short: list[Ragged]) -> pa.Table:
    """Short rows with empty cells added, parsed by pyarrow in one go, with their lines.

    Each row is one CSV record as pyarrow read it, so adding delimiters adds empty cells.
    """
    if not short:
        empty = empty_block(plan).append_column("line", pa.array([], pa.int64()))
        return pa.Table.from_batches([empty.append_column("raw", pa.array([], pa.string()))])
    text = "\n".join(row.text + "," * (plan.width - row.cells) for row in short)
    table = pacsv.read_csv(pa.py_buffer(text.encode("utf-8")), **csv_options(plan, None))
    lines = pa.array([row.line for row in short], pa.int64())
    texts = pa.array([row.text for row in short], pa.string())
    return table.append_column("line", lines).append_column("raw", texts)


def long_rows(long: list[Ragged]) -> pa.Table:
    return pa.table(
        {
            "line": pa.array([row.line for row in long], pa.int64()),
            "raw": pa.array([row.text for row in long], pa.string()),
            "cells": pa.array([row.cells for row in long], pa.int64()),
        }
    )


def ragged_sql(plan: CsvPlan) -> str:
    """The short rows, padded, and the long ones, whose cells are not read (NULL)."""
    cells = ", ".join(cell_names(plan.width))
    return (
        f"SELECT line, raw, NULL::BIGINT AS cells, {cells} FROM {SHORT} "
        f"UNION ALL BY NAME SELECT line, raw, cells FROM {LONG}"
    )


def lines_sql(plan: CsvPlan, first: int, total: int) -> str:
    """Every row of the block with its line: the block's rows take, in order, the lines
    from `first` on that no skipped row holds.
    """
    cells = ", ".join(cell_names(plan.width))
    return f"""
        WITH numbers AS (
            SELECT row_number() OVER (ORDER BY line) AS position, line
            FROM range({first}, {first + total}) t(line)
            ANTI JOIN {RAGGED} USING (line)
        ), numbered_rows AS (
            SELECT n.line, NULL::VARCHAR AS raw, NULL::BIGINT AS cells, {cells}
            FROM {CELLS} JOIN numbers n USING (position)
            UNION ALL BY NAME FROM {RAGGED}
        )
        SELECT line, cells, {cells}, {text_sql(plan)} AS text FROM numbered_rows
    """


def text_sql(plan: CsvPlan) -> str:
    """The row as CSV text (what quarantine keeps); '' for a row of empty cells."""
    cells = ", ".join(cell_names(plan.width))
    special = quote_string(r'[",\r\n]')
    quoted = (
        f"CASE WHEN regexp_matches(c, {special}) THEN '\"' || replace(c, '\"', '\"\"') || '\"' "
        "ELSE c END"
    )
    rendered = f"array_to_string(list_transform([{cells}], lambda c: {quoted}), ',')"
    return (
        f"CASE WHEN cells IS NULL AND trim(concat({cells})) = '' THEN '' "
        f"ELSE coalesce(raw, {rendered}) END"
    )


# Staging: LINES into RECORDS, REJECTED, and the fold's UPDATES and OPERATIONS.


def stage_rows(con: duckdb.DuckDBPyConnection, *, plan: CsvPlan) -> None:
    """Each row that is not blank is a record; the good ones are `$set`s of their cells."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {RECORDS} AS {records_sql(plan)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REJECTED} AS {rejected_sql(plan)}")
    con.execute(f"INSERT INTO {UPDATES} {updates_sql(plan)}")
    con.execute(f"INSERT INTO {OPERATIONS} {operations_sql(plan)}")


def records_sql(plan: CsvPlan) -> str:
    """Stored, so a generated id is drawn once and both staged tables see the same one."""
    profile_id = "CAST(gen_random_uuid() AS VARCHAR)"
    if plan.id_column is not None:
        profile_id = f"c{plan.id_column}"
    return f"SELECT *, {profile_id} AS profile_id FROM {LINES} WHERE trim(text) <> ''"


def rejected_sql(plan: CsvPlan) -> str:
    """A row with more cells than the file's columns, or with an empty id cell."""
    return f"""
        SELECT line, reason, text FROM (
            SELECT line, text, CASE
                WHEN cells IS NOT NULL THEN 'the row has ' || cells || ' cells, more than ' ||
                    'the file''s {plan.width} columns: quote a value that holds a comma'
                WHEN profile_id = '' THEN {quote_string(empty_id_reason(plan))}
                END AS reason
            FROM {RECORDS}
        ) WHERE reason IS NOT NULL
    """


def empty_id_reason(plan: CsvPlan) -> str:
    names = {c.number: c.name for c in plan.columns}
    named = f" ({EMAIL})" if names.get(plan.id_column or 0) == EMAIL else ""
    return f"the id column {plan.id_column}{named} is empty"


def updates_sql(plan: CsvPlan) -> str:
    """A `$set` a good record; `ignore_time`, since an import is no sign of activity."""
    return f"""
        SELECT line, {quote_string(plan.group_key)}, profile_id, '$set', now(), true
        FROM {RECORDS} ANTI JOIN {REJECTED} USING (line)
    """


def operations_sql(plan: CsvPlan) -> str:
    """One operation a non-empty mapped cell, all columns unnested in one pass.

    The cells are unnested first and made values by one expression: one for each of
    thousands of columns would take DuckDB seconds to plan.
    """
    entries = ", ".join(
        f"{{'position': {c.number}, 'name': {quote_string(c.name)}, 'cell': c{c.number}, "
        f"'numeric': {'true' if c.numeric else 'false'}}}"
        for c in plan.columns
    )
    return f"""
        SELECT line, {quote_string(plan.group_key)}, profile_id, '$set', position, name, value
        FROM (
            SELECT line, profile_id, p.position AS position, p.name AS name,
                {value_sql("p.cell", "p.numeric")} AS value
            FROM (
                SELECT line, profile_id, unnest([{entries}]) AS p
                FROM {RECORDS} ANTI JOIN {REJECTED} USING (line)
            )
        ) WHERE value IS NOT NULL
    """


def value_sql(cell: str, numeric: str) -> str:
    """The cell as JSON, NULL when empty: a number in a numeric column, else a string.

    A numeric column checks each cell again, so a cell the scan did not see as pyarrow
    does is still stored as the string it is.
    """
    text = cut_string_sql(f"to_json({cell})")
    number = f"{numeric} AND regexp_full_match({cell}, {quote_string(NUMBER)})"
    value = f"CASE WHEN {number} THEN json({cell}) ELSE {text} END"
    return f"CASE WHEN trim({cell}) <> '' THEN CAST({value} AS JSON) END"


# Without the store: the dry run's check and the preview.


def check_rows(plan: CsvPlan, strict: bool, memory_limit: str | None) -> UpdateReport:
    """Stage every block in a connection of its own: the records and rejections, no fold."""
    report = UpdateReport(dry_run=True)
    con = duckdb.connect()
    try:
        limit_memory(con, memory_limit)
        for stager in row_batches(plan):
            stage_block(con, plan, stager)
            report.records += count(con, RECORDS)
            note_rejected(con, report)
    finally:
        con.close()
    check_strict(report, strict)
    return report


def stage_block(con: duckdb.DuckDBPyConnection, plan: CsvPlan, stager: Stager) -> None:
    stager(con)
    stage_schema(con)
    stage_rows(con, plan=plan)


def note_rejected(con: duckdb.DuckDBPyConnection, report: UpdateReport) -> None:
    """Count the block's rejections and keep the first ones, as the import reports them."""
    report.rejected += count(con, REJECTED)
    room = MAX_REJECTIONS_SHOWN - len(report.rejections)
    if room <= 0:
        return
    shown = con.execute(
        f"SELECT 'line ' || line || ': ' || reason FROM {REJECTED} ORDER BY line LIMIT ?", [room]
    ).fetchall()
    report.rejections.extend(message for (message,) in shown)


def first_records(
    con: duckdb.DuckDBPyConnection, plan: CsvPlan, limit: int
) -> list[tuple[str | None, dict[str, Any]]]:
    """Blocks are staged until `limit` good records are found."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for stager in row_batches(plan):
        if len(found) >= limit:
            break
        stage_block(con, plan, stager)
        found += staged_records(con, plan, limit - len(found))
    return found


def staged_records(
    con: duckdb.DuckDBPyConnection, plan: CsvPlan, limit: int
) -> list[tuple[str | None, dict[str, Any]]]:
    """The first staged `$set`s with their properties, in column order."""
    rows = con.execute(
        f"""
        SELECT u.line, u.profile_id,
            list(o.name ORDER BY o.position) FILTER (WHERE o.name IS NOT NULL),
            list(CAST(o.value AS VARCHAR) ORDER BY o.position) FILTER (WHERE o.name IS NOT NULL)
        FROM {UPDATES} u LEFT JOIN {OPERATIONS} o USING (line)
        GROUP BY ALL ORDER BY u.line LIMIT ?
        """,
        [limit],
    ).fetchall()
    generated = plan.id_column is None
    return [
        (None if generated else profile_id, preview_properties(names, values))
        for _, profile_id, names, values in rows
    ]


def preview_properties(names: list[str] | None, values: list[str] | None) -> dict[str, Any]:
    return {name: json.loads(value) for name, value in zip(names or [], values or [], strict=True)}
