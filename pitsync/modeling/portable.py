"""The interval modeling as SQL for the engine where the data lives, from one sqlglot tree.

For tables too large to copy, `pitsync model` prints (or runs) the same rules in the
warehouse's own SQL: one expression tree, printed in the engine's dialect, so quoting,
types and NULL ordering follow each engine's rules without a template per engine.

    intervals:  each row ends where its entity's next row starts (DESIGN rules 1-5);
                a row that lost a tie ends at its own start, and is left out; in
                append mode, only a key's rows of its greatest cursor value count;
    enriched:   every event with the properties of the interval holding its time.

What stays with the sync job: quarantine (the rows the store would quarantine, such as
rows without an id or a start time, or starting at an infinity, are left out here, not
recorded) and time parsing (the start column is compared as the engine stores it, so it
should already be a timestamp; a naive one is read in the table's `timezone` where the
engine's AT TIME ZONE does so).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from pitsync.config import TableConfig
from pitsync.store import END_TIME, START_TIME

ENGINES = ("duckdb", "postgres", "spark", "snowflake", "bigquery")

# Engines whose times reach past years 1 to 9999 (infinities, and later years). A row
# starting there names no moment: the store quarantines it (rule 8), and the view here
# leaves it out, when the start column holds times. The other engines' times stop there.
UNBOUNDED_TIME_ENGINES = {"duckdb", "postgres", "spark"}

# Engines where `naive AT TIME ZONE zone` reads a naive time in that zone, as rule 6 does.
# Spark and Snowflake spell it as a conversion the other way, BigQuery reads DATETIMEs only.
ZONE_ENGINES = {"duckdb", "postgres"}
FIRST_MOMENT, LAST_MOMENT = "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"
# An append-mode table's greatest cursor value at each key, beside the source's columns.
LATEST_LOAD = "__pitsync_latest_load"
# The source's rows, its rows of each key's latest load, and its ranked rows, as the
# intervals query names them: names no source column can have (they are refused), since
# in BigQuery a bare name that is also a table's or a subquery's means that whole row.
ROWS, LOADED, RANKED = "__pitsync_rows", "__pitsync_loaded", "__pitsync_ranked"

# PostgreSQL sorts text by the database's locale, and a DuckDB column may be declared
# with a collation (NOCASE); the store and the other engines sort by code point. Binary
# collation makes tie resolution, which orders by property values, and the latest load
# come out the same everywhere.
BINARY_COLLATION = {"postgres": "C", "duckdb": "binary"}


@dataclass(frozen=True)
class ModelSql:
    """The statements that build one history table's views in one engine."""

    intervals: exp.Create
    enriched: exp.Create | None

    def statements(self) -> list[exp.Create]:
        return [self.intervals] + ([self.enriched] if self.enriched is not None else [])


def identifier_column(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def in_zone(
    column: exp.Expression, zone: str | None, *, nanoseconds: bool = False
) -> exp.Expression:
    """A naive time read in `zone` (None: the column as the engine stores it); of a
    column of `nanoseconds` (DuckDB's TIMESTAMP_NS), the microseconds it starts in."""
    if zone is None:
        return column
    naive = to_microseconds(column) if nanoseconds else exp.cast(column, "TIMESTAMP")
    return exp.AtTimeZone(this=naive, zone=exp.Literal.string(zone))


def to_microseconds(column: exp.Expression) -> exp.Expression:
    """A TIMESTAMP_NS cut down to its microsecond (rule 6), in DuckDB's functions.

    DuckDB's cast rounds (00:00:00.000000999 to 00:00:00.000001); the nanoseconds past
    the microsecond are taken off the epoch first, also before 1970, where they count
    down to it.
    """
    nanos = exp.Anonymous(this="epoch_ns", expressions=[column])
    thousand = exp.Literal.number(1000)
    past = exp.Mod(
        this=exp.paren(exp.Add(this=exp.Mod(this=nanos, expression=thousand), expression=thousand)),
        expression=thousand.copy(),
    )
    micros = exp.IntDiv(
        this=exp.paren(exp.Sub(this=nanos.copy(), expression=past)), expression=thousand.copy()
    )
    return exp.UnixToTime(this=micros, scale=exp.Literal.number(6))


def intervals_query(
    history: TableConfig,
    properties: list[str],
    source: exp.Table,
    *,
    text_properties: set[str],
    bounded_start: bool,
    start_zone: str | None = None,
    start_nanoseconds: bool = False,
    zoned_bounds: bool = False,
) -> exp.Select:
    """SELECT id, start_time, end_time, properties... of the non-empty intervals.

    With `bounded_start`, rows starting outside years 1 to 9999 are left out (see
    `UNBOUNDED_TIME_ENGINES`), bounds given in UTC with `zoned_bounds`; with
    `start_zone`, a naive start is read in that zone (cut to its microsecond, with
    `start_nanoseconds`).
    Entities are told apart by their ids' text (rule 7), as the store keys them: numeric
    ids `1.0` and `1.00` are two entities.
    """
    entity = identifier_column(history.id_column)
    start = in_zone(
        identifier_column(history.start_time or ""), start_zone, nanoseconds=start_nanoseconds
    )
    as_text = exp.cast(entity.copy(), "VARCHAR")
    good = readable(entity, start, as_text)
    if bounded_start:
        good.append(within_moments(start.copy(), zoned=zoned_bounds))
    rows: exp.Expr = source.as_(exp.to_identifier(ROWS, quoted=True))
    kept: exp.Expr = exp.and_(*good)
    if history.mode == "append" and history.cursor:
        loaded = sortable(identifier_column(history.cursor), text_properties)
        rows, kept = latest_load(rows, kept, loaded, [as_text.copy(), start.copy()])

    following = exp.Window(
        this=exp.Lead(this=start.copy()),
        partition_by=[as_text.copy()],
        order=interval_order(history, start, properties, text_properties),
    )
    ranked = (
        exp.select(
            exp.alias_(as_text, history.id_column, quoted=True),
            exp.alias_(start.copy(), START_TIME, quoted=True),
            exp.alias_(following, END_TIME, quoted=True),
            *(identifier_column(name) for name in properties),
        )
        .from_(rows)
        .where(kept)
    )
    return non_empty_intervals(ranked, history, properties)


def readable(entity: exp.Column, start: exp.Expr, as_text: exp.Expr) -> list[exp.Expr]:
    """The conditions of a row the store keeps: an id that is not empty, and a start."""
    return [
        entity.copy().is_(exp.null()).not_(),
        start.copy().is_(exp.null()).not_(),
        exp.NEQ(this=as_text.copy(), expression=exp.Literal.string("")),
    ]


def interval_order(
    history: TableConfig, start: exp.Expr, properties: list[str], text_properties: set[str]
) -> exp.Order:
    """Rows of an entity by start, then those of one start by tie-breaker and property
    values (NULL lowest), so the last of a start is its winner whatever the input order."""
    tie = [identifier_column(history.tie_breaker)] if history.tie_breaker else []
    order = [exp.Ordered(this=start.copy(), desc=False, nulls_first=True)]
    for column in [*tie, *(identifier_column(name) for name in properties)]:
        order.append(exp.Ordered(this=sortable(column, text_properties), nulls_first=True))
    return exp.Order(expressions=order)


def non_empty_intervals(
    ranked: exp.Select, history: TableConfig, properties: list[str]
) -> exp.Select:
    """The intervals of `ranked` that hold a moment: a row that lost a tie ends where it
    starts."""
    end, begin = identifier_column(END_TIME), identifier_column(START_TIME)
    holds_a_moment = exp.or_(end.is_(exp.null()), exp.GT(this=end.copy(), expression=begin))
    return (
        exp.select(
            identifier_column(history.id_column),
            identifier_column(START_TIME),
            identifier_column(END_TIME),
            *(identifier_column(name) for name in properties),
        )
        .from_(ranked.subquery(exp.to_identifier(RANKED, quoted=True)))
        .where(holds_a_moment)
    )


def latest_load(
    source: exp.Expr, good: exp.Expr, loaded: exp.Expression, key: list[exp.Expression]
) -> tuple[exp.Subquery, exp.Expr]:
    """The good rows of `source` that an append sync keeps, and the condition that keeps
    them: of each key's rows, those of its greatest cursor value (`loaded`: the cursor
    column, text by code point, as the store compares it; the key's latest load, see
    `latest_load_sql`); a row without a cursor value is quarantined there.

    The greatest value is taken over the good rows only, as the store takes it after
    quarantine, so it is a column of a subquery, and the condition compares with it.
    """
    greatest = exp.Window(this=exp.Max(this=loaded.copy()), partition_by=key)
    rows = (
        exp.select(exp.Star(), exp.alias_(greatest, LATEST_LOAD, quoted=True))
        .from_(source.copy())
        .where(exp.and_(good, loaded.copy().is_(exp.null()).not_()))
    )
    latest = exp.EQ(this=loaded, expression=identifier_column(LATEST_LOAD))
    return rows.subquery(exp.to_identifier(LOADED, quoted=True)), latest


def within_moments(start: exp.Expression, *, zoned: bool) -> exp.Expression:
    """`start BETWEEN year 1 AND the end of year 9999`, which leaves the infinities out.

    Against zoned times the bounds are instants in UTC, as the store's are, so no session
    zone moves them; otherwise they are plain timestamps.
    """
    offset, kind = ("+00", "TIMESTAMPTZ") if zoned else ("", "TIMESTAMP")
    low, high = (
        exp.cast(exp.Literal.string(moment + offset), kind)
        for moment in (FIRST_MOMENT, LAST_MOMENT)
    )
    return exp.Between(this=start, low=low, high=high)


def sortable(column: exp.Column, text_properties: set[str]) -> exp.Expression:
    """Text columns are ordered by code point (the COLLATE is printed where it matters)."""
    if column.name in text_properties:
        return exp.Collate(this=column, expression=exp.Literal.string("binary"))
    return column


def enriched_query(
    events: TableConfig,
    events_source: exp.Table,
    history: TableConfig,
    intervals: exp.Table,
    properties: list[str],
    event_columns: list[str],
    *,
    join_column: str,
    time_zone: str | None = None,
    time_nanoseconds: bool = False,
    bounded_time: bool = False,
    zoned_bounds: bool = False,
) -> exp.Select:
    """Each event the store keeps with the properties of the interval holding its time
    (NULLs if none), joined by the events' `join_column`.

    With `time_zone`, a naive event time is read in that zone; `time_nanoseconds`,
    `bounded_time` and `zoned_bounds` are as the `start_` ones and `zoned_bounds` of
    `intervals_query`.
    """
    event_time = in_zone(
        identifier_column(events.time_column, "e"), time_zone, nanoseconds=time_nanoseconds
    )
    holds = exp.and_(
        exp.EQ(
            this=identifier_column(history.id_column, "h"),
            expression=exp.cast(identifier_column(join_column, "e"), "VARCHAR"),
        ),
        exp.LTE(this=identifier_column(START_TIME, "h"), expression=event_time.copy()),
        exp.paren(
            exp.or_(
                identifier_column(END_TIME, "h").is_(exp.null()),
                exp.GT(this=identifier_column(END_TIME, "h"), expression=event_time.copy()),
            )
        ),
    )
    taken = {name.lower() for name in event_columns}
    chosen = []
    for name in properties:
        alias = unique_name(name, history.name, taken)
        taken.add(alias.lower())
        chosen.append(exp.alias_(identifier_column(name, "h"), alias, quoted=True))
    kept = stored_events(events, event_time, bounded_time=bounded_time, zoned_bounds=zoned_bounds)
    return (
        exp.select(*(identifier_column(name, "e") for name in event_columns), *chosen)
        .from_(events_source.as_(exp.to_identifier("e", quoted=True)))
        .join(intervals.as_(exp.to_identifier("h", quoted=True)), on=holds, join_type="LEFT")
        .where(kept)
    )


def stored_events(
    events: TableConfig, event_time: exp.Expression, *, bounded_time: bool, zoned_bounds: bool
) -> exp.Expr:
    """True for an event the store keeps: it has a name and a time (within years 1 to
    9999 with `bounded_time`), and in append mode a cursor value and, where one is
    configured, an insert id. The store quarantines the others (`EventsModel.rejections`).
    """
    name = exp.cast(identifier_column(events.event_column, "e"), "VARCHAR")
    kept = [
        name.is_(exp.null()).not_(),
        exp.NEQ(this=name.copy(), expression=exp.Literal.string("")),
        identifier_column(events.time_column, "e").is_(exp.null()).not_(),
    ]
    if bounded_time:
        kept.append(within_moments(event_time.copy(), zoned=zoned_bounds))
    if events.mode == "append":
        for column in (events.cursor, events.insert_id):
            if column:
                kept.append(identifier_column(column, "e").is_(exp.null()).not_())
        if events.insert_id:
            # An empty insert id is no id either.
            insert_id = exp.cast(identifier_column(events.insert_id, "e"), "VARCHAR")
            kept.append(exp.NEQ(this=insert_id, expression=exp.Literal.string("")))
    return exp.and_(*kept)


def unique_name(name: str, prefix: str, taken: set[str]) -> str:
    """A property's column name in the enriched view, unlike any other (engines such as
    Spark compare names without case)."""
    candidate, number = name, 1
    while candidate.lower() in taken:
        candidate = f"{prefix}_{name}" if number == 1 else f"{prefix}_{name}_{number}"
        number += 1
    return candidate


def view(name: exp.Table, query: exp.Select, *, engine: str) -> exp.Create:
    """CREATE OR REPLACE VIEW; a temporary one on Spark, whose local session has no catalog."""
    properties = [exp.TemporaryProperty()] if engine == "spark" else []
    return exp.Create(
        this=name,
        kind="VIEW",
        replace=True,
        expression=query,
        properties=exp.Properties(expressions=properties) if properties else None,
    )


def for_engine(statement: exp.Expression, engine: str) -> exp.Expression:
    """The tree with binary collation spelled as the engine spells it, or left out."""
    tree = statement.copy()
    for collate in list(tree.find_all(exp.Collate)):
        collation = BINARY_COLLATION.get(engine)
        if collation is None:
            collate.replace(collate.this)  # the engine compares text by code point already
        else:
            collate.set("expression", exp.to_identifier(collation, quoted=True))
    return tree


def render(statement: exp.Expression, engine: str) -> str:
    """The statement as text in the engine's dialect."""
    return for_engine(statement, engine).sql(dialect=engine, pretty=True)
