"""Rewrite SQL:2011 temporal syntax into native DuckDB, on the sqlglot tree.

Two forms, told apart by whether the moment refers to a column:

- `FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01 00:00:00+00'` becomes a filter
  on the intervals that hold that moment: `start_time <= m AND (end_time IS NULL OR
  m < end_time)`;
- `LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id` becomes
  `ASOF LEFT JOIN h ON h.company_id = e.company_id AND e.time >= h.start_time`. Since an
  entity's intervals are contiguous, the latest start at or before the moment is the
  interval holding it; an unmatched row keeps NULLs.

A literal moment is read as TIMESTAMPTZ, so `TIMESTAMP '2024-03-01 00:00:00+05'` keeps
its offset (DuckDB's plain TIMESTAMP would drop it) and a naive literal means UTC.

For example, with `h` a history table,

    SELECT plan FROM h FOR SYSTEM_TIME AS OF '2024-01-01'

runs as

    SELECT plan FROM (SELECT * FROM h WHERE h.start_time <= CAST('2024-01-01' AS TIMESTAMPTZ)
      AND (h.end_time IS NULL OR h.end_time > CAST('2024-01-01' AS TIMESTAMPTZ))) AS h

(tests/fixtures/temporal_rewrites.sql holds more such pairs).
"""

from __future__ import annotations

from sqlglot import exp

from pitsync.errors import QueryRefused
from pitsync.store import END_TIME, START_TIME

TEMPORAL_KINDS = ("AS OF",)


def rewrite_temporal_tree(tree: exp.Query, history_tables: set[str], sql: str) -> exp.Query:
    """Replace every `FOR SYSTEM_TIME AS OF` in the tree; refuse forms it cannot answer."""
    for table in list(tree.find_all(exp.Table)):
        version = table.args.get("version")
        if version is None:
            continue
        check_version(table, version, history_tables, sql)
        moment = as_instant(version.expression)
        table.set("version", None)
        if moment.find(exp.Column):
            rewrite_as_of_join(table, moment, sql)
        else:
            rewrite_as_of_moment(table, moment)
    return tree


def check_version(
    table: exp.Table, version: exp.Version, history_tables: set[str], sql: str
) -> None:
    """Only `FOR SYSTEM_TIME AS OF`, and only on a history relation."""
    kind = str(version.args.get("kind", "")).upper()
    if kind not in TEMPORAL_KINDS:
        raise QueryRefused(
            f"FOR SYSTEM_TIME {kind} is not supported; use FOR SYSTEM_TIME AS OF a moment "
            "(a timestamp, or a column such as e.time in a join)",
            sql=sql,
        )
    if table.name.lower() not in history_tables:
        raise QueryRefused(
            f"FOR SYSTEM_TIME AS OF applies to history tables, and `{table.name}` is not one; "
            f"history tables are: {', '.join(sorted(history_tables)) or '(none synced yet)'}",
            sql=sql,
        )


def as_instant(moment: exp.Expression) -> exp.Expression:
    """The moment as a TIMESTAMPTZ; a literal keeps any offset it is written with."""
    if isinstance(moment, exp.Cast) and isinstance(moment.this, exp.Literal):
        moment = moment.this
    if isinstance(moment, exp.Literal):
        return exp.cast(moment, exp.DataType.build("TIMESTAMPTZ"))
    return moment


def rewrite_as_of_moment(table: exp.Table, moment: exp.Expression) -> None:
    """`h FOR SYSTEM_TIME AS OF m` -> the intervals of h that hold m, under h's name."""
    alias = table.alias_or_name
    inner = exp.Table(this=table.this.copy(), db=table.args.get("db"), catalog=None)
    start = exp.column(START_TIME, table=inner.name)
    end = exp.column(END_TIME, table=inner.name)
    holds = exp.and_(
        exp.LTE(this=start, expression=moment.copy()),
        exp.paren(exp.or_(end.copy().is_(exp.null()), exp.GT(this=end, expression=moment.copy()))),
    )
    subquery = exp.select("*").from_(inner).where(holds).subquery(alias)
    table.replace(subquery)


def rewrite_as_of_join(table: exp.Table, moment: exp.Expression, sql: str) -> None:
    """`JOIN h FOR SYSTEM_TIME AS OF e.time ... ON keys` -> an ASOF join on the keys."""
    join = table.parent
    if not isinstance(join, exp.Join) or join.this is not table:
        raise QueryRefused(
            f"FOR SYSTEM_TIME AS OF a column needs a join: write `LEFT JOIN {table.name} "
            f"FOR SYSTEM_TIME AS OF e.time AS h ON h.<id> = e.<id>`",
            sql=sql,
        )
    condition = join.args.get("on")
    if condition is None or join.args.get("using"):
        raise QueryRefused(
            f"the as-of join with `{table.name}` needs an ON clause of equalities "
            "(for example ON h.company_id = e.company_id)",
            sql=sql,
        )
    equalities = check_equalities(condition, table.name, sql)
    side = str(join.args.get("side") or "").upper()
    if side not in ("", "LEFT"):
        raise QueryRefused(
            f"only JOIN and LEFT JOIN take FOR SYSTEM_TIME AS OF a column, not {side} JOIN",
            sql=sql,
        )
    started = exp.GTE(
        this=moment.copy(), expression=exp.column(START_TIME, table=table.alias_or_name)
    )
    join.set("on", exp.and_(*(part.copy() for part in equalities), started))
    join.set("method", "ASOF")
    join.set("kind", None)


def conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    """The terms of a chain of ANDs, parentheses removed at any depth."""
    term = condition.unnest()
    if isinstance(term, exp.And):
        return conjuncts(term.this) + conjuncts(term.expression)
    return [term]


def check_equalities(condition: exp.Expr, name: str, sql: str) -> list[exp.Expr]:
    """The ON clause's equalities; any other condition would change what 'as of' means."""
    parts = conjuncts(condition)
    for part in parts:
        if not isinstance(part, exp.EQ):
            raise QueryRefused(
                f"the as-of join with `{name}` takes only equalities in ON, joined by AND; "
                f"`{part.sql('duckdb')}` is not one: filter in WHERE, or in a subquery",
                sql=sql,
            )
    return parts
