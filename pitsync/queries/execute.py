"""Run a read-only query over the store: guard, rewrite the temporal syntax, execute.

>>> with QuerySession(Path("pitsync.duckdb")) as session:
...     relation = session.query("SELECT count(*) FROM events")
"""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

import duckdb

from pitsync.errors import QueryError
from pitsync.interrupts import stopped_by_ctrl_c
from pitsync.modeling.hidden_events import read_catalog
from pitsync.queries.guard import (
    check_pivots,
    check_relations,
    parse_read_query,
)
from pitsync.queries.nesting import with_room_to_nest
from pitsync.queries.temporal import rewrite_temporal_tree
from pitsync.quoting import fold_name
from pitsync.store import DEFAULT_WAIT_SECONDS, open_read_only

log = logging.getLogger(__name__)

# DuckDB's refusal to compare a time of nanoseconds with a TIMESTAMPTZ, either way round.
NANOSECOND_MOMENT = re.compile(
    r"Cannot compare values of type (TIMESTAMP_NS and type TIMESTAMP WITH TIME ZONE"
    r"|TIMESTAMP WITH TIME ZONE and type TIMESTAMP_NS)"
)


def translate(
    sql: str,
    relations: set[str],
    history_tables: dict[str, str],
    public: set[str] | None = None,
    *,
    in_microseconds: bool = False,
) -> str:
    """The DuckDB SQL a user's query runs as, after the guard and the temporal rewrite
    (`in_microseconds`: see `rewrite_temporal_tree`)."""

    def translated() -> str:
        tree = parse_read_query(sql)
        check_relations(tree, relations, sql, public=public)
        rewritten = rewrite_temporal_tree(
            tree, history_tables, sql, in_microseconds=in_microseconds
        )
        check_pivots(rewritten, sql)
        return rewritten.sql(dialect="duckdb")

    return with_room_to_nest(sql, translated)


class QuerySession:
    """A read-only connection to the store that knows its relations; used as a context,
    Ctrl-C stops the query it runs at once."""

    def __init__(
        self,
        store_path: Path,
        memory_limit: str | None = None,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ):
        self.connection = open_read_only(store_path, memory_limit, wait_seconds)
        self.relations = store_relations(self.connection)
        self.public_relations = store_relations(self.connection, schema="main")
        self.history_tables = history_id_columns(self.connection)
        self.context = ExitStack()

    def query(self, sql: str, parameters: list | None = None) -> duckdb.DuckDBPyRelation:
        """A lazy DuckDB relation for the query; nothing runs until it is read."""
        translated = self.translated(sql)
        try:
            return self.bound(translated, parameters)
        except duckdb.BinderException as error:
            # Only DuckDB knows a moment's type: one it cannot compare with the stored
            # starts (nanoseconds) is met by cutting every moment to the microsecond.
            if not NANOSECOND_MOMENT.search(str(error)):
                raise QueryError.from_duckdb(error) from error
            retried = self.translated(sql, in_microseconds=True)
            if retried == translated:  # no moment to cut: the user's own compare
                raise QueryError.from_duckdb(error) from error
            try:
                return self.bound(retried, parameters)
            except duckdb.Error as again:
                raise QueryError.from_duckdb(again) from again
        except duckdb.Error as error:
            raise QueryError.from_duckdb(error) from error

    def translated(self, sql: str, *, in_microseconds: bool = False) -> str:
        translated = translate(
            sql,
            self.relations,
            self.history_tables,
            self.public_relations,
            in_microseconds=in_microseconds,
        )
        log.debug("query runs as: %s", translated)
        return translated

    def bound(self, translated: str, parameters: list | None) -> duckdb.DuckDBPyRelation:
        """The relation, its names and types bound (so a binding error raises here)."""
        if parameters:
            return self.connection.sql(translated, params=parameters)
        return self.connection.sql(translated)

    def close(self) -> None:
        self.context.close()
        self.connection.close()

    def __enter__(self) -> QuerySession:
        self.context.enter_context(stopped_by_ctrl_c(self.connection))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def history_id_columns(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The store's history tables, lower-cased, with the id column of each: what the
    temporal syntax applies to."""
    return {
        fold_name(entry.table_name): entry.id_column
        for entry in read_catalog(connection)
        if entry.is_history
    }


def store_relations(connection: duckdb.DuckDBPyConnection, schema: str | None = None) -> set[str]:
    """Names of the store's tables and views (of one schema, or all), as spelled; not the
    temporary ones a writing command makes for itself."""
    where = "NOT internal AND NOT temporary" + (" AND schema_name = ?" if schema else "")
    parameters = [schema, schema] if schema else []
    rows = connection.execute(
        f"SELECT table_name FROM duckdb_tables() WHERE {where} "
        f"UNION SELECT view_name FROM duckdb_views() WHERE {where}",
        parameters,
    ).fetchall()
    return {str(row[0]) for row in rows}
