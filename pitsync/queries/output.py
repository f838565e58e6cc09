"""Write a query's rows as a terminal table, CSV or JSON, streaming batch by batch.

Instants are written as ISO 8601 text with their offset (`2024-03-01T00:00:00+00:00`),
formatted inside DuckDB so no row passes through Python one value at a time. JSON is an
array of objects; CSV has a header row, and nested values as JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

from pitsync.errors import OutputError, QueryError
from pitsync.interrupts import is_interrupt
from pitsync.modeling.staging import json_object_text_sql
from pitsync.modeling.timestamps import iso_sql
from pitsync.paths import reason
from pitsync.quoting import fold_name, quote_identifier, quote_string

OutputFormat = Literal["table", "csv", "json"]
# Control characters other than tab and newline: an escape sequence in a value would
# recolour the terminal or move its cursor; a direction override would show the text
# after it reversed.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
BATCH_ROWS = 10_000
TABLE_ROW_LIMIT = 1_000  # a terminal table beyond this is unreadable; the rest is counted
# A terminal cell beyond this is unreadable, and folding it takes the table's layout time
# that grows faster than its length (a 10 MB value took over a minute).
TABLE_CELL_LIMIT = 10_000

NESTED_TYPE_PREFIXES = ("STRUCT", "MAP", "UNION")
PLAIN_TYPES = {
    "BOOLEAN",
    *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"),
    *("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"),
    *("FLOAT", "DOUBLE", "VARCHAR"),
}
# A quoted name inside a type (a struct field's) or a quoted ENUM label, either of which
# may read like a DECIMAL, or a DECIMAL's digits and scale.
QUOTED_NAME_OR_DECIMAL = re.compile(
    r"""("(?:[^"]|"")*"|'(?:[^']|'')*')|DECIMAL\((\d+),\s*(\d+)\)"""
)
NARROW_DECIMAL_DIGITS = 15
WIDE_DECIMAL_DIGITS = 18
# Written as DuckDB's text: Python's dates and times hold neither `infinity`, years
# past 9999 or BC, nor `24:00:00`.
CALENDAR_TYPES = {"DATE", "TIME", "TIME_NS"}


# Scalar time types and the text each is written as; nested ones go through to_json.
INSTANT_TYPES = {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMPTZ_NS"}
NAIVE_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}
NANOSECOND_TYPES = {"TIMESTAMP_NS", "TIMESTAMPTZ_NS"}


def text_projection(relation: duckdb.DuckDBPyRelation, *, nested_as_json: bool) -> str:
    """A SELECT list that turns instants into ISO text (and nested values into JSON).

    Columns are referred to by position (#1, #2, ...), so two columns of one name keep
    their own values.
    """
    parts = []
    for position, (name, duck_type) in enumerate(
        zip(relation.columns, relation.types, strict=True), start=1
    ):
        # Cast with the type as DuckDB spells it: upper case would rename struct fields.
        declared = str(duck_type)
        widened = with_wide_decimals(declared)
        column = f"#{position}" if widened == declared else f"CAST(#{position} AS {widened})"
        parts.append(
            f"{text_sql(column, widened.upper(), nested_as_json)} AS {quote_identifier(name)}"
        )
    return ", ".join(parts) or "*"


def text_sql(column: str, type_name: str, nested_as_json: bool) -> str:
    """One column as it is written out."""
    if type_name in NANOSECOND_TYPES:
        return with_nanoseconds(column, type_name, text_sql(column, type_name[:-3], False))
    if type_name in INSTANT_TYPES:
        return before_year_one_as_duckdb(
            iso_sql(f"CAST({column} AS TIMESTAMPTZ)", "TIMESTAMPTZ"), column
        )
    if type_name in NAIVE_TYPES:
        return before_year_one_as_duckdb(
            iso_sql(f"CAST({column} AS TIMESTAMP)", "TIMESTAMP"), column
        )
    if type_name in CALENDAR_TYPES:
        return f"CAST({column} AS VARCHAR)"
    element = type_name.removesuffix("[]")
    if element != type_name and element in INSTANT_TYPES | NAIVE_TYPES:
        listed = f"list_transform({column}, lambda value: {text_sql('value', element, False)})"
        return f"CAST(to_json({listed}) AS VARCHAR)" if nested_as_json else listed
    if nested_as_json and type_name == "JSON":
        return f"CAST({column} AS VARCHAR)"  # as stored: to_json would round 0.10 to 0.1
    if nested_as_json and is_nested(type_name):
        return f"CAST(to_json({column}) AS VARCHAR)"
    if nested_as_json and type_name.startswith("DECIMAL"):
        # DuckDB writes a DECIMAL of only a fraction, DECIMAL(18,18), without its 0: `.5`.
        return f"regexp_replace(CAST({column} AS VARCHAR), '^(-?)[.]', '\\10.')"
    if nested_as_json and not is_plain(type_name):
        # INTERVAL, TIMETZ, BIT, UUID... as DuckDB writes them
        return f"CAST({column} AS VARCHAR)"
    return column


def with_wide_decimals(type_name: str) -> str:
    """The type with each DECIMAL of 15 digits or fewer, at any depth, as one of 18: DuckDB
    writes a narrow DECIMAL into JSON as a double (`1e-8`, `100.0`), a wider one in full."""

    def widened(found: re.Match[str]) -> str:
        if found.group(1) or int(found.group(2)) > NARROW_DECIMAL_DIGITS:
            return found.group(0)  # a quoted name or label, or a DECIMAL written in full
        return f"DECIMAL({WIDE_DECIMAL_DIGITS},{found.group(3)})"

    return QUOTED_NAME_OR_DECIMAL.sub(widened, type_name)


def with_nanoseconds(column: str, type_name: str, microseconds: str) -> str:
    """A nanosecond time with a fraction finer than microseconds is written with all nine
    digits: cast to microseconds, DuckDB would round it, into the next year at worst."""
    offset = "+00:00" if type_name.startswith("TIMESTAMPTZ") else ""
    nine_digits = quote_string(f"%Y-%m-%dT%H:%M:%S.%n{offset}")
    finer = f"epoch_ns({column}) % 1000 <> 0"
    nanoseconds = before_year_one_as_duckdb(f"strftime({column}, {nine_digits})", column)
    return f"CASE WHEN {finer} THEN {nanoseconds} ELSE {microseconds} END"


def before_year_one_as_duckdb(iso: str, column: str) -> str:
    """ISO 8601 has no year before 1 for strftime to write (it would give `-43-03-15`):
    such a time is written as DuckDB writes it, `0044-03-15 (BC) 10:00:00`."""
    # Compared as a naive time (sessions are in UTC): ICU counts a zoned time's years by era.
    before = f"CAST({column} AS TIMESTAMP) < TIMESTAMP '0001-01-01 00:00:00'"
    return f"CASE WHEN {before} THEN CAST({column} AS VARCHAR) ELSE {iso} END"


def is_plain(type_name: str) -> bool:
    """Types a CSV or table cell shows faithfully as they are. (Not DECIMAL: Arrow and
    Python write a small one in scientific notation, `0E-18`; DuckDB's text is plain.)"""
    return type_name in PLAIN_TYPES


def is_nested(type_name: str) -> bool:
    return type_name.startswith(NESTED_TYPE_PREFIXES) or "[" in type_name or type_name == "JSON"


def formatted(
    relation: duckdb.DuckDBPyRelation, *, nested_as_json: bool
) -> duckdb.DuckDBPyRelation:
    """The relation with every column as it is written out."""
    try:
        return relation.select(text_projection(relation, nested_as_json=nested_as_json))
    except duckdb.Error as error:
        raise QueryError.from_duckdb(error) from error


def batches(relation: duckdb.DuckDBPyRelation) -> Iterator[pa.RecordBatch]:
    """The relation's rows as Arrow batches, DuckDB errors turned into QueryError."""
    try:
        reader = relation.to_arrow_reader(BATCH_ROWS)
        yield from reader
    # An error DuckDB meets while the reader fetches (a cast that fails on a later row)
    # comes through Arrow, which raises it as an OSError carrying DuckDB's message. Only
    # the reader's own failures land here: the consumer's run outside this generator.
    except (duckdb.Error, pa.ArrowException, OSError) as error:
        if is_interrupt(error):
            raise KeyboardInterrupt from None
        raise QueryError.from_duckdb(error) from error


def write_csv(relation: duckdb.DuckDBPyRelation, out: TextIO) -> int:
    """CSV with a header row; returns the number of rows written."""
    rows = 0
    header = True
    for batch in batches(formatted(relation, nested_as_json=True)):
        buffer = pa.BufferOutputStream()
        options = pacsv.WriteOptions(include_header=header)
        pacsv.write_csv(pa.Table.from_batches([batch]), buffer, options)
        out.write(buffer.getvalue().to_pybytes().decode("utf-8"))
        rows += batch.num_rows
        header = False
    if header:
        out.write(",".join(csv_quoted(name) for name in relation.columns) + "\n")
    return rows


def write_whole(out: TextIO, text: str) -> None:
    """Write all of `text`, or raise BrokenPipeError if the reader has gone.

    Handed more than its buffer holds, a buffered stream writes it straight to the pipe;
    when the reader goes away in the middle, it returns the count that got through and
    drops the rest without a word. So the rest is written again until nothing is left,
    and a pipe with no reader raises.
    """
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a stream of text only, such as io.StringIO
        out.write(text)
        return
    out.flush()  # what the text stream holds goes first
    remaining = memoryview(text.encode(out.encoding, out.errors or "strict"))
    while remaining:
        remaining = remaining[buffer.write(remaining) :]


# Texts longer than this are written by `write_whole`; shorter ones fill the stream's
# buffer, whose flush writes all of it or raises.
LARGE_TEXT = 4096


class WholeOutput:
    """Standard output for a command: every text written whole (`write_whole`), and a
    write that fails for any reason but a reader gone is an error of one line."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        # Whether a write met a reader gone. argparse's --help and --version take no
        # notice of a failed write, so the command line asks here.
        self.reader_gone = False

    def write(self, text: str) -> int:
        with self.writing():
            if len(text) > LARGE_TEXT:
                write_whole(self.stream, text)
            else:
                self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        with self.writing():
            self.stream.flush()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """`output_errors`, noting a reader gone."""
        try:
            with output_errors(self.stream):
                yield
        except BrokenPipeError:
            self.reader_gone = True
            raise

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno, buffer, ...
        return getattr(self.stream, name)


class ClosedOutput:
    """Standard output of a command started with it closed (`>&-`): writing to it is an
    error of one line, as writing to a full disk is."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise OutputError("cannot write the output: standard output is closed")

    def flush(self) -> None:
        pass  # nothing was written

    def isatty(self) -> bool:
        return False


@contextmanager
def output_errors(stream: TextIO) -> Iterator[None]:
    """A write that failed, as what went wrong and what to do; a reader gone stays a
    BrokenPipeError, which ends the command as SIGPIPE would."""
    try:
        yield
    except BrokenPipeError:
        raise
    except UnicodeEncodeError as error:
        lacking = error.object[error.start : error.end]
        raise OutputError(
            f"the output's encoding ({stream.encoding}) cannot write {lacking!r}; set "
            "PYTHONIOENCODING=utf-8 (or a UTF-8 locale)"
        ) from None
    except OSError as error:
        raise OutputError(f"cannot write the output: {reason(error)}") from None


def csv_quoted(text: str) -> str:
    """A CSV field in quotes, a quote inside written twice, as pyarrow writes a header."""
    return '"' + text.replace('"', '""') + '"'


def write_json(relation: duckdb.DuckDBPyRelation, out: TextIO, end: str = "\n") -> int:
    """A JSON array of objects, one per row, then `end`; returns the number of rows
    written."""
    check_unique_names(relation.columns)
    text = formatted(relation, nested_as_json=False)
    objects = text.select(f"{json_object_text_sql(text.columns)} AS row_json")
    rows = 0
    # The array opens with its first row, so a query that fails before any row writes
    # nothing at all.
    for batch in batches(objects):
        lines = batch.column(0).to_pylist()
        if lines:
            out.write(("," if rows else "[") + "\n" + ",\n".join(lines))
            rows += len(lines)
    out.write(("\n]" if rows else "[]") + end)
    return rows


def check_unique_names(columns: list[str]) -> None:
    """JSON objects need one key per column (DuckDB also treats `a` and `A` as one)."""
    seen: set[str] = set()
    for name in columns:
        if fold_name(name) in seen:
            raise QueryError(
                f"two result columns are named `{name}` (ignoring case); give them distinct "
                "aliases (... AS other_name) for JSON output"
            )
        seen.add(fold_name(name))


def write_table(relation: duckdb.DuckDBPyRelation, console: Console) -> int:
    """A terminal table of the first rows; says how many more there are."""
    table = Table(show_lines=False)
    for name in relation.columns:
        table.add_column(cell(name), overflow="fold")
    text = formatted(relation, nested_as_json=True)
    shown = 0
    total = 0
    for batch in batches(text):
        total += batch.num_rows
        room = TABLE_ROW_LIMIT - shown
        if room > 0:
            shown_rows = batch.slice(0, room)
            columns = (as_written(column).to_pylist() for column in shown_rows.columns)
            for row in zip(*columns, strict=True):
                table.add_row(*("NULL" if value is None else cell(value) for value in row))
            shown += min(room, batch.num_rows)
    console.print(table)
    if total > shown:
        console.print(f"{total - shown} more rows not shown; use --format csv or json for all")
    console.print(f"({total} row{'s' if total != 1 else ''})", style="dim")
    return total


def as_written(column: pa.Array) -> pa.Array:
    """Booleans and FLOATs as the CSV output writes them (`true`, `0.1`): in Python they
    would be `True` and the double nearest the FLOAT, `0.10000000149011612`."""
    if pa.types.is_boolean(column.type) or pa.types.is_float32(column.type):
        return column.cast(pa.string())
    return column


def cell(value: object) -> str:
    """A value as a table cell shows it: printable, and cut past `TABLE_CELL_LIMIT`
    characters, saying how many more there are."""
    text = str(value)
    if len(text) <= TABLE_CELL_LIMIT:
        return printable(text)
    more = len(text) - TABLE_CELL_LIMIT
    shown = printable(text[:TABLE_CELL_LIMIT])
    plural = "s" if more != 1 else ""
    return f"{shown}... ({more} more character{plural}; use --format csv or json)"


def printable(value: object) -> str:
    """A value as a terminal shows it: control characters written as `\\xNN` (or
    `\\uNNNN`). (The console reads no markup or emoji codes, so `[vip]` shows as it is.)"""
    return CONTROL_CHARACTERS.sub(escaped, str(value))


def escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
