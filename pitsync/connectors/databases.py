"""Database sources through ADBC: PostgreSQL, SQLite, and Snowflake or BigQuery.

Each driver hands back query results as Arrow record batches, so rows go from the
database into DuckDB without passing through Python objects. What differs between
databases is kept in `DRIVERS`: which module connects, and which SQL dialect the
extraction query is printed in.

A connection URI may carry a password. It is used to connect and for nothing else: every
message that could echo it (a driver's error text) goes through `redact` first.

Types: PostgreSQL's `numeric` arrives as text (it can exceed any fixed-width decimal), so
a `numeric(p, s)` with p <= 38 becomes a DECIMAL(p, s); an unconstrained `numeric`, or one
wider than 38 digits, becomes a DOUBLE, as DuckDB's own PostgreSQL reader does. JSON stays
JSON. A `uuid` is read as the text PostgreSQL prints for it (lower-case 8-4-4-4-12 hex):
the SELECT casts it to text under its own name, so it serves as an id, a group key, a
property or an insert id like any text; as a cursor, the watermark is cast back to uuid
for the source to compare; a `uuid[]` is read as an array of that text. `money` and `oid`
are refused (the driver hands over numbers that do not mean the value), and so is any
other type the driver cannot express in Arrow, naming the column; arrays of such types
are refused the same way. A row holding a multi-dimensional array (which the driver
would hand over flattened), a NaN in a numeric(p, s), a finite numeric past every
double (the cast would make it infinite), or a time the driver cannot hand
over (an infinity inside an array, a year past 294,246) is quarantined; a single time
`infinity` or `-infinity` becomes DuckDB's. A `char(n)` is read without the padding
PostgreSQL itself ignores, as its cast to text gives it. Ids and group keys of type
numeric are read as the text PostgreSQL prints for them.

Text that is not UTF-8 (SQLite stores whatever bytes it is given, and so does a
PostgreSQL database whose encoding is SQL_ASCII) is no text DuckDB can hold: the value
is made NULL and its row quarantined, naming the column.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pitsync.config import SourceConfig
from pitsync.connectors.extraction import (
    DIALECTS,
    SAMPLE_MARK,
    select_all,
    select_columns,
    sqlite_typed_select,
)
from pitsync.connectors.sources import NOT_A_CURSOR, UNTYPED, LowerBound, unmappable
from pitsync.errors import SourceError, first_line
from pitsync.interrupts import ctrl_c_ignored
from pitsync.modeling.staging import UNREADABLE
from pitsync.modeling.timestamps import TEXT_OF
from pitsync.paths import file_problem
from pitsync.quoting import escaped_bytes_sql, fold_name

log = logging.getLogger(__name__)

Result = TypeVar("Result")

MAX_DECIMAL_PRECISION = 38
POSTGRES_TYPE = b"POSTGRESQL:type"
POSTGRES_TYPMOD = b"POSTGRESQL:typmod"
POSTGRES_TYPE_NAME = b"ADBC:postgresql:typname"
# Types the driver hands over as plain integers that do not mean the value: money as
# cents, oid as a signed 32-bit number that wraps above 2^31.
MISREAD_POSTGRES_TYPES = {"money", "oid"}
# Types read as the text PostgreSQL prints for them. The driver hands a uuid over as 16
# bytes; ids, group keys and joins compare its canonical text. A char(n) would arrive
# with the padding PostgreSQL itself ignores: 'ab' and 'ab   ' are one value there.
TEXT_POSTGRES_TYPES = {"uuid", "bpchar"}
# Types read as that text when they hold ids or group keys (rule 7: ids are strings). An
# unconstrained numeric would arrive as a double, merging ids past 2^53 and printing
# 123 as 123.0.
KEY_TEXT_POSTGRES_TYPES = {"numeric"}
# Types PostgreSQL orders as their text. Another type that arrives as text (an enum,
# ordered by its labels' place in the type) compares with no text watermark.
ORDERED_TEXT_POSTGRES_TYPES = {"text", "varchar", "bpchar", "name", "char"}
ROUNDED_NUMERIC = (
    "is a numeric without a precision of at most 38 digits, read as a DOUBLE, which keeps "
    "about 15: loads whose cursors differ past those would tie; declare it numeric(p, s) "
    "with p up to 38 (in a view, if need be), or choose another column"
)
# Marks a column read as JSON: the driver misreads PostgreSQL composites (after the
# first NULL one in a batch, every later one of the batch arrives as NULL), and would
# wrap an infinite time inside one around to some 290,000 years BC. As JSON, each
# composite is the object PostgreSQL writes, every value kept.
AS_JSON = b"pitsync.as_json"
# How the driver names a type it cannot describe.
UNNAMED_TYPE = re.compile(r"unnamed<oid:(\d+)>")
# Time types whose infinities (and, for timestamps, latest years) the driver misreads.
TIME_POSTGRES_TYPES = {"timestamp", "timestamptz", "date"}


@dataclass(frozen=True)
class Driver:
    """The ADBC driver of one kind of database, and the pip extra that installs it."""

    module: str
    dialect: str
    extra: str | None  # None: installed with pitsync itself
    # The database's earliest date and time, as DuckDB writes it: a lookback reaching
    # further back reads every row. None: none earlier than DuckDB's.
    earliest_time: str | None = None


DRIVERS = {
    "postgres": Driver(
        "adbc_driver_postgresql.dbapi", DIALECTS["postgres"], None, "4714-11-24 (BC)"
    ),
    "sqlite": Driver("adbc_driver_sqlite.dbapi", DIALECTS["sqlite"], None),
    "snowflake": Driver("adbc_driver_snowflake.dbapi", DIALECTS["snowflake"], "snowflake"),
    "bigquery": Driver("adbc_driver_bigquery.dbapi", DIALECTS["bigquery"], "bigquery"),
}


class DatabaseSource:
    """A table source in a database server (or an SQLite file), read through ADBC."""

    def __init__(self, config: SourceConfig):
        self.name = config.name
        self.config = config
        self.driver = DRIVERS[config.type]
        self.uri = config.connection_uri()
        self.connection = self.connect()
        self.cursors: list[Any] = []  # a result stream lives only as long as its cursor
        self.spellings: dict[str, str] = {}  # a table name as configured: as the source spells it
        if config.type == "postgres":
            self.write_times_in_utc()

    def connect(self) -> Any:
        module = load_driver(self.config, self.driver)
        if self.config.type == "sqlite":
            return connect_sqlite(module, self.config)
        if self.config.type == "postgres":
            check_postgres_uri(self.config, self.uri or "")
        try:
            if self.config.type == "bigquery":
                return module.connect(db_kwargs={"uri": self.uri})
            if self.config.type == "postgres":
                return module.connect(with_connect_timeout(self.uri or ""))
            return module.connect(self.uri)
        except Exception as error:  # every driver raises its own DB-API error classes
            raise SourceError(
                f"source `{self.name}`: cannot connect to {self.config.type}: "
                f"{self.redact(first_line(error))}; check `uri` (or `uri_env`) in "
                f"[sources.{self.name}]",
                source=self.name,
            ) from None

    def with_unnamed_types_named(self, raw: pa.Schema) -> pa.Schema:
        """The schema with each type the driver could not describe (`unnamed<oid:N>`)
        named as PostgreSQL's catalog names it (an array `_item`, as the driver names
        one), and a composite among them read as JSON, as every
        composite is (the driver cannot describe one that holds a range, say)."""
        unnamed = {
            field.name: int(found.group(1))
            for field in raw
            if (found := UNNAMED_TYPE.fullmatch(postgres_type_of(field)))
        }
        if not unnamed:
            return raw
        oids = ", ".join(str(oid) for oid in set(unnamed.values()))  # digits only
        with self.connection.cursor() as cursor:
            # A composite, or an array of one: its type, or its items' type, is a row type.
            cursor.execute(
                "SELECT t.oid, t.typname, "
                "t.typtype = 'c' OR coalesce(e.typtype = 'c', false) "
                f"FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid IN ({oids})"
            )
            described = {oid: (name, composite) for oid, name, composite in cursor.fetchall()}
        fields = []
        for field in raw:
            if field.name not in unnamed:
                fields.append(field)
                continue
            name, composite = described.get(unnamed[field.name], (postgres_type_of(field), False))
            metadata = {**(field.metadata or {}), POSTGRES_TYPE: str(name).encode()}
            fields.append(
                read_as_json(field, metadata) if composite else field.with_metadata(metadata)
            )
        return pa.schema(fields)

    def write_times_in_utc(self) -> None:
        """PostgreSQL writes a zoned time in JSON at the session's offset: in UTC, the
        same composite reads as the same text whatever the server's setting."""
        with self.connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        self.connection.commit()  # a later failed read's rollback must not undo it

    def spelled(self, table: str) -> str:
        """The table as the database spells it: `plans` for `from = "PLANS"`, as the store
        compares names without case; a name that exists as written, or in two spellings,
        is kept as written."""
        if table not in self.spellings:
            names = self.table_names()
            alike = [name for name in names if fold_name(name) == fold_name(table)]
            self.spellings[table] = alike[0] if table not in names and len(alike) == 1 else table
        return self.spellings[table]

    def schema(self, table: str, text_columns: Sequence[str] = ()) -> pa.Schema:
        """The mapped columns; ids and group keys of some PostgreSQL types become text."""
        table = self.spelled(table)
        try:
            if self.config.type == "sqlite":
                raw = sqlite_declared_schema(self.connection, table, text_columns)
            else:
                with self.connection.cursor() as cursor:
                    # The schema of the query, not of the table: only a result carries
                    # PostgreSQL's numeric precision and scale.
                    query = select_all(self.driver.dialect, table, schema=self.config.schema)
                    raw = keeping_ctrl_c(cursor, lambda: cursor.adbc_execute_schema(query))
        except Exception as error:  # the driver's DB-API error classes
            self.roll_back()
            raise SourceError(self.unread_schema(table, error), source=self.name) from None
        if self.config.type == "postgres":
            raw = self.with_unnamed_types_named(raw)
        mapped = mappable_schema(raw, source=self.name, table=table)
        return keys_as_text(mapped, text_columns)

    def read(
        self,
        table: str,
        columns: list[str],
        text_columns: Sequence[str] = (),
        lower_bound: LowerBound | None = None,
    ) -> pa.RecordBatchReader:
        table = self.spelled(table)
        target = self.schema(table, text_columns)
        target = pa.schema([target.field(name) for name in columns])
        # Bound as Arrow: a date past the year 9999, or BC, has no Python value.
        bound_value = lower_bound.arrow_value(self.driver.earliest_time) if lower_bound else None
        bound = lower_bound.column if lower_bound and bound_value is not None else None
        checked_times: list[str] = []
        if self.config.type == "sqlite":
            sql = sqlite_typed_select(table, target, lower_bound_column=bound)
            target = target.append(pa.field(UNREADABLE, pa.string()))
        else:
            arrays, decimals = array_columns(target), decimal_columns(target)
            doubles = double_numeric_columns(target)
            times = time_columns(target)
            # Arrays of times are checked by PostgreSQL; single times as they arrive.
            time_arrays = {name: kind for name, kind in times.items() if kind.startswith("_")}
            as_text = read_as_text(target, text_columns)
            sql = select_columns(
                self.driver.dialect,
                table,
                columns,
                schema=self.config.schema,
                lower_bound_column=bound,
                read_as_text=as_text,
                read_as_json=json_columns(target),
                arrays=arrays,
                decimals=decimals,
                doubles=doubles,
                time_arrays=time_arrays,
                text_cursor=is_text_cursor(lower_bound, as_text),
            )
            if arrays or decimals or doubles or times or text_columns_of(target):
                target = target.append(pa.field(UNREADABLE, pa.string()))
            checked_times = [name for name in times if name not in time_arrays]
        parameters = None if bound_value is None else pa.record_batch([bound_value], ["bound"])
        log.debug("source %s: %s", self.name, sql)
        cursor = self.connection.cursor()
        self.cursors.append(cursor)
        try:
            keeping_ctrl_c(cursor, lambda: cursor.execute(sql, parameters))
            batches = cursor.fetch_record_batch()
        except Exception as error:
            raise self.read_failure(table, error) from None
        converted = self.converted(batches, target, table, checked_times)
        return pa.RecordBatchReader.from_batches(target, converted)

    def converted(
        self, batches: pa.RecordBatchReader, target: pa.Schema, table: str, times: list[str]
    ) -> Iterator[pa.RecordBatch]:
        """Each batch cast to the mapped types, its `times` unwrapped; a driver failure
        mid-stream names the table."""
        decoder = TextDecoder()
        try:
            for batch in batches:
                if SAMPLE_MARK in batch.schema.names:
                    batch = without_type_sample(batch)
                if times:
                    batch = with_times_unwrapped(batch, times)
                yield conform(with_text_checked(batch, decoder), target)
        except Exception as error:
            raise self.read_failure(table, error) from None
        finally:
            decoder.close()

    def read_failure(self, table: str, error: BaseException) -> SourceError:
        self.roll_back()  # the source's next table is read on the same connection
        return SourceError(
            f"source `{self.name}`: reading table `{table}` failed: "
            f"{self.redact(first_line(error))}",
            source=self.name,
        )

    def roll_back(self) -> None:
        """End the transaction a statement failed in: PostgreSQL refuses every later
        statement inside it, so the next table would look missing."""
        try:
            self.connection.rollback()
        except Exception:  # the driver's own error classes; the first error is what counts
            log.debug("source %s: the rollback failed", self.name, exc_info=True)

    def unread_schema(self, table: str, error: BaseException) -> str:
        """Why a table's columns could not be read: it is not there, or, when it is (a
        view over a table dropped since, a table the user may not read), the database's
        own reason."""
        names = self.table_names()
        if table not in names:
            return self.missing_table_message(table, names)
        return (
            f"source `{self.name}`: cannot read the columns of table `{table}`: "
            f"{self.redact(first_line(error))}"
        )

    def missing_table_message(self, table: str, names: list[str]) -> str:
        """`table` is none of the source's tables, `names` (`table_names`)."""
        where = f"schema `{self.config.schema}`" if self.config.schema else "the database"
        try:
            search_path = self.search_path
        except Exception:  # the driver's own error classes; the message goes on without it
            search_path = None
        if search_path is not None:
            schemas = ", ".join(search_path) or "none"
            where = f"the schemas of the search path ({schemas}; set `schema` for another)"
        alike = [name for name in names if fold_name(name) == fold_name(table)]
        if len(alike) > 1:
            spellings = " and ".join(f"`{name}`" for name in alike)
            return (
                f"source `{self.name}`: table `{table}` is ambiguous: {where} has {spellings}, "
                "which differ only in case; set `from` to the one to read, spelled exactly"
            )
        listed = ", ".join(names) if names else "(none)"
        return (
            f"source `{self.name}`: table `{table}` not found in {where}; tables are: {listed}; "
            "set `from` in the table's section when its name in the source differs"
        )

    def table_names(self) -> list[str]:
        """The tables the extraction query can name: those of `schema`, or without one,
        those a bare name reaches (PostgreSQL's search path), not every schema's."""
        try:
            objects = self.connection.adbc_get_objects(
                depth="tables", db_schema_filter=self.config.schema
            ).read_all()
            reachable = self.search_path
        except Exception:
            return []
        names: list[str] = []
        for catalog in objects.to_pylist():
            for schema in catalog.get("catalog_db_schemas") or []:
                if reachable is not None and schema["db_schema_name"] not in reachable:
                    continue
                names.extend(entry["table_name"] for entry in schema.get("db_schema_tables") or [])
        return sorted(set(names))

    @functools.cached_property
    def search_path(self) -> list[str] | None:
        """The schemas a bare table name is looked up in; None: any schema listed."""
        if self.config.type != "postgres" or self.config.schema:
            return None
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT unnest(current_schemas(false))")
            return [str(row[0]) for row in cursor.fetchall()]

    def redact(self, text: str) -> str:
        return redact(text, self.uri)

    def cancel(self) -> None:
        for cursor in self.cursors:
            cancel_quietly(cursor)

    def close(self) -> None:
        try:
            for cursor in self.cursors:
                cursor.close()
            self.connection.close()
        except Exception:  # closing after a failed read must not hide the first error
            log.debug("source %s: error while closing", self.name, exc_info=True)


# libpq waits for a server forever by default, and no signal reaches Python meanwhile: a
# server that takes the connection and never answers would hold a run, Ctrl-C and the
# scheduled job for good.
CONNECT_TIMEOUT_SECONDS = 10


URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")
FIRST_PARAMETER = re.compile(r"\s*([A-Za-z_]+)\s*=")


def check_postgres_uri(config: SourceConfig, uri: str) -> None:
    """Refuse a connection string libpq would misread, before the driver echoes a piece of
    it (it reads anything but a postgresql:// address as key=value pairs, and names the
    first `key` it does not know). Only the scheme is named: the rest may hold a password."""
    scheme = URI_SCHEME.match(uri)
    if scheme is not None and scheme.group(1) in POSTGRES_SCHEMES:
        return
    first = FIRST_PARAMETER.match(uri)
    if scheme is None and (not uri.strip() or (first and first.group(1) in LIBPQ_PARAMETERS)):
        return
    # libpq knows its schemes in lower case only.
    what = f" (it is a {scheme.group(1)}:// address)" if scheme else ""
    raise SourceError(
        f"source `{config.name}`: the connection string is neither a postgresql:// address "
        f"nor libpq's key=value pairs{what}; write it as "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or as host=HOST port=PORT "
        f"dbname=DATABASE user=USER); check `uri` (or `uri_env`) in [sources.{config.name}]",
        source=config.name,
    )


def with_connect_timeout(uri: str) -> str:
    """The PostgreSQL URI (or key=value string) with a connect timeout, unless it sets one."""
    if re.search(r"connect_timeout\s*=", uri, flags=re.IGNORECASE):
        return uri
    setting = f"connect_timeout={CONNECT_TIMEOUT_SECONDS}"
    if "://" not in uri:
        return f"{uri} {setting}"
    joiner = "" if uri.endswith(("?", "&")) else "&" if "?" in uri else "?"
    return f"{uri}{joiner}{setting}"


def load_driver(config: SourceConfig, driver: Driver) -> Any:
    try:
        return importlib.import_module(driver.module)
    except ImportError:
        how = (
            f"install pitsync's {driver.extra} extra (in a clone of pitsync: "
            f"pip install '.[{driver.extra}]')"
            if driver.extra
            else "install pitsync again (in a clone of pitsync: pip install .)"
        )
        raise SourceError(
            f"source `{config.name}`: the {config.type} driver ({driver.module}) is not "
            f"installed; {how}",
            source=config.name,
        ) from None


def keeping_ctrl_c(cursor: Any, call: Callable[[], Result]) -> Result:
    """Make a call of the driver that waits on the database in a thread of its own, so
    Ctrl-C stays pitsync's.

    On the main thread, the driver takes SIGINT for itself while the database works,
    cancels the statement, and reports a failed read: `sync` would go on to the next
    table, and the scheduled job would record a failure and never stop. Here the signal
    reaches pitsync's handler: the scheduled job's lets the statement run on; the default
    one raises KeyboardInterrupt, which cancels the statement.
    """
    outcome: list[Result] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the waiting thread
            failure.append(error)

    worker = threading.Thread(target=work, name="pitsync-source-statement", daemon=True)
    try:
        worker.start()
        worker.join()
    except KeyboardInterrupt:
        with ctrl_c_ignored():  # a second Ctrl-C would leave the query running on
            cancel_quietly(cursor)
            worker.join(CONNECT_TIMEOUT_SECONDS)  # a server that never answers is let go
        raise
    if failure:
        raise failure[0]
    return outcome[0]


def cancel_quietly(cursor: Any) -> None:
    """Ask the database to stop the cursor's query; one that has ended needs nothing."""
    try:
        cursor.adbc_cancel()
    except Exception:  # the driver's own error classes; the interrupt is what counts
        log.debug("the source query could not be cancelled", exc_info=True)


def connect_sqlite(module: Any, config: SourceConfig) -> Any:
    """The SQLite file, opened read-only, once it has answered as a database: SQLite
    opens any file, and says it is none only at the first query."""
    connection = module.connect(sqlite_read_only_uri(config))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM sqlite_master")
            cursor.fetchall()
    except Exception as error:  # the driver's DB-API error classes
        connection.close()
        raise SourceError(sqlite_refusal(config, first_line(error)), source=config.name) from None
    return connection


def sqlite_refusal(config: SourceConfig, error: str) -> str:
    """Why SQLite would not read the file, and what to do: a file of another kind, one
    another program holds locked, or one the system refuses."""
    reason = error.rpartition(": ")[2]
    where = f"check `path` in [sources.{config.name}]"
    if "not a database" in reason:
        return (
            f"source `{config.name}`: {config.path} is not an SQLite database ({reason}); {where}"
        )
    if "locked" in reason or "busy" in reason:
        return (
            f"source `{config.name}`: the SQLite file {config.path} is locked by another "
            f"program writing it ({reason}); run again when it is done"
        )
    return f"source `{config.name}`: cannot read the SQLite file {config.path} ({reason}); {where}"


def sqlite_read_only_uri(config: SourceConfig) -> str:
    """SQLite opens a missing file by creating it; a source must exist and stay unchanged.

    The path is percent-encoded: in a URI, SQLite reads `%41` as `A`, and a `?` or `#`
    would end the path, and the read-only mode with it."""
    path = config.path
    problem = "not found" if path is None else file_problem(path)
    if path is None or problem:
        raise SourceError(
            f"source `{config.name}`: SQLite file {path} {problem}; check `path` in "
            f"[sources.{config.name}]",
            source=config.name,
        )
    return f"file:{quote(str(path.resolve()))}?mode=ro"


# SQLite declares types loosely; its affinity rules read a declared type by the words in
# it. Dates and times have no affinity of their own and are kept as text (pitsync reads
# text times); BOOLEAN holds 0 and 1; NUMERIC and DECIMAL hold numbers.
SQLITE_AFFINITIES = (
    ("INT", pa.int64()),
    ("CHAR", pa.string()),
    ("CLOB", pa.string()),
    ("TEXT", pa.string()),
    ("BLOB", pa.binary()),
    ("REAL", pa.float64()),
    ("FLOA", pa.float64()),
    ("DOUB", pa.float64()),
    ("BOOL", pa.bool_()),
    ("DATE", pa.string()),
    ("TIME", pa.string()),
    ("NUM", pa.float64()),
    ("DEC", pa.float64()),
)


def sqlite_declared_schema(
    connection: Any, table: str, text_columns: Sequence[str] = ()
) -> pa.Schema:
    """The table's columns with the Arrow type of each declared type's affinity.

    The ADBC driver guesses result types from the first rows, so an empty table or a
    column that starts with NULLs would be guessed wrong; the declaration is the truth.
    Ids and group keys (`text_columns`) declared NUMERIC or DECIMAL are read as the text
    SQLite prints: such a column keeps whole numbers as integers, which as doubles would
    print 123 as 123.0 and merge ids past 2^53.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, type FROM pragma_table_info(?)", parameters=[table])
        declared = cursor.fetchall()
    if not declared:
        raise LookupError(table)
    return pa.schema(
        [
            pa.field(name, pa.string())
            if name in text_columns and keeps_integers(kind or "")
            else pa.field(name, sqlite_type(kind or ""), metadata=untyped(kind or ""))
            for name, kind in declared
        ]
    )


def untyped(declared: str) -> dict[bytes, bytes] | None:
    """The mark of a column declared without a type (a view's computed column too)."""
    return None if declared.strip() else {UNTYPED: b"1"}


def keeps_integers(declared: str) -> bool:
    """Whether a declared type has NUMERIC affinity, which stores whole numbers as such."""
    return sqlite_type(declared) == pa.float64() and not any(
        word in declared.upper() for word in ("REAL", "FLOA", "DOUB")
    )


def sqlite_type(declared: str) -> pa.DataType:
    upper = declared.upper()
    for word, arrow_type in SQLITE_AFFINITIES:
        if word in upper:
            return arrow_type
    # Any other name (JSON, UUID, none at all) says nothing of numbers: read as written,
    # SQLite's own CAST making text of whatever a row holds.
    return pa.string()


def without_type_sample(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Drop the typed sample row a SQLite read starts with, and its marker column."""
    kept = batch.filter(pc.is_null(batch.column(SAMPLE_MARK)))
    return kept.drop_columns([SAMPLE_MARK])


def mappable_schema(schema: pa.Schema, *, source: str, table: str) -> pa.Schema:
    """The schema with each column in a type DuckDB stores faithfully."""
    return pa.schema([mapped_field(field, source=source, table=table) for field in schema])


def mapped_field(field: pa.Field, *, source: str, table: str) -> pa.Field:
    metadata = field.metadata or {}
    postgres_type = postgres_type_of(field)
    if postgres_type and holds_composite(field.type):
        return read_as_json(field, metadata)
    if element_type(postgres_type) in MISREAD_POSTGRES_TYPES:
        raise unmappable(source, table, field.name, postgres_type)
    if element_type(postgres_type) in TEXT_POSTGRES_TYPES:
        # The type stays in the metadata: `read` casts by it, and modeling in PostgreSQL
        # knows the column is no collatable text.
        text = pa.string() if postgres_type in TEXT_POSTGRES_TYPES else pa.list_(pa.string())
        if postgres_type == "uuid":
            metadata = {**metadata, TEXT_OF: b"uuid"}
        return pa.field(field.name, text, field.nullable, metadata)
    if not isinstance(field.type, pa.BaseExtensionType):
        if holds_extension_type(field.type):
            raise unmappable(source, table, field.name, postgres_type or str(field.type))
        if postgres_type and is_text_ordered_otherwise(field.type, postgres_type):
            refusal = (
                f"is of type {postgres_type}, which PostgreSQL orders in its own way (an enum "
                "by its labels' place in the type), not as text; choose a timestamp, number "
                "or text column that grows with each load"
            )
            return field.with_metadata({**metadata, NOT_A_CURSOR: refusal.encode()})
        return field
    if field.type.extension_name == "arrow.json":
        return field
    database_type = (
        metadata.get(POSTGRES_TYPE) or metadata.get(POSTGRES_TYPE_NAME) or b""
    ).decode()
    database_type = database_type or str(field.type)
    if database_type == "numeric":
        kind = numeric_type(metadata)
        if pa.types.is_floating(kind):
            metadata = {**metadata, NOT_A_CURSOR: ROUNDED_NUMERIC.encode()}
        return pa.field(field.name, kind, field.nullable, metadata)
    raise unmappable(source, table, field.name, database_type)


def is_text_cursor(lower_bound: LowerBound | None, as_text: Mapping[str, str]) -> bool:
    """A cursor of text, whose collation the source could compare it by (a uuid has none)."""
    if lower_bound is None or lower_bound.type_name.upper() != "VARCHAR":
        return False
    return as_text.get(lower_bound.column) != "uuid"


def is_text_ordered_otherwise(kind: pa.DataType, postgres_type: str) -> bool:
    """A column read as text whose PostgreSQL type does not order as its text."""
    return pa.types.is_string(kind) and postgres_type not in ORDERED_TEXT_POSTGRES_TYPES


def holds_composite(kind: pa.DataType) -> bool:
    """Whether a type is, or holds at any depth, a struct: a PostgreSQL composite."""
    if pa.types.is_struct(kind):
        return True
    return any(holds_composite(kind.field(index).type) for index in range(kind.num_fields))


def read_as_json(field: pa.Field, metadata: dict[bytes, bytes]) -> pa.Field:
    """The column as JSON, marked so that the SELECT reads it with `to_jsonb`."""
    return pa.field(field.name, pa.json_(), field.nullable, {**metadata, AS_JSON: b"1"})


def json_columns(target: pa.Schema) -> list[str]:
    """The PostgreSQL columns read as JSON (composites, and arrays of them)."""
    return [field.name for field in target if (field.metadata or {}).get(AS_JSON)]


def element_type(postgres_type: str) -> str:
    """The type of an array's items (PostgreSQL names an array type `_item`), else itself."""
    return postgres_type.removeprefix("_")


def holds_extension_type(kind: pa.DataType) -> bool:
    """Whether a list, map or struct type holds, at any depth, a type DuckDB cannot read
    faithfully (the driver's opaque or uuid items)."""
    if isinstance(kind, pa.BaseExtensionType):
        return True
    return any(holds_extension_type(kind.field(index).type) for index in range(kind.num_fields))


def postgres_type_of(field: pa.Field) -> str:
    """The PostgreSQL type name the driver reports for a column; empty for other databases."""
    return ((field.metadata or {}).get(POSTGRES_TYPE) or b"").decode()


def array_columns(target: pa.Schema) -> list[str]:
    """The PostgreSQL array columns (the driver names an array type `_item`)."""
    return [field.name for field in target if postgres_type_of(field).startswith("_")]


def decimal_columns(target: pa.Schema) -> list[str]:
    """The PostgreSQL numeric columns read as DECIMAL, which cannot hold a NaN."""
    return [
        field.name
        for field in target
        if postgres_type_of(field) == "numeric" and pa.types.is_decimal(field.type)
    ]


def double_numeric_columns(target: pa.Schema) -> list[str]:
    """The PostgreSQL numeric columns read as DOUBLE, which ends where a numeric goes on."""
    return [
        field.name
        for field in target
        if postgres_type_of(field) == "numeric" and pa.types.is_floating(field.type)
    ]


def time_columns(target: pa.Schema) -> dict[str, str]:
    """The PostgreSQL time columns (and arrays of times), each with its type."""
    return {
        field.name: postgres_type_of(field)
        for field in target
        if element_type(postgres_type_of(field)) in TIME_POSTGRES_TYPES
    }


def keys_as_text(schema: pa.Schema, text_columns: Sequence[str]) -> pa.Schema:
    """The schema with the id and group key columns of `KEY_TEXT_POSTGRES_TYPES` as text."""
    return pa.schema(
        [
            pa.field(field.name, pa.string(), field.nullable, field.metadata)
            if field.name in text_columns and postgres_type_of(field) in KEY_TEXT_POSTGRES_TYPES
            else field
            for field in schema
        ]
    )


def read_as_text(target: pa.Schema, text_columns: Sequence[str] = ()) -> dict[str, str]:
    """The columns the SELECT casts to text (or arrays of text), each with its type in the
    source: uuids and char(n) everywhere, and ids and group keys of
    `KEY_TEXT_POSTGRES_TYPES`."""
    return {
        field.name: postgres_type_of(field)
        for field in target
        if element_type(postgres_type_of(field)) in TEXT_POSTGRES_TYPES
        or (field.name in text_columns and postgres_type_of(field) in KEY_TEXT_POSTGRES_TYPES)
    }


def numeric_type(metadata: dict[bytes, bytes]) -> pa.DataType:
    """DECIMAL(p, s) for a declared precision that fits, else DOUBLE."""
    typmod = int(metadata.get(POSTGRES_TYPMOD, b"-1") or -1)
    if typmod < 4:
        return pa.float64()
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if scale >= 0x8000:
        scale -= 0x10000  # PostgreSQL 15 allows a negative scale
    if precision > MAX_DECIMAL_PRECISION or not 0 <= scale <= precision:
        return pa.float64()
    return pa.decimal128(precision, scale)


@dataclass(frozen=True)
class TimeCodes:
    """How one Arrow time type's integers stand for PostgreSQL's and DuckDB's limits.

    The driver moves PostgreSQL's times from its epoch (2000) to Arrow's (1970) without
    an overflow check, so `infinity`, `-infinity` and the last years PostgreSQL can hold
    wrap around to before PostgreSQL's earliest time (4713 BC), where no true value lies.
    """

    storage: pa.DataType
    earliest: int  # PostgreSQL's earliest time
    wrapped_infinity: int
    wrapped_minus_infinity: int
    infinity: int  # DuckDB's infinity; its -infinity is the negation


INT64_MIN, INT32_MIN = -(2**63), -(2**31)
TIME_CODES = {
    "us": TimeCodes(
        pa.int64(),
        earliest=-210_866_803_200_000_000,
        wrapped_infinity=INT64_MIN + 946_684_799_999_999,
        wrapped_minus_infinity=INT64_MIN + 946_684_800_000_000,
        infinity=2**63 - 1,
    ),
    "day": TimeCodes(
        pa.int32(),
        earliest=-2_440_588,
        wrapped_infinity=INT32_MIN + 10_956,
        wrapped_minus_infinity=INT32_MIN + 10_957,
        infinity=2**31 - 1,
    ),
}


def with_times_unwrapped(batch: pa.RecordBatch, times: list[str]) -> pa.RecordBatch:
    """The batch with PostgreSQL's infinities as DuckDB's, and an `UNREADABLE` reason for
    a row holding any other time the driver wrapped around (years past 294,246).

    `valid_until = 'infinity'` is a plain PostgreSQL way to say "no end"; it is kept as
    an infinity, which sorts and compares in DuckDB as it does in PostgreSQL. A reason
    PostgreSQL gave (see `unreadable_column`) stands.
    """
    found = pa.nulls(len(batch), pa.string())
    for name in reversed(times):  # the first column's reason is the one kept
        column = batch.column(name)
        unit = "day" if pa.types.is_date32(column.type) else getattr(column.type, "unit", None)
        codes = TIME_CODES.get(unit or "")
        if codes is None:
            continue
        values = column.view(codes.storage)
        infinite = pc.equal(values, codes.wrapped_infinity)
        minus_infinite = pc.equal(values, codes.wrapped_minus_infinity)
        unwrapped = pc.if_else(
            infinite,
            pa.scalar(codes.infinity, codes.storage),
            pc.if_else(minus_infinite, pa.scalar(-codes.infinity, codes.storage), values),
        )
        batch = batch.set_column(
            batch.schema.get_field_index(name),
            batch.schema.field(name),
            unwrapped.view(column.type),
        )
        wrapped = pc.and_(
            pc.less(values, codes.earliest), pc.invert(pc.or_(infinite, minus_infinite))
        )
        wrapped = pc.fill_null(wrapped, False)  # NULL is no time
        reason = pa.scalar(f"out-of-range time in column {name}")
        found = pc.if_else(wrapped, reason, found)
    if UNREADABLE not in batch.schema.names:
        return batch.append_column(UNREADABLE, found)
    index = batch.schema.get_field_index(UNREADABLE)
    given = batch.column(index).cast(pa.string())
    return batch.set_column(index, UNREADABLE, pc.coalesce(given, found))


def text_columns_of(schema: pa.Schema) -> list[str]:
    return [
        field.name
        for field in schema
        if pa.types.is_string(field.type) and field.name != UNREADABLE
    ]


class TextDecoder:
    """Tells text that is not UTF-8 apart, row by row, in DuckDB: only for a column Arrow
    found not UTF-8 as a whole. Its engine is made when first needed, once per read."""

    def __init__(self) -> None:
        self.engine: duckdb.DuckDBPyConnection | None = None

    def decoded(self, column: pa.Array, *, escaped: bool = False) -> pa.Array:
        """Each value as text, or NULL where its bytes are not UTF-8; `escaped`: such a
        value with its bytes outside printable ASCII written as DuckDB writes a blob's
        (`\\xFF`)."""
        if self.engine is None:
            self.engine = duckdb.connect()
        text = "try(decode(raw))"
        if escaped:
            # Quotes are written back as themselves: the reason quotes the value.
            text = f"coalesce({text}, {escaped_bytes_sql('raw')})"
        raw = pa.table({"raw": column.view(pa.binary())})
        decoded = self.engine.from_arrow(raw).select(f"{text} AS text").to_arrow_table()
        return decoded.column("text").combine_chunks().cast(pa.string())

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def with_text_checked(batch: pa.RecordBatch, decoder: TextDecoder) -> pa.RecordBatch:
    """The batch with text that is not UTF-8 made NULL, its row given an `UNREADABLE`
    reason naming the column (the first such column's, unless a reason stands already).

    The driver hands text over as the bytes the database holds; a reason that quotes
    such a value (SQLite's, of a value of another type) has those bytes escaped.
    """
    found = pa.nulls(len(batch), pa.string())
    for name in reversed(text_columns_of(batch.schema)):
        column = batch.column(name)
        if is_utf8(column):
            continue
        decoded = decoder.decoded(column)
        batch = batch.set_column(batch.schema.get_field_index(name), name, decoded)
        undecodable = pc.and_(pc.is_null(decoded), pc.is_valid(column))
        found = pc.if_else(
            undecodable, pa.scalar(f"text that is not UTF-8 in column {name}"), found
        )
    if UNREADABLE not in batch.schema.names:
        return batch.append_column(UNREADABLE, found)
    index = batch.schema.get_field_index(UNREADABLE)
    given = batch.column(index).cast(pa.string())
    if not is_utf8(given):
        given = decoder.decoded(given, escaped=True)
    return batch.set_column(index, UNREADABLE, pc.coalesce(given, found))


def is_utf8(column: pa.Array) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Cast a batch's columns to the mapped types (extension columns via their storage).

    A numeric's NaN, which its row's `UNREADABLE` reason already names, becomes NULL:
    no DECIMAL holds it, and the row is quarantined.
    """
    columns = []
    for column, field in zip(batch.columns, target, strict=True):
        if isinstance(column.type, pa.BaseExtensionType) and column.type != field.type:
            column = column.storage
        if pa.types.is_decimal(field.type) and pa.types.is_string(column.type):
            column = pc.if_else(pc.equal(column, "nan"), None, column)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=target)


def redact(text: str, uri: str | None) -> str:
    """`text` with the URI and its password, wherever they appear, replaced by ***.

    The password is found by pattern, not by a URL parser, which refuses some URIs (an
    unclosed `[`) that the driver still echoes; its percent-decoded form is hidden too. A
    password holding an unescaped `/`, `&` or `@` is cut there by the driver's parser,
    which may echo one piece alone (as a port, say), so each piece is hidden as well.
    """
    if not uri:
        return text
    passwords = passwords_in(uri)
    passwords |= {unquote(password) for password in passwords}
    pieces = {piece for password in passwords for piece in URI_DELIMITERS.split(password)}
    secrets = {uri, *passwords, *pieces}
    # A single character is no secret, and hiding it would garble the message.
    for secret in sorted((secret for secret in secrets if len(secret) > 1), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


URI_DELIMITERS = re.compile(r"[/?#&;@=:%\s]+")


def passwords_in(uri: str) -> set[str]:
    """Every text of `uri` that may be its password, read as generously as any parser."""
    found = set(re.findall(r"://[^/@:]*:([^@]*)@", uri))
    # The user information reaches the last `@` before the query.
    authority = uri.partition("://")[2].partition("?")[0]
    user, _, password = authority.rpartition("@")[0].partition(":")
    if password:
        found.add(password)
    found.update(re.findall(r"password\s*=\s*'([^']*)'", uri, flags=re.IGNORECASE))
    # A password runs on over blanks, `&` and `;` until the next of the driver's own
    # parameters (`dbname=`): the driver's parser cuts it at any `name=`, and echoes the
    # rest, or a name it does not know; its own next parameter is no secret.
    found.update(
        value.strip() for value in re.findall(PASSWORD_TO_NEXT_PARAMETER, uri, flags=re.IGNORECASE)
    )
    return found


# libpq's connection parameters, which end a password written before them.
LIBPQ_PARAMETERS = (  # noqa: SIM905 (a list of words, read as one)
    "host hostaddr port dbname user password passfile require_auth channel_binding "
    "connect_timeout client_encoding options application_name fallback_application_name "
    "keepalives keepalives_idle keepalives_interval keepalives_count tcp_user_timeout "
    "replication gssencmode sslmode sslnegotiation requiressl sslcompression sslcert "
    "sslkey sslkeylogfile sslpassword sslcertmode sslrootcert sslcrl sslcrldir sslsni "
    "requirepeer ssl_min_protocol_version ssl_max_protocol_version min_protocol_version "
    "max_protocol_version krbsrvname gsslib gssdelegation service target_session_attrs "
    "load_balance_hosts"
).split()
PASSWORD_TO_NEXT_PARAMETER = (
    r"password\s*=\s*((?:[^\s&;]|[\s&;]+(?!(?:" + "|".join(LIBPQ_PARAMETERS) + r")\s*=))+)"
)
