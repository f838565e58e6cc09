"""The commands that read the store: query, profile, history, users, feed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TextIO

import duckdb
from rich.console import Console
from rich.table import Column

from pitsync.arguments import FEED_DAYS
from pitsync.commands.console import terminal, titled_table, write_relation
from pitsync.config import load_config
from pitsync.errors import QueryError, StoreError, UsageError
from pitsync.modeling.attribution import (
    Entity,
    NoHistory,
    check_group_key_known,
    entity_tables,
    interval_at_sql,
    spelled_group_key,
    timeline_sql,
)
from pitsync.modeling.staging import json_object_text_sql
from pitsync.modeling.timestamps import spelled_moment
from pitsync.queries import exact_json
from pitsync.queries.execute import QuerySession
from pitsync.queries.output import TABLE_ROW_LIMIT, formatted, printable, write_json
from pitsync.queries.profiles import FeedWindow, feed_sql, moment_of, profiles_sql, with_text_hint
from pitsync.queries.temporal import moment_text_problem
from pitsync.quoting import fold_name, quote_identifier, quote_string
from pitsync.store import END_TIME, START_TIME

log = logging.getLogger("pitsync")


def command_query(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        write_relation(session.query(args.sql), args.format)
    return 0


def command_profile(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        entity = entity_named(session, args)
        moment = resolve_moment(session, args.at)
        if not means_now(args.at):
            properties = history_then(session, entity, moment)
            if not properties:
                log.warning(
                    "no history property of %s is defined at %s: before its first row, or "
                    "after NULLs, nothing is known (rules 2 and 5)",
                    entity.describe(),
                    moment,
                )
        else:
            latest = latest_profile(session, entity)
            properties = latest if latest is not None else history_profile(session, entity, moment)
    if args.format == "json":
        print(exact_json.dumps(properties, indent=2))
        return 0
    table = titled_table(printable(f"{entity.describe()} at {moment}"), "property", "value")
    for name, value in properties.items():
        table.add_row(printable(name), printable(as_text(value)))
    terminal().print(table)
    return 0


def entity_named(session: QuerySession, args: argparse.Namespace) -> Entity:
    """The entity the command names, its group key spelled as the store spells it."""
    return Entity(str(args.id), spelled_group_key(session.connection, args.group_key))


def as_text(value: object) -> str:
    """A property value in a terminal table: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else exact_json.dumps(value, ensure_ascii=False)


def latest_profile(session: QuerySession, entity: Entity) -> dict[str, object] | None:
    """The merged profile now (updates and history), with `$last_seen`; None if none."""
    if entity.group_key:
        sql = (
            "SELECT properties, last_seen FROM group_profiles WHERE group_key = ? AND group_id = ?"
        )
        parameters = [entity.group_key, entity.entity_id]
    else:
        sql = "SELECT properties, last_seen FROM user_profiles WHERE distinct_id = ?"
        parameters = [entity.entity_id]
    rows = formatted(session.query(sql, parameters), nested_as_json=True).fetchall()
    if not rows:
        return None
    properties, last_seen = rows[0]
    merged: dict[str, object] = exact_json.loads(properties)
    if last_seen is not None:
        merged["$last_seen"] = last_seen
    return merged


def history_profile(session: QuerySession, entity: Entity, moment: str) -> dict[str, object]:
    """The history properties at the moment; an unknown entity says where it was sought."""
    try:
        return profile_at(session, entity, moment)
    except NoHistory as error:
        reason = str(error).removeprefix(f"{entity.describe()} has ")
        raise StoreError(f"{entity.describe()} has no profile, and {reason}") from None


def history_then(session: QuerySession, entity: Entity, moment: str) -> dict[str, object]:
    """The history properties at a moment other than now. Updates keep no history, so an
    entity with a profile but no history rows is told what --at reads."""
    try:
        return profile_at(session, entity, moment)
    except NoHistory as error:
        if latest_profile(session, entity) is None:
            raise
        raise StoreError(
            f"{entity.describe()} has a profile, but --at reads history tables only (profile "
            f"updates keep no history), and {error.found}; leave --at out for its profile now"
        ) from None


def resolve_moment(session: QuerySession, text: str) -> str:
    """The moment as ISO text in UTC; 'now' is the store clock's now."""
    now = means_now(text)
    problem = None if now else moment_text_problem(text)
    if problem:
        raise UsageError(f"--at {text!r} is refused: {problem}")
    sql = "SELECT now() AS moment" if now else "SELECT CAST(? AS TIMESTAMPTZ) AS moment"
    try:
        relation = session.connection.sql(sql, params=[] if now else [spelled_moment(text)])
        rows = formatted(relation, nested_as_json=False).fetchall()
    except duckdb.Error as error:
        raise UsageError(
            f"--at {text!r} is not a moment; write ISO 8601, e.g. 2024-03-01T00:00:00Z"
        ) from error
    return str(rows[0][0])


def means_now(text: str) -> bool:
    """Whether `--at` asks for now, in any case (`now`, `NOW`)."""
    return text.strip().lower() == "now"


def profile_at(session: QuerySession, entity: Entity, moment: str) -> dict[str, object]:
    """The entity's defined properties at the moment, merged across its history tables."""
    merged: dict[str, object] = {}
    for entry in entity_tables(session.connection, entity):
        interval = session.connection.sql(
            interval_at_sql(entry), params=[entity.entity_id, moment, moment]
        )
        text = formatted(interval, nested_as_json=False)
        properties = json_object_text_sql(entry.properties)
        rows = text.select(f"{properties}, {defined_names_sql(entry.properties)}").fetchall()
        for row, defined in rows:
            values = exact_json.loads(row)
            merged.update({name: values[name] for name in defined})
    return merged


def defined_names_sql(columns: list[str]) -> str:
    """The list of the columns that are not NULL (rule 5: defined). A JSON column holding
    `null` is defined: it holds that value."""
    names = ", ".join(
        f"CASE WHEN {quote_identifier(name)} IS NOT NULL THEN {quote_string(name)} END"
        for name in columns
    )
    return f"list_filter([{names}], lambda name: name IS NOT NULL)"


def command_history(args: argparse.Namespace) -> int:
    """Each history table's intervals of the entity, oldest first, a batch at a time."""
    config = load_config(args.config)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        entity = entity_named(session, args)
        timelines = [
            (entry.table_name, timeline(session, entry, entity))
            for entry in entity_tables(session.connection, entity)
        ]
        if args.format == "json":
            write_timelines(timelines, sys.stdout)
            return 0
        console = terminal()
        for name, intervals in timelines:
            print_timeline(console, name, entity, intervals)
    return 0


def timeline(session: QuerySession, entry, entity: Entity) -> duckdb.DuckDBPyRelation:
    """The entity's intervals in one table: start, end and every property."""
    relation = session.connection.sql(timeline_sql(entry), params=[entity.entity_id])
    columns = [START_TIME, END_TIME, *entry.properties]
    return relation.select(*(quote_identifier(column) for column in columns))


def write_timelines(timelines: list[tuple[str, duckdb.DuckDBPyRelation]], out: TextIO) -> None:
    """`{"table": [interval, ...], ...}`, every table's intervals streamed as `query` does."""
    for number, (name, intervals) in enumerate(timelines):
        out.write(("{" if number == 0 else ",") + "\n" + json.dumps(name) + ": ")
        write_json(intervals, out, end="")
    out.write("\n}\n" if timelines else "{}\n")


# Two moments of 25 characters, each in a cell of 3 more, and 20 for the properties.
WHOLE_MOMENTS_WIDTH = 2 * (25 + 3) + 20


def print_timeline(
    console: Console, name: str, entity: Entity, intervals: duckdb.DuckDBPyRelation
) -> None:
    """The first intervals as a terminal table, and how many more there are."""
    title = printable(f"{entity.describe()} in {name}")
    # Nothing is cut: a narrow terminal folds the properties onto more lines, and the
    # moments too when it is narrower than two of them and a little room.
    whole = console.width >= WHOLE_MOMENTS_WIDTH
    table = titled_table(
        title,
        Column("from", overflow="fold", no_wrap=whole),
        Column("until", overflow="fold", no_wrap=whole),
        Column("properties", overflow="fold"),
    )
    text = formatted(intervals, nested_as_json=False)
    counted = f"{json_object_text_sql(text.columns)}, count(*) OVER ()"
    shown = text.select(counted).limit(TABLE_ROW_LIMIT).fetchall()
    for row, _ in shown:
        interval = exact_json.loads(row)
        properties = {k: v for k, v in interval.items() if k not in (START_TIME, END_TIME)}
        defined = ", ".join(f"{k}={as_text(v)}" for k, v in properties.items() if v is not None)
        table.add_row(
            str(interval[START_TIME]),
            str(interval[END_TIME] or "(open)"),
            printable(defined) or "(nothing defined)",
        )
    total = shown[0][1] if shown else 0
    if not total:
        table.add_row("-", "-", "(no rows)")
    console.print(table)
    if total > TABLE_ROW_LIMIT:
        more = total - TABLE_ROW_LIMIT
        console.print(f"{more} more intervals not shown; use --format json for all")


def command_users(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        group_key = spelled_group_key(session.connection, args.group_key)
        if group_key is not None:
            check_group_key_known(session.connection, group_key)
        sql = profiles_sql(group_key, args.where, args.limit)
        try:
            write_relation(session.query(sql), args.format)
        except QueryError as error:
            raise with_text_hint(error, args.where) from error
    return 0


def command_feed(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.end is not None and args.start is None:
        raise UsageError("--to goes with --from: give both, or --days for the last days")
    start = moment_of(args.start, "--from") if args.start is not None else None
    end = moment_of(args.end, "--to") if args.end is not None else None
    if start and end and start >= end:
        raise UsageError(f"--from {args.start} is not before --to {args.end}; swap them")
    window = FeedWindow(
        days=args.days or 30,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
    )
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        columns = {fold_name(name) for name in session.connection.sql("FROM events").columns}
        sql = feed_sql(str(args.id), args.group_key, window, args.hide, columns)
        if not write_relation(session.query(sql), args.format):
            everything = feed_sql(str(args.id), args.group_key, window, [], columns)
            hidden = session.query(f"SELECT count(*) FROM ({everything})").fetchall()[0][0]
            log.warning(
                "no events of %s in %s%s",
                Entity(str(args.id), args.group_key).describe(),
                window.describe(),
                further_back_hint(window, hidden),
            )
    return 0


def further_back_hint(window: FeedWindow, hidden: int) -> str:
    """Where else the events may be: further back, or among the `hidden` ones --hide left
    out of the window."""
    hints = []
    if hidden:
        hints.append(f"--hide left out {hidden} of its events here")
    if window.start is None and window.end is None:
        longer = "a longer --days, or " if (window.days or 0) < max(FEED_DAYS) else ""
        hints.append(f"{longer}--from/--to looks further back")
    return "; " + "; ".join(hints) if hints else ""
