"""Reading profiles: lists filtered on any property, and an entity's activity feed.

Both build their SQL as sqlglot trees over the public relations and run it through the
same guard as `pitsync query`. In a `--where` predicate, a name that is not a column of
the profile relation is a property: `plan = 'pro'` reads `properties ->> 'plan'`, which
is text (or NULL when the profile lacks it), so compare numbers with a cast:
`CAST(seats AS INTEGER) > 3`. A property is not a condition by itself (`--where plan`,
`NOT vip`): it is refused, with a hint to write the comparison meant.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
from sqlglot import exp
from sqlglot.errors import ParseError

from pitsync.errors import QueryError, QueryRefused, UsageError
from pitsync.modeling.timestamps import spelled_moment
from pitsync.queries.guard import parse_condition
from pitsync.queries.nesting import with_room_to_nest
from pitsync.queries.temporal import moment_text_problem
from pitsync.quoting import fold_name
from pitsync.store import DISTINCT_ID, EVENT, PROPERTIES, TIME

USER_COLUMNS = (DISTINCT_ID, PROPERTIES, "last_seen")
GROUP_COLUMNS = ("group_key", "group_id", PROPERTIES, "last_seen")


def profiles_sql(group_key: str | None, where: str | None, limit: int | None) -> str:
    """The profiles of users (or of one group key), filtered, in id order."""
    relation, columns = (
        ("group_profiles", GROUP_COLUMNS) if group_key else ("user_profiles", USER_COLUMNS)
    )

    def built() -> str:
        query = exp.select(*columns).from_(relation)
        if group_key:
            query = query.where(exp.column("group_key").eq(exp.Literal.string(group_key)))
        if where:
            # Not copied: a condition of many terms makes each copy slow.
            query = query.where(properties_predicate(where, columns), copy=False)
        query = query.order_by(columns[1] if group_key else columns[0], copy=False)
        if limit is not None:
            query = query.limit(limit, copy=False)
        return query.sql(dialect="duckdb")

    return with_room_to_nest(where or "", built)


def properties_predicate(where: str, columns: tuple[str, ...]) -> exp.Expr:
    """The predicate, with every name that is not a column read as a property."""
    try:
        predicate = parse_condition(where)
    except ParseError as error:
        raise QueryRefused(
            f"cannot read --where {where!r} as a SQL condition; write it like "
            '"plan = \'pro\'" or "CAST(seats AS INTEGER) > 3"',
            sql=where,
        ) from error
    predicate = with_dollar_names_as_columns(predicate)
    names = PropertyNames(predicate, {fold_name(name) for name in columns})
    refuse_bare_properties(predicate, names, where)
    for column in list(predicate.find_all(exp.Column)):
        if names.names_a_property(column):
            column.replace(property_value(column.name))
    return predicate


# DuckDB's words for text met where a number was meant: compared with one, or cast to it.
TEXT_TYPE_ERRORS = ("VARCHAR", "Could not convert string")


def with_text_hint(error: QueryError, where: str | None) -> QueryError:
    """A type error of a --where condition, saying that properties are text: DuckDB's
    own words (`Cannot compare values of type VARCHAR and type INTEGER_LITERAL`) do not
    say which name is the text."""
    if not where or not any(sign in str(error) for sign in TEXT_TYPE_ERRORS):
        return error
    return QueryError(
        f"{error}; properties are text in --where: compare them with text "
        "(plan = 'pro'), or cast them (CAST(seats AS INTEGER) > 3)"
    )


# What DuckDB reads as a named parameter, `$email`; `?` and `$1` stay parameters.
PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def with_dollar_names_as_columns(predicate: exp.Expr) -> exp.Expr:
    """`$email` is the property `$email` (as an import names it), not a query parameter."""
    for placeholder in list(predicate.find_all(exp.Placeholder)):
        name = placeholder.name
        if PROPERTY_NAME.fullmatch(name):
            replaced = exp.column(f"${name}", quoted=True)
            if placeholder is predicate:
                return replaced
            placeholder.replace(replaced)
    return predicate


class PropertyNames:
    """Which plain names of a predicate name properties: those that are not a column of the
    relation. Inside a subquery a name belongs to the subquery's own relations, so it is
    left alone: `distinct_id IN (SELECT distinct_id FROM events WHERE event = 'login')`.
    """

    def __init__(self, predicate: exp.Expr, known: set[str]):
        self.known = known
        # Found once, top down: asking each name for its ancestors would walk a chain of
        # thousands of ORs once a name.
        self.in_subqueries = {
            id(column)
            for select in predicate.find_all(exp.Select)
            for column in select.find_all(exp.Column)
        }

    def names_a_property(self, node: exp.Expr) -> bool:
        return (
            isinstance(node, exp.Column)
            and not node.table
            and fold_name(node.name) not in self.known
            and id(node) not in self.in_subqueries
        )


def refuse_bare_properties(predicate: exp.Expr, names: PropertyNames, where: str) -> None:
    """A property standing as a condition is refused: what it should test is a guess.

    Its text could be read as a boolean, or its presence tested; for `delete-profiles`
    a wrong guess deletes profiles, so the user writes the comparison instead.
    """
    for condition in conditions_of(predicate):
        if names.names_a_property(condition):
            name = condition.sql(dialect="duckdb")
            raise QueryRefused(
                f"--where {where!r} uses the property {name} as a condition by itself; "
                f"compare it instead, as in `{name} = 'some text'`, `{name} IS NOT NULL` "
                f"(the property is set) or `{name} = 'true'` (a boolean that is true)",
                sql=where,
            )


def conditions_of(predicate: exp.Expr) -> Iterator[exp.Expr]:
    """The predicate and, through AND, OR, NOT and parentheses, the conditions it joins.

    Walked with a list of its own, not by recursion: a chain of thousands of ORs is as
    many levels deep."""
    pending = [predicate]
    while pending:
        condition = pending.pop()
        yield condition
        if isinstance(condition, (exp.Connector, exp.Not, exp.Paren)):
            pending.extend(condition.iter_expressions())


def property_value(name: str) -> exp.Expr:
    """`properties ->> '$."name"'`: the property as text, NULL when it is missing."""
    path = '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return exp.func("json_extract_string", exp.column(PROPERTIES), exp.Literal.string(path))


@dataclass(frozen=True)
class FeedWindow:
    """The span of a feed: the last N days up to now, or from one moment to another."""

    days: int | None = 30
    start: str | None = None
    end: str | None = None

    def describe(self) -> str:
        if self.start is None and self.end is None:
            return f"the last {self.days} days"
        return f"[{self.start or 'the start'}, {self.end or 'now'})"

    def conditions(self) -> list[exp.Expr]:
        time = exp.column(TIME)
        if self.start is None and self.end is None:
            since = exp.func("now") - exp.Interval(
                this=exp.Literal.string(str(self.days)), unit=exp.var("DAY")
            )
            return [time >= since, time <= exp.func("now")]
        bounds: list[exp.Expr] = []
        if self.start is not None:
            bounds.append(time >= instant(self.start))
        if self.end is not None:
            bounds.append(time < instant(self.end))
        else:
            bounds.append(time <= exp.func("now"))  # from a moment until now
        return bounds


def instant(text: str) -> exp.Expr:
    return exp.cast(exp.Literal.string(text), "TIMESTAMPTZ")


def feed_sql(
    entity_id: str,
    group_key: str | None,
    window: FeedWindow,
    hidden: list[str],
    event_columns: set[str],
) -> str:
    """The entity's visible events, newest first; hidden events stay out, as everywhere."""
    owner = group_key or DISTINCT_ID
    if fold_name(owner) not in event_columns:
        raise QueryRefused(
            f"no synced events table has a `{owner}` column, so no event belongs to "
            f"{group_key} {entity_id}; sync an events table that carries the group key",
            sql=owner,
        )
    query = exp.select(TIME, EVENT, DISTINCT_ID, PROPERTIES).from_("events")
    # Ids are text (rule 7): a group key column of numbers is compared as the text of
    # each number, so `010` is not `10`.
    owned_by = exp.cast(exp.column(owner), exp.DataType.build("VARCHAR"))
    query = query.where(owned_by.eq(exp.Literal.string(entity_id)))
    for condition in window.conditions():
        query = query.where(condition)
    if hidden:
        names = [exp.Literal.string(name) for name in hidden]
        query = query.where(exp.not_(exp.column(EVENT).isin(*names)))
    return query.order_by(exp.Ordered(this=exp.column(TIME), desc=True)).sql(dialect="duckdb")


def moment_of(text: str, option: str) -> dt.datetime:
    """The instant text names, read as `--at` and the store read text (rule 6); naive
    text is UTC."""
    problem = moment_text_problem(text)
    if problem:
        raise UsageError(f"{option} {text!r} is refused: {problem}")
    moment = duckdb_moment(text)
    if moment is None:
        raise UsageError(
            f"{option} {text!r} is not a moment; write ISO 8601, e.g. 2024-03-01T00:00:00Z"
        )
    return moment


def duckdb_moment(text: str) -> dt.datetime | None:
    """The instant DuckDB's cast reads in the text, its zone spelled as for `--at`."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        row = con.execute("SELECT TRY_CAST(? AS TIMESTAMPTZ)", [spelled_moment(text)]).fetchone()
    found = row[0] if row else None
    return found if isinstance(found, dt.datetime) else None
