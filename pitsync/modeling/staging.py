"""Staged rows: a run's source rows with their id and instant read, and bad rows set aside.

Staging is the one place a run's rows are materialised. Both history and events tables
stage the same way: each source row gets its derived key columns (prefixed `__`), a
reason when it cannot be used, and then the bad rows go to quarantine with that reason
(DESIGN rule 8). Everything else reads `staged` with `reason IS NULL`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from pitsync.config import INTERNAL_PREFIX, TableConfig
from pitsync.errors import ConfigError
from pitsync.quoting import fold_name, quote_identifier, quote_string, unquote_identifier
from pitsync.store import QUARANTINE

STAGED = "__pitsync_staged"
SOURCE_ROWS = "__pitsync_source_rows"  # the name the run's Arrow stream is registered under
REASON = "__pitsync_reason"
# A column a source may add to its rows: why the row holds a value that cannot be stored
# as it is (NULL when it can). Such a row is quarantined with that reason.
UNREADABLE = "__pitsync_unreadable"


@dataclass(frozen=True)
class DerivedColumn:
    """A column computed from the source row, and what makes its row unusable."""

    name: str
    sql: str


@dataclass(frozen=True)
class Rejection:
    """One reason a row is quarantined: a SQL condition over the derived columns.

    The reason is a fixed text, or with `reason_sql` the text a SQL expression gives.
    """

    condition: str
    reason: str
    reason_sql: str | None = None


def refuse_row_id_column(table: TableConfig, stored: list[str]) -> None:
    """Append and mirror runs find a stored row again by DuckDB's `rowid`, which a stored
    column of that name (in any case) hides: the run would delete other entities' rows.
    A full run replaces the whole table and never looks a row up."""
    if table.mode == "full":
        return
    for name in stored:
        if fold_name(name) == "rowid":
            raise ConfigError(
                f"table `{table.name}`: source column `{name}` would hide the row id by which "
                f"{table.mode} runs find stored rows; rename it in the source or a view, or "
                'sync the table with mode = "full"',
                table=table.name,
            )


def check_key_names(
    table: TableConfig, keys: dict[str, str | None], reserved: tuple[str, ...]
) -> None:
    """Key columns the store keeps under their own names (an id column, a tie-breaker)
    must not take one it uses for another column either, in any case."""
    for key, name in keys.items():
        if name is not None:
            remedy = "rename it in a view of the source"
            refuse_reserved(table, key, name, reserved, remedy, key=key)


def refuse_reserved(
    table: TableConfig,
    named: str,
    name: str,
    reserved: tuple[str, ...],
    remedy: str,
    *,
    key: str | None = None,
) -> None:
    """Refuse a column (`named`: what names it, a setting `key` or the source) taking a
    reserved name, in any case."""
    if fold_name(name) in (fold_name(column) for column in reserved):
        raise ConfigError(
            f"table `{table.name}`: {named} `{name}` has a name the stored relation reserves "
            f"({', '.join(reserved)}, in any case); {remedy}",
            key=key,
            table=table.name,
        )


def check_column_names(
    table: TableConfig, properties: list[str], reserved: tuple[str, ...]
) -> None:
    """Property columns must not take a name the stored relation already uses.

    DuckDB compares names without case, so `End_Time` collides with `end_time` as much as
    `end_time` does; the check is case-insensitive for the same reason.
    """
    where = f"table `{table.name}`"
    seen: dict[str, str] = {}
    for name in properties:
        folded = fold_name(name)
        if folded.startswith(INTERNAL_PREFIX):
            raise ConfigError(
                f"{where}: source column `{name}` starts with `{INTERNAL_PREFIX}`, which pitsync "
                "keeps for its own columns; rename it in the source or a view",
                table=table.name,
            )
        remedy = "rename it in the source or a view"
        refuse_reserved(table, "source column", name, reserved, remedy)
        if folded in seen:
            raise ConfigError(
                f"{where}: source columns `{seen[folded]}` and `{name}` differ only in case, "
                "which the store cannot tell apart; rename one in the source or a view",
                table=table.name,
            )
        seen[folded] = name


def stage_rows(
    con: duckdb.DuckDBPyConnection, derived: list[DerivedColumn], rejections: list[Rejection]
) -> None:
    """Materialise the run's source rows once, with derived columns and a reject reason."""
    derived_sql = ", ".join(f"{column.sql} AS {column.name}" for column in derived)
    reason_sql = reason_case(source_rejections(con) + rejections)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGED} AS "
        f"SELECT *, {reason_sql} AS {REASON} FROM ("
        f"SELECT {derived_sql}, src.* FROM {SOURCE_ROWS} AS src)"
    )


def source_rejections(con: duckdb.DuckDBPyConnection) -> list[Rejection]:
    """Rows a source marked as holding a value that cannot be stored, with its reason."""
    # Describing the registered stream reads its schema, not its rows.
    names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {SOURCE_ROWS}").fetchall()]
    if UNREADABLE not in names:
        return []
    return [Rejection(f"{UNREADABLE} IS NOT NULL", "unreadable value", reason_sql=UNREADABLE)]


def reason_case(rejections: list[Rejection]) -> str:
    """The first rejection that applies, as a CASE expression (NULL for a good row)."""
    branches = " ".join(
        f"WHEN {rejection.condition} THEN {rejection.reason_sql or quote_string(rejection.reason)}"
        for rejection in rejections
    )
    return f"CASE {branches} END"


def quarantine_rows(
    con: duckdb.DuckDBPyConnection, *, table: str, run_id: int, source_columns: list[str]
) -> int:
    """Copy rejected rows, as the source had them, into the quarantine; return how many."""
    rejected = count(con, f"SELECT count(*) FROM {STAGED} WHERE {REASON} IS NOT NULL")
    if rejected:  # the row's JSON is one long expression for a wide table: built only if used
        con.execute(
            f"INSERT INTO {QUARANTINE} SELECT ?, ?, {REASON}, {json_object_sql(source_columns)} "
            f"FROM {STAGED} WHERE {REASON} IS NOT NULL",
            [run_id, table],
        )
    return rejected


def json_object_sql(columns: list[str], *, alias: str = "", exact: bool = True) -> str:
    """A JSON object of the named columns, keyed by their names (NULLs kept as null).

    Not `exact`: every value through DuckDB's JSON functions, the form rows applied by
    earlier runs are known by (see `json_object_text_sql` for what that loses).
    """
    if exact:
        return f"CAST({json_object_text_sql(columns, alias=alias)} AS JSON)"
    prefix = f"{alias}." if alias else ""
    fields = ", ".join(
        f"{quote_identifier(name)} := {prefix}{quote_identifier(name)}" for name in columns
    )
    return f"to_json(struct_pack({fields}))" if columns else "CAST('{}' AS JSON)"


def json_object_text_sql(columns: list[str], *, alias: str = "") -> str:
    """The text of a JSON object of the named columns, keyed by their names.

    A JSON column's text goes in as it is stored: DuckDB's JSON functions would read its
    numbers as doubles (12345678901234567890.5 as 12345678901234567000.0, 1.10 as 1.1).
    Which columns are JSON is asked of DuckDB (`typeof`, decided once per column), so any
    relation will do.
    """
    if not columns:
        return "'{}'"
    prefix = f"{alias}." if alias else ""
    members = []
    for position, name in enumerate(columns):
        key = quote_string(("," if position else "") + json.dumps(name, ensure_ascii=False) + ":")
        value = json_text_sql(f"{prefix}{quote_identifier(name)}")
        members.append(f"{key}, coalesce({value}, 'null')")
    # One call of many arguments: chained `||` would pass DuckDB's expression depth limit
    # at a few hundred columns.
    return f"concat('{{', {', '.join(members)}, '}}')"


def json_text_sql(column: str) -> str:
    """A column's value as JSON text: a JSON column's text as it is stored (DuckDB's JSON
    functions would read its numbers as doubles), any other value through to_json."""
    return (
        f"CASE WHEN typeof({column}) = 'JSON' THEN CAST({column} AS VARCHAR) "
        f"ELSE CAST(to_json({column}) AS VARCHAR) END"
    )


def count(con: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> int:
    """The single integer a counting query returns."""
    row = one_row(con, sql, parameters)
    return int(row[0]) if row and row[0] is not None else 0


def one_row(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None
) -> tuple | None:
    """The first row a query returns, if any.

    Every row is fetched, so no result stays open: DuckDB refuses to register or
    unregister an Arrow stream on a connection that still has one.
    """
    rows = con.execute(sql, parameters or []).fetchall()
    return rows[0] if rows else None


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether the store holds the table `schema.name` (the name quoted or not)."""
    schema, _, name = qualified.partition(".")
    found = count(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [schema, unquote_identifier(name)],
    )
    return bool(found)
