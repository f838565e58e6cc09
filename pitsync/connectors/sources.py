"""Warehouse sources: each one yields a table's rows as a stream of Arrow record batches.

A source answers two questions: what are a table's columns (`schema`, no rows read), and
give me these columns (`read`, a `pyarrow.RecordBatchReader` that holds one batch at a
time). The sync job asks the first before any data moves, so a missing column is a
configuration error, not a half-finished run. Database sources (PostgreSQL, SQLite,
Snowflake, BigQuery) fit the same two calls.

DuckDB files, Parquet and CSV are all read by an in-memory DuckDB engine; what differs
between them is only how a table is named, kept in `FILE_KINDS`.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pitsync.config import SourceConfig
from pitsync.errors import ConfigError, SourceError, first_line
from pitsync.interrupts import is_interrupt
from pitsync.modeling.timestamps import TEXT_OF
from pitsync.paths import OTHER_FILE, SQLITE_FILE, database_kind, file_problem
from pitsync.paths import reason as refusal
from pitsync.quoting import fold_name, fold_name_sql, quote_identifier, quote_string
from pitsync.store import SET_UTC

log = logging.getLogger(__name__)

BATCH_ROWS = 122_880  # DuckDB's row-group size: one batch per row group read.
# DuckDB would make a folder named `plan=free` a column `plan`, even over the file's own
# `plan`: a file's columns are its own, wherever it is kept.
OWN_COLUMNS = "hive_partitioning = false"
# DuckDB refuses a longer CSV row, by default one past 2 MB, which a long text value
# reaches; a Parquet source holds such a value without a word.
CSV_MAX_ROW_BYTES = 64 << 20
# The header is the first line: DuckDB's sniffer would otherwise skip lines it finds odd,
# rows of data among them (a file whose last row has a field too many lost every row
# above it, the wide row taken for its header).
# Nor is a line starting with `#` a comment: DuckDB's sniffer, finding one, took `#` for a
# comment everywhere in the file, and lost the rows and the ends of values that held one.
CSV_OPTIONS = f"{OWN_COLUMNS}, max_line_size = {CSV_MAX_ROW_BYTES}, skip = 0, comment = ''"
TOO_LONG_ROW = "Maximum line size"

# DuckDB types whose values would not reach the store as they are: Arrow carries a UHUGEINT
# as a 128-bit decimal (2^127 and up wrap round to negative), a TIMETZ without its offset,
# a BIT as DuckDB's own bytes; BIGNUM and UNION have no store type. Matched as a type, not
# as a struct field's name (which a type follows).
UNKEPT_DUCKDB_TYPES = re.compile(
    r"\b(UHUGEINT|TIME WITH TIME ZONE|BIT|BIGNUM|VARINT)(?=$|[,)\[])|\bUNION\("
)
# A HUGEINT (a DuckDB column, a CSV's big whole numbers, or inside a list or struct) is
# read as the DECIMAL(38, 0) Arrow carries it as; a value of 39 digits fails that cast,
# naming the value, where it would be stored beyond its type and break reading it back.
HUGEINT = re.compile(r"\bHUGEINT(?=$|[,)\[])")
JSON = "JSON"
CSV_ERROR_LINE = re.compile(r"CSV Error on Line: (\d+)")
CSV_ERROR_FILE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)

# Field metadata a source sets on a column whose values have no type of their own (an
# SQLite column declared without one holds numbers and text alike): such a column is read
# as text, whose order is not its numbers', so it cannot be a cursor.
UNTYPED = b"pitsync.untyped"
# Field metadata a source sets on a column whose values, as read, cannot order rows as they
# arrive, though their type could (a number rounded on the way, text the database orders
# otherwise); its value says why, after "cursor `name`".
NOT_A_CURSOR = b"pitsync.not_a_cursor"


@dataclass(frozen=True)
class LowerBound:
    """Read only the rows whose `column` is at or past a value of the cursor's own type.

    The value is DuckDB's `text` of it and its DuckDB `type_name`, never a Python value:
    Python's dates end at the year 9999 and begin at the year 1, where a cursor need not.
    """

    column: str
    text: str
    type_name: str

    def arrow_value(self, earliest: str | None = None) -> pa.Array | None:
        """The value as one Arrow value of its type, which a database driver binds; None
        for a date or time before `earliest` (DuckDB's text of a database's first time):
        every row is past it, and the database would refuse to take it."""
        value = f"CAST(? AS {self.type_name})"
        is_time = self.type_name.upper().startswith(("DATE", "TIMESTAMP"))
        with utc_engine() as engine:
            if earliest is not None and is_time:
                found = engine.execute(f"SELECT {value} < {value}", [self.text, earliest])
                if found.fetchall() == [(True,)]:
                    return None
            bound = engine.sql(f"SELECT {value}", params=[self.text])
            return bound.to_arrow_table().column(0).combine_chunks()


@contextmanager
def utc_engine() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB engine of its own, reading and writing times in UTC."""
    engine = duckdb.connect(":memory:")
    try:
        engine.execute(SET_UTC)
        yield engine
    finally:
        engine.close()


class Source(Protocol):
    """What the sync job needs of any warehouse."""

    name: str

    def schema(self, table: str, text_columns: Sequence[str] = ()) -> pa.Schema:
        """The table's columns and types, without reading rows.

        `text_columns` are read as they are written where the source has no types of its
        own (CSV): an id `007` must stay `007`, and a time column's every value must be
        parsed by pitsync, not by a guess from the first rows.
        """
        ...

    def read(
        self,
        table: str,
        columns: list[str],
        text_columns: Sequence[str] = (),
        lower_bound: LowerBound | None = None,
    ) -> pa.RecordBatchReader:
        """A stream of the table's rows, only the named columns (and rows, if bounded)."""
        ...

    def spelled(self, table: str) -> str:
        """The table's name as the source spells it (names compare without case)."""
        ...

    def cancel(self) -> None:
        """Stop the reads under way, from any thread (Ctrl-C): a database may be working
        on them where no signal reaches."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@dataclass(frozen=True)
class FileKind:
    """How one kind of file source names a table as a DuckDB relation."""

    relation: Callable[[SourceConfig, str, Sequence[str]], str]
    needs_attach: bool
    describe: str


def duckdb_relation(config: SourceConfig, table: str, text_columns: Sequence[str]) -> str:
    return f"source_db.{quote_identifier(config.schema or 'main')}.{quote_identifier(table)}"


def parquet_relation(config: SourceConfig, table: str, text_columns: Sequence[str]) -> str:
    return f"read_parquet({files_read(config, table)}, {OWN_COLUMNS})"


def csv_relation(config: SourceConfig, table: str, text_columns: Sequence[str]) -> str:
    """Types are sniffed from the whole file, so a late odd value cannot break a run.

    A quoted empty value (`""`) is the empty string, as PostgreSQL's COPY reads CSV;
    only a field with nothing in it is NULL (undefined).
    """
    as_text = ", ".join(f"{quote_string(name)}: 'VARCHAR'" for name in text_columns)
    return (
        f"read_csv({files_read(config, table)}, header = true, {CSV_OPTIONS}, "
        f"sample_size = -1, allow_quoted_nulls = false, types = {{{as_text}}})"
    )


def with_json_fields(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """The schema with these text columns marked as JSON, as a PostgreSQL source's are:
    DuckDB hands its JSON to Arrow as plain text, which the store would keep as text."""
    for name in names:
        index = schema.get_field_index(name)
        schema = schema.set(index, pa.field(name, pa.json_(), schema.field(index).nullable))
    return schema


def with_text_of(schema: pa.Schema, types: dict[str, str]) -> pa.Schema:
    """The schema with these columns, which Arrow holds as text, marked with their type."""
    for name, kind in types.items():
        index = schema.get_field_index(name)
        field = schema.field(index)
        marked = {**(field.metadata or {}), TEXT_OF: kind.encode()}
        schema = schema.set(index, field.with_metadata(marked))
    return schema


def with_json(batch: pa.RecordBatch, names: list[str]) -> pa.RecordBatch:
    """The batch with these text columns as JSON (the same values, marked)."""
    for name in names:
        index = batch.schema.get_field_index(name)
        text = batch.column(index).cast(pa.string())
        batch = batch.set_column(index, name, pa.ExtensionArray.from_storage(pa.json_(), text))
    return batch


def selected_column(column: str, declared: str | None) -> str:
    """A column as read: a HUGEINT, wherever it is in the type, as the DECIMAL(38, 0) it
    reaches the store as."""
    name = quote_identifier(column)
    if declared and HUGEINT.search(unquoted(declared)):
        return f"CAST({name} AS {as_decimal(declared)}) AS {name}"
    return name


# A quoted name inside a DuckDB type (a struct field's, `"amount (HUGEINT)"`), which no
# type name is to be looked for in.
QUOTED_NAME = re.compile(r'"(?:[^"]|"")*"')
QUOTED_NAME_OR_HUGEINT = re.compile(f"({QUOTED_NAME.pattern})|{HUGEINT.pattern}")


def unquoted(declared: str) -> str:
    """The type with its quoted field names blanked out, the same length."""
    return QUOTED_NAME.sub(lambda found: " " * len(found.group()), declared)


def as_decimal(declared: str) -> str:
    """The type with each HUGEINT in it (not in a quoted field name) a DECIMAL(38, 0)."""
    return QUOTED_NAME_OR_HUGEINT.sub(lambda found: found.group(1) or "DECIMAL(38, 0)", declared)


def unmappable(source: str, table: str, column: str, declared: str) -> ConfigError:
    """The error for a source column of a type pitsync cannot keep, from any source."""
    return ConfigError(
        f"source `{source}`: column `{column}` of table `{table}` has type {declared}, which "
        "pitsync cannot map; cast it in a view in the source (for example to text) and read "
        "the view with `from`",
        table=table,
    )


def files_read(config: SourceConfig, table: str) -> str:
    """The files of a table as DuckDB's readers take them.

    Several files are read by column name, every column any of them has: a column only
    later files have is a new property, and one a later file lacks is NULL in its rows,
    rather than a column silently left out or a failed run. Empty files hold no rows and
    no columns, and are left out. One file is read as it is: by name, a CSV would be
    sniffed twice.
    """
    pattern = file_pattern(config, table)
    files = [literal_path(config, name) for name in matched_files(pattern)]
    if len(files) == 1:
        return quote_string(files[0])
    if len(files) > 1:
        return f"[{', '.join(quote_string(name) for name in files)}], union_by_name = true"
    return quote_string(str(pattern))  # nothing to read: the reader says so


def literal_path(config: SourceConfig, name: str) -> str:
    """A file's name as a DuckDB glob that matches that file alone.

    DuckDB expands `*`, `?` and `[` in every name it reads, so a file named `ev[1].csv`
    would read `ev1.csv` instead; each such character is enclosed in brackets, which
    DuckDB's globs match literally. Its globs never match a name holding a backslash.
    """
    escaped = glob.escape(name)
    if escaped != name and "\\" in name:
        raise SourceError(
            f"source `{config.name}`: DuckDB cannot read {name}, whose path holds both a "
            "backslash and one of `*`, `?` or `[`; rename the file or its folder",
            source=config.name,
        )
    return escaped


def matched_files(pattern: Path) -> list[str]:
    """The non-empty files a source's path names, in name order; a folder names every
    file in it, at any depth (as DuckDB reads one), so that they are read by name too."""
    paths = matched_paths(pattern)
    if len(paths) == 1 and os.path.isdir(paths[0]):
        paths = sorted(glob.glob(os.path.join(glob.escape(paths[0]), "**", "*"), recursive=True))
    files = [name for name in paths if os.path.isfile(name) and os.path.getsize(name) > 0]
    # A file a linked folder reaches again (`latest -> 2024-01-02`) is read once.
    once = {os.path.realpath(name): name for name in reversed(files)}
    return [name for name in files if once[os.path.realpath(name)] == name]


def matched_paths(pattern: Path) -> list[str]:
    """The file or folder a path names as written, else what it matches as a glob, in name
    order; `**` reaches any depth. A file named `ev[1].csv` is that file, not `ev1.csv`."""
    if pattern.exists():
        return [str(pattern)]
    return sorted(glob.glob(str(pattern), recursive=True))


FILE_KINDS: dict[str, FileKind] = {
    "duckdb": FileKind(duckdb_relation, needs_attach=True, describe="DuckDB file"),
    "parquet": FileKind(parquet_relation, needs_attach=False, describe="Parquet files"),
    "csv": FileKind(csv_relation, needs_attach=False, describe="CSV files"),
}


def file_pattern(config: SourceConfig, table: str) -> Path:
    """The file or glob of a file source; `{table}` in the path stands for the table name."""
    return Path(str(config.path).replace("{table}", table))


def not_a_duckdb_file(path: Path) -> str | None:
    """Why a file is no DuckDB database to read, told by its first bytes: DuckDB would say
    it cannot launch an in-memory database."""
    try:
        kind = database_kind(path)
    except OSError as error:
        return f"cannot be read: {refusal(error)}"
    if kind == SQLITE_FILE:
        return 'is an SQLite database: read it with type = "sqlite"'
    if kind == OTHER_FILE:
        return 'is not a DuckDB file (CSV or Parquet files are read with type = "csv" or "parquet")'
    return None if kind is None else f"is {kind}"


class FileSource:
    """A DuckDB file, or Parquet or CSV files, read through an in-memory DuckDB."""

    def __init__(self, config: SourceConfig):
        self.name = config.name
        self.config = config
        self.kind = FILE_KINDS[config.type]
        # The engine reads the source in UTC so zone-aware values keep their instant.
        self.engine = duckdb.connect(":memory:")
        self.engine.execute(SET_UTC)
        self.types: dict[str, dict[str, str]] = {}  # of a relation read, by `duckdb_types`
        if self.kind.needs_attach:
            self.attach()

    def attach(self) -> None:
        """Open the DuckDB file read-only, so pitsync can never change a warehouse."""
        path = self.config.path
        problem = "not found" if path is None else file_problem(path) or not_a_duckdb_file(path)
        if problem:
            raise SourceError(
                f"source `{self.name}`: DuckDB file {self.config.path} {problem}; check "
                f"`path` in [sources.{self.name}]",
                source=self.name,
            )
        try:
            self.engine.execute(
                f"ATTACH {quote_string(str(self.config.path))} AS source_db (READ_ONLY)"
            )
        except duckdb.Error as error:
            raise self.failed(f"cannot open {self.config.path} as a DuckDB file", error) from error

    def schema(self, table: str, text_columns: Sequence[str] = ()) -> pa.Schema:
        self.check_exists(table)
        files = [] if self.kind.needs_attach else matched_files(file_pattern(self.config, table))
        self.check_names_apart(files)  # before DuckDB reads the names its own way
        relation = self.kind.relation(self.config, table, self.present(table, text_columns))
        try:
            described = self.engine.sql(f"SELECT * FROM {relation} LIMIT 0")
            schema = described.to_arrow_table().schema
        except duckdb.Error as error:
            raise self.failed(
                f"cannot read table `{table}` from {self.kind.describe} {self.config.path}",
                self.located(table, error),
            ) from error
        types = self.remember_types(relation, described)
        if self.kind.needs_attach:  # Parquet's TIME in UTC is a TIMETZ of +00, kept as a time
            self.check_types_kept(table, types)
        else:
            self.check_read_as_columns(files, described.columns)
        schema = with_json_fields(schema, [name for name, kind in types.items() if kind == JSON])
        return with_text_of(schema, {name: kind for name, kind in types.items() if kind == "UUID"})

    def duckdb_types(self, relation: str) -> dict[str, str]:
        """Each column's type as DuckDB names it, which Arrow's may hide (HUGEINT); kept
        from `schema`, as a CSV would be sniffed again."""
        if relation not in self.types:
            self.remember_types(relation, self.engine.sql(f"SELECT * FROM {relation} LIMIT 0"))
        return self.types[relation]

    def remember_types(self, relation: str, described: duckdb.DuckDBPyRelation) -> dict[str, str]:
        self.types[relation] = dict(zip(described.columns, map(str, described.types), strict=True))
        return self.types[relation]

    def check_types_kept(self, table: str, types: dict[str, str]) -> None:
        """Fail, naming the column, at a type (as DuckDB names it) whose values would change
        on their way to the store."""
        for column, declared in types.items():
            if UNKEPT_DUCKDB_TYPES.search(unquoted(declared)):
                raise unmappable(self.name, table, column, declared)

    def spelled(self, table: str) -> str:
        """The name as configured: DuckDB finds a table in any case itself, and a path
        names its files as written."""
        return table

    def check_names_apart(self, files: list[str]) -> None:
        """Fail when one of the `files` names two columns alike, in any case, as a database
        would, or names a column with nothing.

        DuckDB's readers would call the second `plan` (or `PLAN`) `plan_1`, a property
        nobody named; a PostgreSQL table with `plan` and `PLAN` is refused, and so is this.
        """
        for name in files:
            seen: dict[str, str] = {}
            for number, column in enumerate(self.written_names(name), start=1):
                # DuckDB trims a CSV header's names; a Parquet name of blanks stays one.
                if not (column.strip() if self.config.type == "csv" else column):
                    # DuckDB would name it itself (`column2`, `C2`), maybe as another
                    # column of the file is named, whose values it would then take.
                    raise SourceError(
                        f"source `{self.name}`: {name} has a column without a name (column "
                        f"{number}); name it in the file",
                        source=self.name,
                    )
                # DuckDB trims a header's names: `plan, plan` is plan twice.
                folded = fold_name(column.strip())
                if folded in seen:
                    raise SourceError(
                        f"source `{self.name}`: {name} has the columns `{seen[folded]}` and "
                        f"`{column}`, which the store cannot tell apart (it compares names "
                        "without case); rename one",
                        source=self.name,
                    )
                seen[folded] = column

    def check_read_as_columns(self, files: list[str], columns: list[str]) -> None:
        """Refuse one of the CSV `files` whose columns, as DuckDB reads it, are not those its
        first line names (`columns`: the files' columns as DuckDB read them together).

        DuckDB's sniffer, when no delimiter splits every line alike (a row with more or
        fewer fields than the header, or a line above the header such as a title),
        reads a file as one column named by its whole first line, or splits it where a
        quote should have held it together. The configured columns would then look
        missing, or the file's rows add properties. Read again with the delimiter its
        first line holds, the first line that does not fit is named.
        """
        if self.config.type != "csv":
            return
        found = {column.strip() for column in columns}
        for name in files:
            header = first_line_of(name)
            if header is None:
                continue  # the read of the table says why it cannot be read
            if not header.strip():
                # DuckDB would read the header below it as a row too.
                raise SourceError(
                    f"source `{self.name}`: {name} starts with a blank line; its header must "
                    "be its first line: remove the blank line",
                    source=self.name,
                )
            readings = [header_names(header, mark, quote) for mark, quote in dialects(header)]
            named = header not in found and any(found.issuperset(names) for names in readings)
            if (named or not readings) and not header.startswith("#"):
                continue  # the files' columns are those this first line names
            self.check_read_alone(name, header, [] if named else readings)

    def check_read_alone(self, name: str, header: str, readings: list[list[str]]) -> None:
        """Refuse the file if DuckDB, reading it alone, reads a comment line for its one
        column, or none of the `readings` of its first line (none: nothing to check)."""
        alone = self.columns_of_file(name)
        if header.startswith("#") and alone == [header.strip()]:
            raise SourceError(
                f"source `{self.name}`: {name} starts with a comment line ({header!r}); "
                "its header must be its first line: remove the comment",
                source=self.name,
            )
        if readings and alone not in readings:
            self.refuse_misread(name, header)

    def columns_of_file(self, name: str) -> list[str] | None:
        """A CSV file's columns as DuckDB reads it alone, trimmed; None if it cannot."""
        relation = f"read_csv({quote_string(literal_path(self.config, name))}, header = true, "
        relation += f"{CSV_OPTIONS}, sample_size = -1, all_varchar = true)"
        try:
            read = self.engine.sql(f"SELECT * FROM {relation} LIMIT 0").columns
        except duckdb.Error as error:
            if is_interrupt(error):
                raise
            return None  # the read of the table says what is wrong
        return [column.strip() for column in read]

    def refuse_misread(self, name: str, header: str) -> NoReturn:
        """Refuse the file, naming the first line that does not fit its header where a
        read with the header's most frequent delimiter finds one."""
        refusal = (
            f"{name} is not read as the columns its first line names, as no delimiter "
            "splits all its lines alike: its header must be its first line, and each row "
            "must have as many fields"
        )
        delimiter = max((mark for mark in DELIMITERS if mark in header), key=header.count)
        names = header_names(header, delimiter, '"')
        if all(names) and len(set(names)) == len(names):  # names DuckDB can be given
            self.read_with_header(name, names, delimiter, refusal)
        raise SourceError(f"source `{self.name}`: {refusal}", source=self.name)

    def read_with_header(self, name: str, columns: list[str], delimiter: str, refusal: str) -> None:
        """Read a CSV file of these columns and delimiter; a row of another width fails,
        `refusal` saying why, then DuckDB where."""
        typed = ", ".join(f"{quote_string(column)}: 'VARCHAR'" for column in columns)
        try:
            self.engine.execute(
                f"SELECT count(*) FROM read_csv({quote_string(literal_path(self.config, name))}, "
                f"header = true, auto_detect = false, delim = {quote_string(delimiter)}, "
                f"quote = '\"', escape = '\"', columns = {{{typed}}}, {CSV_OPTIONS})"
            ).fetchall()  # fetched whole: an open result would refuse the engine's next query
        except duckdb.Error as error:
            if is_interrupt(error):
                raise
            raise self.failed(refusal, error) from None

    def written_names(self, name: str) -> list[str]:
        """A file's column names as written, before DuckDB makes repeated ones unique (an
        empty one as ""); none when the file cannot be read so (the read that follows says
        why)."""
        try:
            if self.config.type == "parquet":
                return list(pq.read_schema(name).names)
            rows = self.engine.execute(
                f"SELECT * FROM read_csv({quote_string(literal_path(self.config, name))}, "
                f"header = false, all_varchar = true, {CSV_OPTIONS}) LIMIT 1"
            ).fetchall()
        except (duckdb.Error, pa.ArrowException, OSError) as error:
            if is_interrupt(error):
                raise
            return []
        return ["" if column is None else str(column) for column in rows[0]] if rows else []

    def read(
        self,
        table: str,
        columns: list[str],
        text_columns: Sequence[str] = (),
        lower_bound: LowerBound | None = None,
    ) -> pa.RecordBatchReader:
        relation = self.kind.relation(self.config, table, self.present(table, text_columns))
        types = self.duckdb_types(relation)
        selected = ", ".join(selected_column(column, types.get(column)) for column in columns)
        sql = f"SELECT {selected} FROM {relation}"
        parameters: list[Any] = []
        if lower_bound is not None:
            cursor = quote_identifier(lower_bound.column)
            # Rows without a cursor value are read every time, to be quarantined.
            bound = f"CAST(? AS {lower_bound.type_name})"
            compared = cursor
            if types.get(lower_bound.column) == "UUID":
                # A uuid arrives as its text, and compares with its watermark as a uuid:
                # DuckDB orders uuids as their lower-case text.
                bound = f"CAST({bound} AS UUID)"
            elif lower_bound.type_name.upper() == "VARCHAR":
                # Text compares by code point, as its watermark was found, whatever the
                # column's collation (NOCASE would put some later values below it).
                compared = f'({cursor} COLLATE "binary")'
            sql += f" WHERE {compared} >= {bound} OR {cursor} IS NULL"
            parameters.append(lower_bound.text)
        log.debug("source %s: %s %s", self.name, sql, parameters)
        try:
            rows = self.engine.sql(sql, params=parameters or None).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as error:
            if is_interrupt(error):
                raise
            what = f"reading table `{table}` from {self.kind.describe} {self.config.path} failed"
            raise self.read_failure(what, error, table, columns) from None
        as_json = [column for column in columns if types.get(column) == JSON]
        batches = (with_json(batch, as_json) for batch in self.checked(rows, table, columns))
        return pa.RecordBatchReader.from_batches(with_json_fields(rows.schema, as_json), batches)

    def checked(
        self, rows: pa.RecordBatchReader, table: str, columns: list[str]
    ) -> Iterator[pa.RecordBatch]:
        """The rows as DuckDB reads them; a failure partway names the source, the table and,
        where DuckDB's reason does not, the damaged file."""
        try:
            yield from rows
        except Exception as error:
            if is_interrupt(error):
                raise
            what = (
                f"reading table `{table}` from {self.kind.describe} {self.config.path} failed "
                "partway"
            )
            raise self.read_failure(what, error, table, columns) from None

    def read_failure(
        self, what: str, error: BaseException, table: str, columns: list[str]
    ) -> SourceError:
        """The failure of a read, naming the damaged file where DuckDB's reason does not."""
        failure = self.failed(what, error)
        damaged = self.damaged_file(table, columns)
        if damaged is None:
            return failure
        return SourceError(
            f"{failure}; the file {damaged} is damaged: write it again, or move it out "
            f"of the files `path` in [sources.{self.name}] matches",
            source=self.name,
        )

    def damaged_file(self, table: str, columns: list[str]) -> str | None:
        """The first of a table's Parquet files whose columns cannot be read in full.

        Some of DuckDB's Parquet errors (`Out of buffer`) do not say which file failed, so
        each file's columns are read again, in DuckDB, until one fails. A CSV error names
        its file, and a path of one file names that file.
        """
        files = matched_files(file_pattern(self.config, table))
        if self.config.type != "parquet" or len(files) < 2:
            return None
        for name in files:
            try:
                self.read_whole(name, columns)
            except Exception as error:
                if is_interrupt(error):
                    raise
                return name
        return None

    def read_whole(self, name: str, columns: list[str]) -> None:
        """Read every value of a Parquet file's `columns` (those it has), keeping none."""
        relation = f"read_parquet({quote_string(literal_path(self.config, name))}, {OWN_COLUMNS})"
        held = {fold_name(column) for column in self.engine.sql(f"FROM {relation} LIMIT 0").columns}
        kept = [quote_identifier(column) for column in columns if fold_name(column) in held]
        if kept:
            # A hash needs every value, where a count would let DuckDB skip the columns.
            self.engine.execute(f"SELECT max(hash({', '.join(kept)})) FROM {relation}")

    def present(self, table: str, text_columns: Sequence[str]) -> list[str]:
        """The text columns the table has (a CSV reader refuses types for absent ones)."""
        if not text_columns or self.config.type != "csv":
            return []
        files = files_read(self.config, table)
        try:
            header = self.engine.sql(
                f"SELECT * FROM read_csv({files}, header = true, {CSV_OPTIONS}, "
                "all_varchar = true) LIMIT 0"
            ).columns
        except duckdb.Error as error:
            raise self.failed(
                f"cannot read the header of table `{table}` from {self.kind.describe} "
                f"{self.config.path}",
                error,
            ) from None
        return [name for name in text_columns if name in header]

    def located(self, table: str, error: duckdb.Error) -> duckdb.Error:
        """The error of the line a CSV sniffer could not read, where it can be found.

        A sniffer that reads the whole file fails at a row with a field too many without
        saying which: a plain read, as the header is read, stops at that row and names it.
        """
        if self.config.type != "csv" or "Error when sniffing file" not in str(error):
            return error
        try:
            self.engine.execute(
                f"SELECT count(*) FROM read_csv({files_read(self.config, table)}, "
                f"header = true, {CSV_OPTIONS}, all_varchar = true)"
            )
        except duckdb.Error as found:
            return found
        return error

    def failed(self, what: str, error: BaseException) -> SourceError:
        """`source NAME: <what>: <DuckDB's reason>`, for a step the source's engine failed."""
        return SourceError(f"source `{self.name}`: {what}: {reason(error)}", source=self.name)

    def check_exists(self, table: str) -> None:
        """Fail with the list of tables (or the missing path) when `table` is not there."""
        if not self.kind.needs_attach:
            self.check_files(table)
            return
        schema = self.config.schema or "main"
        in_schema = f"{fold_name_sql('schema_name')} = {fold_name_sql('$1')}"
        names = [
            row[0]
            for row in self.engine.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'source_db' "
                f"AND {in_schema} UNION ALL SELECT view_name FROM duckdb_views() "
                f"WHERE database_name = 'source_db' AND {in_schema}",
                [schema],
            ).fetchall()
        ]
        # DuckDB finds names without regard to case, and so does this check.
        if fold_name(table) not in {fold_name(name) for name in names}:
            where = f"schema `{schema}` of " if self.config.schema else ""
            raise SourceError(
                f"source `{self.name}`: table `{table}` not found in {where}{self.config.path}; "
                f"tables are: {', '.join(sorted(names)) or '(none)'}; set `from` in the "
                "table's section when its name in the source differs",
                source=self.name,
            )

    def check_files(self, table: str) -> None:
        """Fail when the path matches nothing, or only empty files: files that hold no
        columns cannot hold the ones the table names."""
        pattern = file_pattern(self.config, table)
        paths = matched_paths(pattern)
        if not paths:
            raise SourceError(
                f"source `{self.name}`: no {self.kind.describe} match {pattern}; check "
                f"`path` in [sources.{self.name}]",
                source=self.name,
            )
        # A folder is read whole by DuckDB, which says itself what it finds there.
        if not matched_files(pattern) and not any(os.path.isdir(path) for path in paths):
            raise SourceError(
                f"source `{self.name}`: table `{table}`: {pattern} matches only empty "
                f"files ({len(paths)}), so there are no rows and no columns to read; "
                f"check `path` in [sources.{self.name}], or sync once the files are written",
                source=self.name,
            )

    def cancel(self) -> None:
        """Nothing to do: DuckDB reads the files, and stops at Ctrl-C itself."""

    def close(self) -> None:
        self.engine.close()


# What separates a CSV header's names, when DuckDB read the whole header as one name.
DELIMITERS = (",", ";", "\t", "|")


def header_names(header: str, delimiter: str, quote: str) -> list[str]:
    """The names of a CSV header line, read with this delimiter and quote, trimmed."""
    names = next(csv.reader([header], delimiter=delimiter, quotechar=quote), [])
    return [name.strip() for name in names]


# The quotes DuckDB's sniffer tries; a header is read with each.
QUOTES = ('"', "'")


def dialects(header: str) -> list[tuple[str, str]]:
    """The (delimiter, quote) pairs a header line may be written in: the double quote
    always, as it is the usual one; the single quote where the line holds one."""
    quotes = [quote for quote in QUOTES if quote == '"' or quote in header]
    return [(mark, quote) for mark in DELIMITERS if mark in header for quote in quotes]


def first_line_of(path: str) -> str | None:
    """A text file's first line without its line end; None if it cannot be read so."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            return file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None


def reason(error: BaseException) -> str:
    """DuckDB's reason in one line, and for a CSV error the file, the line and what to do.

    DuckDB names the line of a CSV error on the first line of its message, but says what
    is wrong there (a field too many, a file not in UTF-8) only on the lines after it.
    """
    text = str(error).strip()
    line = CSV_ERROR_LINE.search(text)
    if line is None:
        return first_line(error)
    file = CSV_ERROR_FILE.search(text)
    if TOO_LONG_ROW in text:
        # DuckDB names line 1 for a row too long wherever it is: no line is named.
        named = file.group(1).strip() if file else "the file"
        return (
            f"a row of {named} is longer than {CSV_MAX_ROW_BYTES >> 20} MB, the longest CSV "
            "row pitsync reads; shorten its values, or keep the table as Parquet"
        )
    where = f"line {line.group(1)}" + (f" of {file.group(1).strip()}" if file else "")
    said = []
    for part in text.splitlines()[1:]:
        if not part.strip() or part.startswith("Possible"):
            break  # DuckDB's advice names its own options, which pitsync does not take
        if not part.startswith("Original Line:"):
            said.append(part.strip())
    what = " ".join(said).rstrip(".")
    advice = "save the file as UTF-8" if "not utf-8" in what else "correct or remove that row"
    return f"{where}: {what}; {advice}"


def open_source(config: SourceConfig) -> Source:
    """The source for one [sources.NAME] section: files through DuckDB, databases via ADBC."""
    from pitsync.connectors.databases import DRIVERS, DatabaseSource

    if config.type in DRIVERS:
        return DatabaseSource(config)
    return FileSource(config)
