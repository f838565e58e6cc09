"""Rewrite SQL:2011 temporal syntax into native DuckDB, on the sqlglot tree.

Two forms, told apart by whether the moment refers to a column:

- `FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01 00:00:00+00'` becomes a filter
  on the intervals that hold that moment: `start_time <= m AND (end_time IS NULL OR
  m < end_time)`;
- `LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id` becomes
  `ASOF LEFT JOIN h ON h.company_id = e.company_id AND e.time >= h.start_time` (and
  JOIN, SEMI JOIN and ANTI JOIN their ASOF forms). Since an entity's intervals are
  contiguous, the latest start at or before the moment is the interval holding it; an
  unmatched row keeps NULLs.

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

import re
from collections.abc import Iterable
from typing import TypeGuard

from sqlglot import exp

from pitsync.errors import QueryRefused
from pitsync.modeling.timestamps import (
    AMBIGUOUS_ZONE_HINT,
    ZONED_PATTERN,
    beyond_moments,
    has_moment_shape,
    is_ambiguous_zone_name,
    names_ambiguous_zone,
    short_year,
    spelled_moment,
)
from pitsync.queries.guard import ctes_in_scope
from pitsync.quoting import fold_name
from pitsync.store import END_TIME, PROPERTIES, START_TIME

TEMPORAL_KINDS = ("AS OF",)

# An offset after a time of day or after UTC or GMT (`+15:00`, `-1430`, `GMT+15`), its
# hours and minutes captured. No zone is more than 14 hours from UTC, and a source's time
# with such an offset is refused (rule 6).
OFFSET_AFTER_TIME = re.compile(
    r"(?:\d:\d{1,2}(?::\d{1,2}(?:\.\d*)?)?|(?i:utc|gmt))\s*[+-](\d{1,2})(?::?(\d{2}))?"
    r"(?::?(\d{2}))?"
)
# A zone shifted to, written as UTC or GMT and an offset: DuckDB reads `UTC+05:30` there as
# five hours, dropping the minutes.
OFFSET_NAMED_ZONE = re.compile(r"(?i)\s*(utc|gmt)\s*[+-]\d")
SHORT_YEAR_HINT = "write the year with four digits (2024-03-01)"
BEYOND_MOMENTS_HINT = "no row starts outside years 1 to 9999 in UTC (rule 8)"
NO_MOMENT_HINT = "it is no date and time; write ISO 8601, e.g. 2024-03-01T00:00:00Z"
OFFSET_PARTS_HINT = "an offset's minutes and seconds run from 00 to 59 (+05:30)"
ZONE_IN_SHIFTED_TIME_HINT = (
    "a time read in a zone (AT TIME ZONE, timezone()) is a wall-clock time there; leave "
    "its offset or zone out"
)
OFFSET_HINT = "no zone is more than 14 hours from UTC; write an offset from -14:00 to +14:00"


def rewrite_temporal_tree(
    tree: exp.Query, history_tables: dict[str, str], sql: str, *, in_microseconds: bool = False
) -> exp.Query:
    """Replace every `FOR SYSTEM_TIME AS OF` in the tree; refuse forms it cannot answer.

    `history_tables` maps each history relation (lower-cased) to its id column. With
    `in_microseconds`, every moment that is not a literal is cut to the microsecond first
    (`cut_to_microseconds`), for moments of nanoseconds.
    """
    for table in innermost_first(tree.find_all(exp.Table)):
        version = table.args.get("version")
        if version is None:
            continue
        check_version(table, version, history_tables, sql)
        moment = as_instant(version.expression, sql)
        # A literal is read as TIMESTAMPTZ text, which cuts its nanoseconds already.
        literal = isinstance(moment, exp.Cast) and isinstance(moment.this, exp.Literal)
        if in_microseconds and not literal:
            moment = cut_to_microseconds(moment)
        table.set("version", None)
        if refers_to_a_row(moment):
            rewrite_as_of_join(table, moment, history_tables[fold_name(table.name)], sql)
        else:
            rewrite_as_of_moment(table, moment)
    return tree


def innermost_first(tables: Iterable[exp.Table]) -> list[exp.Table]:
    """The tables, the deepest in the tree first. A rewrite copies its moment and its ON
    clause into the new tree, so a temporal table inside them (`AS OF (SELECT ... FROM h
    FOR SYSTEM_TIME AS OF ...)`) is rewritten before it is copied, not left behind in the
    original."""
    return sorted(tables, key=lambda table: table.depth, reverse=True)


def check_version(
    table: exp.Table, version: exp.Version, history_tables: dict[str, str], sql: str
) -> None:
    """Only `FOR SYSTEM_TIME AS OF`, and only on a history relation."""
    kind = str(version.args.get("kind", "")).upper()
    if str(version.this).upper() == "VERSION":
        raise QueryRefused(
            "FOR VERSION AS OF is not supported: the store keeps no versions of a table; use "
            "FOR SYSTEM_TIME AS OF a moment (a timestamp, or a column such as e.time in a join)",
            sql=sql,
        )
    if kind in TEMPORAL_KINDS and version.expression is None:
        raise QueryRefused(
            "FOR SYSTEM_TIME AS OF needs a moment after it: a timestamp, or a column such "
            "as e.time in a join",
            sql=sql,
        )
    if kind not in TEMPORAL_KINDS:
        raise QueryRefused(
            f"FOR SYSTEM_TIME {kind} is not supported; use FOR SYSTEM_TIME AS OF a moment "
            "(a timestamp, or a column such as e.time in a join)",
            sql=sql,
        )
    if table.args.get("sample"):
        raise QueryRefused(
            "TABLESAMPLE does not go with FOR SYSTEM_TIME AS OF; sample the result in an "
            "outer query (SELECT ... FROM (<the query>) USING SAMPLE ...)",
            sql=sql,
        )
    if not table.db and fold_name(table.name) in ctes_in_scope(table):
        raise QueryRefused(
            f"FOR SYSTEM_TIME AS OF applies to history tables, and `{table.name}` here is a CTE "
            f"of the query; rename the CTE, or write `main.{table.name}` for the history table",
            sql=sql,
        )
    if fold_name(table.name) not in history_tables:
        raise QueryRefused(
            f"FOR SYSTEM_TIME AS OF applies to history tables, and `{table.name}` is not one; "
            f"history tables are: {', '.join(sorted(history_tables)) or '(none synced yet)'}",
            sql=sql,
        )


def refers_to_a_row(moment: exp.Expression) -> bool:
    """Whether the moment names a column of the query's rows (`e.time`), so differs from
    row to row; a column inside a subquery (`(SELECT max(time) FROM events)`) does not."""
    return any(
        column.find_ancestor(exp.Subquery) is None
        or moment.find_ancestor(exp.Subquery) is column.find_ancestor(exp.Subquery)
        for column in moment.find_all(exp.Column)
    )


def as_instant(moment: exp.Expression, sql: str) -> exp.Expression:
    """The moment as a TIMESTAMPTZ; a literal keeps any offset it is written with, and
    may not name its zone by an abbreviation (DuckDB reads `BST` as Bangladesh)."""
    check_zones(moment, sql)
    if is_time_cast(moment) and isinstance(moment.this, exp.Literal):
        moment = moment.this
    if isinstance(moment, exp.Literal):
        return exp.cast(moment, exp.DataType.build("TIMESTAMPTZ"))
    # DuckDB's TIMESTAMP drops an offset (`TIMESTAMP '00:30+05' + INTERVAL 1 MINUTE` would
    # be 00:31 UTC): text with an offset or a zone, read as a time within the moment, is
    # read as TIMESTAMPTZ. Naive text stays as DuckDB reads it: sessions run in UTC, so it
    # names the same instant, and a zone shift anywhere after it (even one applied to a
    # CTE's column) reads its wall-clock time as written.
    for text in moment_texts(moment):
        if isinstance(text.parent, exp.Cast) and names_a_zone(text.this):
            text.parent.set("to", exp.DataType.build("TIMESTAMPTZ"))
    return moment


def cut_to_microseconds(moment: exp.Expression) -> exp.Expression:
    """The moment as a TIMESTAMP of whole microseconds, its nanoseconds cut (rule 6).

    DuckDB compares no TIMESTAMP_NS with the stored starts, and its cast to a coarser
    time rounds. `epoch_us` cuts toward the earlier microsecond, and is exact for every
    other time type too; an infinite moment, which it gives as NULL, is cast as it is.
    """
    microseconds = exp.Anonymous(this="epoch_us", expressions=[moment.copy()])
    cut = exp.Anonymous(this="make_timestamp", expressions=[microseconds])
    as_cast = exp.cast(moment.copy(), exp.DataType.build("TIMESTAMP"))
    return exp.Coalesce(this=cut, expressions=[as_cast])


def is_time_cast(node: exp.Expression) -> TypeGuard[exp.Cast]:
    """A cast (not a TRY_CAST, which may give NULL) to a time type, whose text alone is
    the moment; a cast to DATE keeps the start of its day."""
    return type(node) is exp.Cast and node.to.is_type(*TIME_TYPES)


def shifted_zones(moment: exp.Expression) -> list[exp.Expression | None]:
    """The zones the moment reads a time in (`AT TIME ZONE 'X'`, `timezone('X', ...)`), as
    written (None: a call without one). Such a shift reads a wall-clock time there, which
    may reach it from anywhere in the moment, through a CTE or a subquery too."""
    zones = [shift.args.get("zone") for shift in moment.find_all(exp.AtTimeZone)]
    zones += [
        call.expressions[0] if call.expressions else None
        for call in moment.find_all(exp.Anonymous)
        if is_timezone_call(call)
    ]
    return zones


def is_timezone_call(node: object) -> TypeGuard[exp.Anonymous]:
    return isinstance(node, exp.Anonymous) and str(node.this).lower() == "timezone"


def check_zones(moment: exp.Expression, sql: str) -> None:
    """Refuse a moment's text that rule 6 would not read, or a zone it is shifted to that
    names no zone or not the one meant; spell the rest as the cast reads it."""
    zones = shifted_zones(moment)
    for text in moment_texts(moment, with_dates=True):
        problem = moment_text_problem(text.this)
        if problem is None and zones and names_a_zone(text.this):
            problem = ZONE_IN_SHIFTED_TIME_HINT  # DuckDB would drop the text's own zone
        if problem:
            raise QueryRefused(f"the moment {text.sql('duckdb')} is refused: {problem}", sql=sql)
        text.set("this", spelled_moment(text.this))
    for zone in zones:
        if isinstance(zone, exp.Literal) and OFFSET_NAMED_ZONE.match(zone.this):
            raise QueryRefused(
                f"the zone {zone.sql('duckdb')} is refused: DuckDB would drop its minutes; "
                "give a zone name (Asia/Kolkata)",
                sql=sql,
            )
        if isinstance(zone, exp.Literal) and is_ambiguous_zone_name(zone.this):
            raise QueryRefused(
                f"the zone {zone.sql('duckdb')} is refused: {AMBIGUOUS_ZONE_HINT}", sql=sql
            )


def moment_text_problem(text: str) -> str | None:
    """Why rule 6 would not read a moment's text, if it would not: a zone abbreviation,
    an offset past 14 hours or with minutes or seconds past 59, a year of other than
    four digits, text of no time's shape, or a time outside years 1 to 9999."""
    if names_ambiguous_zone(text):
        return AMBIGUOUS_ZONE_HINT
    if offset_beyond_any_zone(text):
        return OFFSET_HINT
    if any(minutes > 59 or seconds > 59 for _, minutes, seconds in offsets(text)):
        return OFFSET_PARTS_HINT
    if short_year(text):
        return SHORT_YEAR_HINT
    if not has_moment_shape(text):
        return NO_MOMENT_HINT
    if beyond_moments(text):
        return BEYOND_MOMENTS_HINT
    return None


def names_a_zone(text: str) -> bool:
    """Whether a time's text ends in an offset, `Z` or a zone name."""
    return re.fullmatch(ZONED_PATTERN, text.strip()) is not None


def offset_beyond_any_zone(text: str) -> bool:
    """Whether a time is written with an offset past 14 hours (`+14:30`, `GMT+15`)."""
    return any(
        hours * 3600 + minutes * 60 + seconds > 14 * 3600
        for hours, minutes, seconds in offsets(text)
    )


def offsets(text: str) -> list[tuple[int, int, int]]:
    """The (hours, minutes, seconds) of each offset written after a time, UTC or GMT."""
    return [
        (int(hours), int(minutes or 0), int(seconds or 0))
        for hours, minutes, seconds in OFFSET_AFTER_TIME.findall(text)
    ]


def moment_texts(moment: exp.Expression, *, with_dates: bool = False) -> list[exp.Literal]:
    """The text a moment reads as a time (or, `with_dates`, as a date): the moment itself,
    or text cast to a time type within it (not an interval's `'1 day'` or a format's
    `'%d/%m'`)."""
    types = (*TIME_TYPES, exp.DataType.Type.DATE) if with_dates else TIME_TYPES
    return [
        literal
        for literal in moment.find_all(exp.Literal)
        if literal.is_string
        and (
            literal is moment
            or (isinstance(literal.parent, exp.Cast) and literal.parent.to.is_type(*types))
        )
    ]


TIME_TYPES = (
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPNTZ,  # DuckDB's TIMESTAMP, as sqlglot reads it
    exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.TIMESTAMPLTZ,
    exp.DataType.Type.DATETIME,
    exp.DataType.Type.TIMESTAMP_S,
    exp.DataType.Type.TIMESTAMP_MS,
    exp.DataType.Type.TIMESTAMP_NS,
)


def rewrite_as_of_moment(table: exp.Table, moment: exp.Expression) -> None:
    """`h FOR SYSTEM_TIME AS OF m` -> the intervals of h that hold m, under h's name."""
    alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
    inner = exp.Table(this=table.this.copy(), db=table.args.get("db"), catalog=None)
    start = exp.column(START_TIME, table=inner.name)
    end = exp.column(END_TIME, table=inner.name)
    holds = exp.and_(
        exp.LTE(this=start, expression=moment.copy()),
        exp.paren(exp.or_(end.copy().is_(exp.null()), exp.GT(this=end, expression=moment.copy()))),
    )
    # The alias, with any column names it gives (`AS x(id, since)`), names the subquery.
    subquery = exp.Subquery(this=exp.select("*").from_(inner).where(holds), alias=alias.copy())
    if not table.args.get("alias"):
        unqualify_columns_of(table)
    table.replace(subquery)


def unqualify_columns_of(table: exp.Table) -> None:
    """Columns named by the table's schema (`main.h.plan`) name it by its name alone: the
    subquery that replaces it has a name, but no schema."""
    select = table.find_ancestor(exp.Select)
    if select is None or not table.db:
        return
    for column in select.find_all(exp.Column):
        same_table = fold_name(column.table) == fold_name(table.name)
        if same_table and fold_name(column.db) == fold_name(table.db):
            column.set("db", None)
            column.set("catalog", None)


def rewrite_as_of_join(table: exp.Table, moment: exp.Expression, id_column: str, sql: str) -> None:
    """`JOIN h FOR SYSTEM_TIME AS OF e.time ... ON h.id = e.x` -> an ASOF join on the id.

    The ASOF join may match on the entity's id alone: "the latest start at or before the
    moment" is the holding interval only among all of one entity's intervals. Any other
    condition in ON is a test of that interval, so it is applied after the match.
    """
    join = table.parent
    if not isinstance(join, exp.Join) or join.this is not table:
        raise QueryRefused(
            f"FOR SYSTEM_TIME AS OF a column needs a join: write `LEFT JOIN {table.name} "
            f"FOR SYSTEM_TIME AS OF e.time AS h ON h.{id_column} = e.<id>`",
            sql=sql,
        )
    side, kind = as_of_join_shape(join, sql)
    check_moment_in_scope(join, moment, table.name, sql)
    check_moment_not_of_history(table, moment, sql)
    named = table.args.get("alias")
    if named is not None and named.columns:
        raise QueryRefused(
            f"an as-of join takes its alias without column names; write `AS {named.name}` and "
            "rename the columns in the SELECT",
            sql=sql,
        )
    alias = table.alias_or_name
    key, rest = split_entity_key(join.args.get("on"), alias, id_column, table.name, sql)
    if not rest:
        join.set("on", exp.and_(key, started_by(moment, alias)))
        join.set("method", "ASOF")
        join.set("side", side)
        join.set("kind", kind)
        return
    match_then_test(join, table, moment, key, rest, id_column, shape=(side, kind), sql=sql)


def check_moment_in_scope(join: exp.Join, moment: exp.Expression, name: str, sql: str) -> None:
    """Refuse a moment taken from an outer query (`EXISTS (... JOIN h FOR SYSTEM_TIME AS OF
    e.time ...)` with `e` outside): DuckDB's ASOF join compares only its own two sides."""
    select = join.find_ancestor(exp.Select)
    if select is None:
        return
    inner = scope_names(select)
    outer: set[str] = set()
    for enclosing in iter_selects_around(select):
        outer |= scope_names(enclosing)
    for column in moment.find_all(exp.Column):
        qualifiers = {fold_name(part.name) for part in column.parts[:-1]}
        if qualifiers & outer and not qualifiers & inner:
            raise QueryRefused(
                f"the as-of join with `{name}` takes its moment ({column.sql('duckdb')}) from "
                "an outer query, which is not supported; join the history in that outer query "
                f"(LEFT JOIN {name} FOR SYSTEM_TIME AS OF ... AS h ON ...) and test h there",
                sql=sql,
            )


def check_moment_not_of_history(table: exp.Table, moment: exp.Expression, sql: str) -> None:
    """Refuse a moment taken from the joined history itself (`JOIN h FOR SYSTEM_TIME AS
    OF h.start_time AS h`): the moment picks the interval, so it cannot come from one."""
    alias = fold_name(table.alias_or_name)
    for column in moment.find_all(exp.Column):
        if column.table and fold_name(column.table) == alias:
            raise QueryRefused(
                f"the as-of join with `{table.name}` takes its moment ({column.sql('duckdb')}) "
                "from that history itself, whose interval the moment is to pick; take it from "
                "the other side of the join (e.time), or give a constant moment",
                sql=sql,
            )


def iter_selects_around(select: exp.Select) -> list[exp.Select]:
    """The SELECTs that enclose this one, nearest first."""
    around = []
    node = select.parent
    while node is not None:
        if isinstance(node, exp.Select):
            around.append(node)
        node = node.parent
    return around


def scope_names(select: exp.Select) -> set[str]:
    """The names of the relations a SELECT reads: its FROM item's and its joins'."""
    source = select.args.get("from_")
    names = relation_names(source.this) if source is not None else set()
    for join in select.args.get("joins") or []:
        names |= relation_names(join.this)
    return names


def relation_names(relation: exp.Expr) -> set[str]:
    """A FROM item's alias or name, and those of the joins hung on it (FROM-first, or a
    join in parentheses)."""
    names = {fold_name(relation.alias_or_name)} if relation.alias_or_name else set()
    if isinstance(relation, exp.Subquery) and not relation.alias:
        names |= relation_names(relation.this)
    for join in relation.args.get("joins") or []:
        names |= relation_names(join.this)
    return names


# The joins an as-of join may be written as, by (side, kind) as sqlglot reads them, and the
# (side, kind) each means, which the rewritten joins take.
AS_OF_JOINS: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("", ""): (None, None),
    ("", "INNER"): (None, None),
    ("LEFT", ""): ("LEFT", None),
    ("LEFT", "OUTER"): ("LEFT", None),
    ("", "SEMI"): (None, "SEMI"),
    ("LEFT", "SEMI"): (None, "SEMI"),
    ("", "ANTI"): (None, "ANTI"),
    ("LEFT", "ANTI"): (None, "ANTI"),
}


def as_of_join_shape(join: exp.Join, sql: str) -> tuple[str | None, str | None]:
    """The (side, kind) of an as-of join: inner, left, semi or anti; refuse any other."""
    if join.args.get("using"):
        raise QueryRefused("the as-of join needs ON, not USING", sql=sql)
    method, side, kind = (
        str(join.args.get(arg) or "").upper() for arg in ("method", "side", "kind")
    )
    if method or (side, kind) not in AS_OF_JOINS:
        written = " ".join(word for word in (method, side, kind) if word)
        raise QueryRefused(
            "only JOIN, LEFT JOIN, SEMI JOIN and ANTI JOIN take FOR SYSTEM_TIME AS OF a column, "
            f"not {written} JOIN",
            sql=sql,
        )
    return AS_OF_JOINS[(side, kind)]


def started_by(moment: exp.Expression, alias: str) -> exp.Expr:
    return exp.GTE(this=moment.copy(), expression=exp.column(START_TIME, table=alias))


def split_entity_key(
    condition: exp.Expr | None, alias: str, id_column: str, name: str, sql: str
) -> tuple[exp.Expr, list[exp.Expr]]:
    """The ON clause's first `alias.id = <other side>` equality, and every other term.

    The other side is compared as text: ids are strings (rule 7), and DuckDB would
    otherwise cast the stored ids to the other side's type, so an integer 100 would
    match the id `0100`, and an id `u1` would fail the cast.
    """
    parts = conjuncts(condition) if condition is not None else []
    for index, part in enumerate(parts):
        sides = entity_key_sides(part, alias, id_column)
        if sides is not None:
            mine, other = sides
            key = exp.EQ(this=mine.copy(), expression=as_text(other))
            return key, [other.copy() for other in parts[:index] + parts[index + 1 :]]
    raise QueryRefused(
        f"the as-of join with `{name}` needs ON {alias}.{id_column} = <the event's id>, "
        f"so each row is matched with its own entity's history",
        sql=sql,
    )


def as_text(value: exp.Expr) -> exp.Expr:
    """The event's id as text. A value of a JSON object is taken as `->>` takes it, so the
    string "u1" is the id `u1`, not `"u1"` with its quotes: one taken with `->` or
    json_extract, and one of the events' `properties` taken as a field
    (`e.properties.company_id`) or by key (`e.properties['company_id']`)."""
    inner = value.unnest()
    if isinstance(inner, exp.JSONExtract):
        return exp.JSONExtractScalar(this=inner.this.copy(), expression=inner.expression.copy())
    key = properties_key(inner)
    if key is not None:
        document, name = key
        return exp.JSONExtractScalar(this=document, expression=exp.Literal.string(name))
    return exp.cast(value.copy(), "VARCHAR")


def properties_key(value: exp.Expr) -> tuple[exp.Column, str] | None:
    """(the properties column, the key) of `e.properties.key` or `e.properties['key']`,
    or of `properties.key` where no relation of the query is called `properties`."""
    if isinstance(value, exp.Column) and fold_name(value.table) == PROPERTIES:
        if value.args.get("db"):
            return exp.column(value.table, table=value.args["db"].name), value.name
        if not names_a_relation(value, PROPERTIES):
            return exp.column(value.table), value.name
    if (
        isinstance(value, exp.Bracket)
        and isinstance(value.this, exp.Column)
        and fold_name(value.this.name) == PROPERTIES
        and len(value.expressions) == 1
        and isinstance(value.expressions[0], exp.Literal)
        and value.expressions[0].is_string
    ):
        return value.this.copy(), value.expressions[0].this
    return None


def names_a_relation(node: exp.Expr, name: str) -> bool:
    """Whether the query calls a relation `name`: DuckDB reads `name.x` as its column x."""
    root = node.root()
    aliases = (fold_name(alias.name) for alias in root.find_all(exp.TableAlias))
    tables = (fold_name(table.name) for table in root.find_all(exp.Table))
    return name in aliases or name in tables


def entity_key_sides(
    term: exp.Expr, alias: str, id_column: str
) -> tuple[exp.Expr, exp.Expr] | None:
    """For `alias.id = x` or `x = alias.id`, where x does not refer to the history itself:
    (alias.id, x); None for any other term."""
    if not isinstance(term, exp.EQ):
        return None
    for mine, other in ((term.this, term.expression), (term.expression, term.this)):
        if refers_to(mine, alias, id_column) and not any(
            fold_name(column.table) == fold_name(alias) for column in other.find_all(exp.Column)
        ):
            return mine, other
    return None


def refers_to(node: exp.Expr, alias: str, column: str) -> bool:
    return (
        isinstance(node, exp.Column)
        and fold_name(node.table) == fold_name(alias)
        and fold_name(node.name) == fold_name(column)
    )


def match_then_test(
    join: exp.Join,
    table: exp.Table,
    moment: exp.Expression,
    key: exp.Expr,
    rest: list[exp.Expr],
    id_column: str,
    *,
    shape: tuple[str | None, str | None],
    sql: str,
) -> None:
    """Find the holding interval by id with an ASOF join, then join it under its alias.

    The ASOF join reads only (id, start_time) under names of its own; the second join
    looks the interval up by that unique pair and applies the other ON terms, so for a
    LEFT JOIN an interval that fails them leaves NULLs, as a plain LEFT JOIN would, and an
    ANTI JOIN keeps the row.
    """
    alias = table.alias_or_name
    match = f"__asof_{alias}"
    matched_id, matched_start = f"{match}_id", f"{match}_start"
    key = key.copy()
    for column in key.find_all(exp.Column):
        if refers_to(column, alias, id_column):
            column.replace(exp.column(matched_id, table=match))
    side, kind = shape
    # An ANTI JOIN keeps a row that has no holding interval: the match must keep it too.
    asof = exp.Join(
        this=holding_intervals(table, id_column, match),
        on=exp.and_(
            key, exp.GTE(this=moment.copy(), expression=exp.column(matched_start, table=match))
        ),
        method="ASOF",
        side="LEFT" if side == "LEFT" or kind == "ANTI" else None,
    )
    same_interval = [
        exp.EQ(
            this=exp.column(id_column, table=alias, quoted=True),
            expression=exp.column(matched_id, table=match),
        ),
        exp.EQ(
            this=exp.column(START_TIME, table=alias),
            expression=exp.column(matched_start, table=match),
        ),
    ]
    join.set("on", exp.and_(*same_interval, *rest))
    join.set("side", side)
    join.set("kind", kind)
    insert_before(join, asof, sql=sql)
    select = join.find_ancestor(exp.Select)
    if select is not None:
        hide_from_star(select, [matched_id, matched_start])


def holding_intervals(table: exp.Table, id_column: str, match: str) -> exp.Subquery:
    """The (id, start_time) of every interval of the history, under the match's names."""
    history = exp.Table(this=table.this.copy(), db=table.args.get("db"))
    return (
        exp.select(
            exp.alias_(exp.column(id_column, quoted=True), f"{match}_id"),
            exp.alias_(exp.column(START_TIME), f"{match}_start"),
        )
        .from_(history)
        .subquery(match)
    )


def insert_before(join: exp.Join, new: exp.Join, *, sql: str) -> None:
    """Put a join just before another, in the list that holds it: a SELECT's joins, or,
    in a FROM-first query or a join in parentheses, those of the first table."""
    owner = join.parent
    joins = list(owner.args.get("joins") or []) if owner is not None else []
    index = next((i for i, existing in enumerate(joins) if existing is join), None)
    if owner is None or index is None:
        raise QueryRefused("the as-of join must follow a table it joins", sql=sql)
    owner.set("joins", joins[:index] + [new] + joins[index:])


def hide_from_star(select: exp.Select, names: list[str]) -> None:
    """A bare `*`, or `COLUMNS(*)`, must not show the columns the rewrite added."""
    for projection in select.expressions:
        for star in projection.find_all(exp.Star):
            bare = star is projection or isinstance(star.parent, exp.Columns)
            if bare and star.find_ancestor(exp.Select) is select:
                hidden = list(star.args.get("except_") or [])
                star.set("except_", hidden + [exp.column(name) for name in names])


def conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    """The terms of a chain of ANDs, parentheses removed at any depth."""
    term = condition.unnest()
    if isinstance(term, exp.And):
        return conjuncts(term.this) + conjuncts(term.expression)
    return [term]
