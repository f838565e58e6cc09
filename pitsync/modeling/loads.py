"""The latest load of each history key an append run may read again.

An append run takes, of a key's rows, those of its latest load (the greatest cursor
value). Within one run that is a window over the run's rows; across runs the store must
know when the stored rows were loaded, or a row of an earlier load that a lookback reads
again would replace a later load that has since left the source (deleted, or its cursor
moved back): an append run never deletes, and the answer may not depend on when runs
happened.

Only keys loaded at or past where the next run reads from (the watermark, less the
lookback) can meet an earlier load of theirs again, so only those are remembered: each
run forgets the rest. Without a lookback that is the keys of the watermark's own value.
"""

from __future__ import annotations

import re

import duckdb

from pitsync.config import TableConfig
from pitsync.modeling.intervals import ENTITY, START
from pitsync.modeling.staging import REASON, STAGED, count, table_exists
from pitsync.quoting import quote_identifier
from pitsync.store import INTERNAL_SCHEMA

DECIMAL_TYPE = re.compile(r"DECIMAL\((\d+),(\d+)\)")


def remembered_loads_table(name: str) -> str:
    """Where the store keeps, for an append history table, the cursor value of the latest
    load of each key that the next run may read again."""
    return f"{INTERNAL_SCHEMA}.{quote_identifier('loads__' + name)}"


def keeps_loads(table: TableConfig) -> bool:
    """Append runs of a history table with a cursor; events are keyed otherwise."""
    return table.is_history and table.mode == "append" and table.cursor is not None


def forget_loads(con: duckdb.DuckDBPyConnection, table: TableConfig) -> None:
    """A run that reads every row anew (the first, or one whose cursor changed), or of
    another mode, leaves the store as its source has it now: no earlier load counts."""
    con.execute(f"DROP TABLE IF EXISTS {remembered_loads_table(table.name)}")


def drop_superseded_rows(con: duckdb.DuckDBPyConnection, table: TableConfig) -> int:
    """Take out of the staged rows those of an earlier load than the stored one of their
    key; returns how many. Such rows change nothing, as rows read again as stored do."""
    loads = remembered_loads_table(table.name)
    if not table_exists(con, loads):
        return 0
    cursor = quote_identifier(table.cursor or "")
    return count(
        con,
        f"DELETE FROM {STAGED} s USING {loads} l WHERE {same_key('s', 'l')} "
        f"AND s.{cursor} < l.loaded",
    )


def remember_loads(
    con: duckdb.DuckDBPyConnection, table: TableConfig, floor: tuple[str, str] | None
) -> None:
    """Keep the latest load of each key loaded at or past `floor`, the (text, DuckDB type)
    of where the next run reads from (None: it reads every row), and forget the others."""
    loads = remembered_loads_table(table.name)
    cursor = quote_identifier(table.cursor or "")
    latest = (
        f"SELECT CAST({ENTITY} AS VARCHAR) AS entity, {START} AS start_time, "
        f"max({cursor}) AS loaded FROM {STAGED} WHERE {REASON} IS NULL"
    )
    parameters = []
    if floor is not None:
        text, type_name = floor
        latest += f" AND {cursor} >= CAST(? AS {type_name})"
        parameters = [text]
    latest += " GROUP BY ALL"
    con.execute(f"CREATE TABLE IF NOT EXISTS {loads} AS {latest} LIMIT 0", parameters)
    widen_loaded(con, loads, cursor)
    if floor is not None:
        con.execute(f"DELETE FROM {loads} WHERE loaded < CAST(? AS {floor[1]})", [floor[0]])
    # The staged rows hold no earlier load than the remembered one (drop_superseded_rows).
    con.execute(
        f"DELETE FROM {loads} l USING ({latest}) n "
        "WHERE n.entity = l.entity AND n.start_time = l.start_time",
        parameters,
    )
    con.execute(f"INSERT INTO {loads} BY NAME {latest}", parameters)


def widen_loaded(con: duckdb.DuckDBPyConnection, loads: str, cursor: str) -> None:
    """Give the remembered loads a type that holds both them and the staged cursor: a
    cursor widened in its source (INTEGER to BIGINT or DOUBLE, a finer timestamp or
    decimal) keeps its watermark, and its values must not be cut to the narrower type
    they were kept as."""
    kept = described_type(con, f"SELECT loaded FROM {loads}")
    staged = described_type(con, f"SELECT {cursor} FROM {STAGED}")
    both = f"SELECT loaded FROM {loads} UNION ALL SELECT {cursor} FROM {STAGED}"
    common = holding_type(kept, staged, described_type(con, both))
    if common != kept:
        con.execute(f"ALTER TABLE {loads} ALTER loaded SET DATA TYPE {common}")


def holding_type(kept: str, staged: str, common: str) -> str:
    """DuckDB's common type, but one that rounds no fraction: where DuckDB would keep the
    whole digits of DECIMAL(38,2) and DECIMAL(38,4) and cut the fraction, the widest
    decimal of the finer scale; where it would make integers a FLOAT, a DOUBLE."""
    scales = [decimal_scale(kept), decimal_scale(staged), decimal_scale(common)]
    if all(scale is not None for scale in scales):
        finest = max(scale or 0 for scale in scales)
        return common if scales[2] == finest else f"DECIMAL(38,{finest})"
    return "DOUBLE" if common == "FLOAT" else common


def decimal_scale(type_name: str) -> int | None:
    found = DECIMAL_TYPE.fullmatch(type_name)
    return int(found.group(2)) if found else None


def described_type(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    return str(con.execute(f"DESCRIBE {sql}").fetchall()[0][1])


def same_key(staged: str, loads: str) -> str:
    return (
        f"CAST({staged}.{ENTITY} AS VARCHAR) = {loads}.entity "
        f"AND {staged}.{START} = {loads}.start_time"
    )
