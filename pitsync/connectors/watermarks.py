"""Watermarks: how far an append run has read a table, kept in the store with its data.

The watermark is the greatest cursor value a committed run read, stored as text with its
DuckDB type and turned back into a value of that type before it is compared, so instants
compare as instants and numbers as numbers, never as text. It is written in the run's
transaction: it moves only when the run commits.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from pitsync.config import TableConfig
from pitsync.connectors.sources import LowerBound
from pitsync.errors import ConfigError
from pitsync.modeling.events import stored_events_table
from pitsync.modeling.schema_drift import column_types
from pitsync.modeling.staging import STAGED, UNREADABLE, one_row, table_exists
from pitsync.modeling.timestamps import text_of
from pitsync.quoting import fold_name, quote_identifier
from pitsync.store import WATERMARKS

log = logging.getLogger(__name__)

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_TYPE_PREFIXES = ("TIMESTAMP", "DATE")  # TIMESTAMP_NS, TIMESTAMP WITH TIME ZONE...
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Watermark:
    """The greatest cursor value read so far, as text, and the DuckDB type it has."""

    value: str
    type_name: str

    def lower_bound(self, con: duckdb.DuckDBPyConnection, table: TableConfig) -> LowerBound | None:
        """Where the next run reads from: the watermark, less the lookback, as a value of
        the cursor's type; None: the run reads every row.

        It is worked out in DuckDB and handed on as DuckDB's text of it, never as a Python
        value: Python's dates end at the year 9999, and a cursor may lie past it.
        """
        expression = self.bound_expression(table)
        if expression is None:
            return None  # a lookback longer than any span of time DuckDB holds
        bound, parameters = expression
        try:
            row = one_row(
                con,
                f"SELECT CAST(bound AS VARCHAR), typeof(bound) FROM (SELECT {bound} AS bound)",
                parameters,
            )
        except (duckdb.OutOfRangeException, duckdb.ConversionException):
            if not table.lookback_seconds:
                raise
            return None  # a lookback reaching past DuckDB's earliest time reads every row
        if not row or row[0] is None:
            return None
        return LowerBound(table.cursor or "", str(row[0]), str(row[1]))

    def bound_expression(self, table: TableConfig) -> tuple[str, list[Any]] | None:
        """The lower bound as DuckDB SQL, with its parameters; None when the lookback
        reaches further back than any time DuckDB holds."""
        value = f"CAST(? AS {self.type_name})"
        kind = self.type_name.upper()
        if kind in ("FLOAT", "DOUBLE"):
            # A cursor read as a double (SQLite's NUMERIC) may hold integers a double
            # rounds up; the source compares them exactly, and would leave out the rows
            # at the boundary. One step below reads them again, which changes nothing.
            below = f"nextafter(CAST({value} AS DOUBLE), CAST('-inf' AS DOUBLE))"
            below = f"CASE WHEN isfinite({value}) THEN {below} ELSE {value} END"
            return below, [self.value] * 3
        if not table.lookback_seconds:
            return value, [self.value]
        if not kind.startswith(TIME_TYPE_PREFIXES):
            raise ConfigError(
                f"table `{table.name}`: `lookback` needs a time cursor, and `{table.cursor}` "
                f"holds {self.type_name}; remove lookback",
                key="lookback",
                table=table.name,
            )
        return behind(value, self.value, kind, table.lookback_seconds)


def behind(value: str, text: str, kind: str, seconds: int) -> tuple[str, list[Any]] | None:
    """`value` (SQL of a time of DuckDB type `kind`, read from `text`) less `seconds`;
    None when no time DuckDB holds lies that far back."""
    if kind == "DATE":
        # A date stands for the start of its day, so a day lies inside the lookback only
        # whole: the bound stays a date, and the source compares dates with a date.
        days = seconds // SECONDS_PER_DAY
        return (f"{value} - CAST(? AS INTEGER)", [text, days]) if days < 2**31 else None
    microseconds = seconds * 1_000_000
    if microseconds >= 2**63:
        return None
    return f"{value} - to_microseconds(CAST(? AS BIGINT))", [text, microseconds]


def watermark_row(con: duckdb.DuckDBPyConnection, table: TableConfig) -> tuple | None:
    """The store's (value, type name, cursor column, what it was read from) for the
    table, if it has one."""
    return one_row(
        con,
        f"SELECT value, type_name, cursor_column, read_from FROM {WATERMARKS} WHERE table_name = ?",
        [table.name],
    )


def stored_watermark(con: duckdb.DuckDBPyConnection, table: TableConfig) -> str | None:
    """The watermark the store holds for the table, as text, whatever its cursor now."""
    row = watermark_row(con, table)
    return str(row[0]) if row else None


def read_watermark(
    con: duckdb.DuckDBPyConnection, table: TableConfig, cursor: pa.Field
) -> Watermark | None:
    """The table's watermark, if it is one of its cursor as the source now types it.

    A watermark of another column (the cursor was changed), or of a type the cursor's
    values can no longer be compared with (numbers become text, say), says nothing of
    which rows are new: the run reads every row, which an append run may always do, as a
    key's rows read again as stored are no change, and the watermark starts again.
    """
    row = watermark_row(con, table)
    if not row:
        if table.kind == "events" and table_exists(con, stored_events_table(table.name)):
            # A full run leaves no watermark (`forget_watermark`), nor does a run that
            # read no cursor value.
            log.info(
                "table %s: its events are stored, but no watermark (its last run was full, "
                "or read no cursor value); this run reads every row, and the watermark "
                "starts again",
                table.name,
            )
        return None
    watermark, column = Watermark(str(row[0]), str(row[1])), str(row[2])
    # The same column, spelled in another case, is the same cursor.
    if fold_name(column) != fold_name(table.cursor or ""):
        log.warning(
            "table %s: the cursor is `%s` now, no longer `%s`; this run reads every row, "
            "and the watermark starts again",
            table.name,
            table.cursor,
            column,
        )
        return None
    if row[3] is not None and row[3] != table.read_from:  # a store from before: not kept
        log.warning(
            "table %s: it reads %s now, no longer %s; this run reads every row, and the "
            "watermark starts again (rows stored from the other table stay: a full run "
            "drops them)",
            table.name,
            table.read_from,
            row[3],
        )
        return None
    if not compares_with(cursor, watermark):
        log.warning(
            "table %s: cursor `%s` holds %s now, which cannot be compared with its "
            "watermark %s (%s); this run reads every row, and the watermark starts again",
            table.name,
            column,
            text_of(cursor) or cursor.type,
            watermark.value,
            watermark.type_name,
        )
        return None
    return watermark


def compares_with(cursor: pa.Field, watermark: Watermark) -> bool:
    """Whether the source can compare the cursor with the watermark: values of one kind,
    and for a uuid read as text, a watermark that is a uuid (a text column that turned
    into a uuid keeps one that is not)."""
    if cursor_kind(cursor.type) != stored_kind(watermark.type_name):
        return False
    if (text_of(cursor) or "").lower() != "uuid":
        return True
    return UUID_TEXT.fullmatch(watermark.value) is not None


# The kinds of value a cursor may hold: each keeps a watermark of the same kind.
CURSOR_KINDS = {"date", "naive time", "zoned time", "number", "text"}


def cursor_kind(arrow_type: pa.DataType) -> str:
    """Which values a source's cursor type holds: dates, naive or zoned times, numbers,
    text, or another kind. Only a watermark of the same kind compares without a shift (a
    naive time is read in the table's zone) or a loss (a time cut to its date)."""
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "zoned time" if arrow_type.tz else "naive time"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "number"
    if pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    return "text" if pa.types.is_string_view(arrow_type) else str(arrow_type)


def stored_kind(type_name: str) -> str:
    """The same, for the DuckDB type a watermark was stored with."""
    upper = type_name.upper()
    if upper == "DATE":
        return "date"
    if upper.startswith("TIMESTAMP WITH TIME ZONE") or upper == "TIMESTAMPTZ_NS":
        return "zoned time"
    if upper.startswith("TIMESTAMP"):
        return "naive time"
    if upper in NUMBER_TYPES or upper.startswith("DECIMAL"):
        return "number"
    return "text" if upper == "VARCHAR" else type_name


NUMBER_TYPES = {
    *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"),
    *("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"),
}


def forget_watermark(con: duckdb.DuckDBPyConnection, table: TableConfig) -> None:
    """The next append run reads every row, as the first does."""
    con.execute(f"DELETE FROM {WATERMARKS} WHERE table_name = ?", [table.name])


def advance_watermark(
    con: duckdb.DuckDBPyConnection, table: TableConfig, before: Watermark | None
) -> Watermark | None:
    """The greatest cursor value of this run's rows, or the old watermark if none came.

    Only finite values count. A NaN or an infinite time sorts above every value, so a
    watermark there would leave every later row unread; such rows are read again by each
    run instead, as the greatest values are. So are rows whose source marked a value
    unreadable: their cursor may be one (a time past the year 294,246 that the driver
    wrapped around to some 290,000 years BC, below which no bound can reach).
    """
    cursor = quote_identifier(table.cursor or "")
    staged = column_types(con, "main", STAGED, temporary=True)
    counted = []
    cursor_type = staged.get(table.cursor or "", "")
    if has_infinities(cursor_type):
        counted.append(f"isfinite({finite_testable(cursor, cursor_type)})")
    if UNREADABLE in staged:
        counted.append(f"{UNREADABLE} IS NULL")
    where = f" WHERE {' AND '.join(counted)}" if counted else ""
    row = one_row(
        con, f"SELECT CAST(max({cursor}) AS VARCHAR), typeof(max({cursor})) FROM {STAGED}{where}"
    )
    after = before
    if row and row[0] is not None:
        read = Watermark(str(row[0]), str(row[1]))
        if read.type_name == "VARCHAR":
            warn_of_values_as_text(con, table)
        # Rows read again by the lookback may all lie below the old watermark.
        if before is None or not lies_below(con, read, before):
            after = read
    if after is not None:
        # Written even when it stays: a store from before kept no `read_from` with it.
        con.execute(
            f"INSERT OR REPLACE INTO {WATERMARKS} (table_name, cursor_column, value, "
            "type_name, read_from) VALUES (?, ?, ?, ?, ?)",
            [table.name, table.cursor, after.value, after.type_name, table.read_from],
        )
    return after


def lies_below(con: duckdb.DuckDBPyConnection, value: Watermark, other: Watermark) -> bool:
    row = one_row(
        con,
        f"SELECT CAST(? AS {value.type_name}) < CAST(? AS {other.type_name})",
        [value.value, other.value],
    )
    return bool(row and row[0])


def warn_of_values_as_text(con: duckdb.DuckDBPyConnection, table: TableConfig) -> None:
    """A text cursor is compared as text: say so when its values are times or numbers,
    which then sort apart from their order (`10` before `9`)."""
    cursor = quote_identifier(table.cursor or "")
    if holds_as_text(con, cursor, "TIMESTAMPTZ"):
        log.warning(
            "table %s: cursor `%s` holds times written as text, and text is compared as "
            "text: a time written another way (`2024-05-01 11:00` beside `2024-05-01T10:00`, "
            "or with another offset) sorts apart from its instant, and a row may never be "
            "read; make the cursor a timestamp column (cast it in a view), or write every "
            "value in one format and offset",
            table.name,
            table.cursor,
        )
    elif holds_as_text(con, cursor, "DOUBLE"):
        log.warning(
            "table %s: cursor `%s` holds numbers written as text, and text is compared as "
            "text: `10` sorts before `9`, so a row may never be read; make the cursor a "
            "number column (cast it in a view; in a CSV file, a quoted empty value makes a "
            "column text)",
            table.name,
            table.cursor,
        )


def holds_as_text(con: duckdb.DuckDBPyConnection, cursor: str, kind: str) -> bool:
    """Whether every non-empty cursor value of this run's rows (a quoted column of text)
    reads as a value of DuckDB type `kind`."""
    row = one_row(
        con,
        f"SELECT count(nullif({cursor}, '')) > 0 AND count(nullif({cursor}, '')) = "
        f"count(TRY_CAST(nullif({cursor}, '') AS {kind})) FROM {STAGED}",
    )
    return bool(row and row[0])


def finite_testable(column: str, type_name: str) -> str:
    """The column in a type `isfinite` takes: DuckDB has none for TIMESTAMPTZ_NS, whose
    infinities stay infinities as TIMESTAMP_NS (the session is in UTC)."""
    return f"CAST({column} AS TIMESTAMP_NS)" if type_name.upper() == "TIMESTAMPTZ_NS" else column


def has_infinities(type_name: str) -> bool:
    """Whether a column of this DuckDB type may hold NaN or infinite values: floats and
    times."""
    kind = type_name.upper()
    return kind in ("FLOAT", "DOUBLE") or kind.startswith(TIME_TYPE_PREFIXES)
