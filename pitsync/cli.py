"""The `pitsync` command line: sync, schedule, runs, query, profile, history, model.

Exit status: 0 on success, 1 on a user or data error (a message, no traceback unless
--verbose), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import duckdb
from rich.console import Console
from rich.table import Column, Table

from pitsync.arguments import build_parser
from pitsync.config import Config, load_config
from pitsync.connectors.csv_import import import_csv, preview_csv
from pitsync.connectors.engines import execute_on_postgres, execute_on_spark, plan_model_sql
from pitsync.connectors.profile_updates import (
    UpdateReport,
    apply_file,
    counted,
    delete_profiles,
)
from pitsync.connectors.runs import RunRecord, read_runs
from pitsync.connectors.schedule import (
    Scheduler,
    last_successful_runs,
    scheduled_tables,
    stop_on_signals,
    sync_runner,
)
from pitsync.connectors.stored_tables import drop_table, unconfigured_tables
from pitsync.connectors.sync import SyncOptions, check_ownership_of, sync_tables
from pitsync.errors import (
    OutputError,
    PitsyncError,
    QueryError,
    StoreError,
    UsageError,
    first_line,
    with_memory_advice,
)
from pitsync.interrupts import is_interrupt
from pitsync.modeling.attribution import (
    Entity,
    NoHistory,
    check_group_key_known,
    entity_tables,
    interval_at_sql,
    timeline_sql,
)
from pitsync.modeling.staging import json_object_text_sql
from pitsync.modeling.timestamps import spelled_moment
from pitsync.queries import exact_json
from pitsync.queries.execute import QuerySession
from pitsync.queries.output import (
    TABLE_ROW_LIMIT,
    ClosedOutput,
    WholeOutput,
    formatted,
    printable,
    write_csv,
    write_json,
    write_table,
)
from pitsync.queries.profiles import (
    FeedWindow,
    feed_sql,
    moment_of,
    profiles_sql,
    with_text_hint,
)
from pitsync.queries.temporal import moment_text_problem
from pitsync.quoting import quote_identifier
from pitsync.store import END_TIME, START_TIME, open_read_only

log = logging.getLogger("pitsync")

SIGPIPE_STATUS = 141  # what a shell reports for a program ended by SIGPIPE
USAGE_STATUS = 2  # argparse's, for options that do not go together
PIPE_WIDTH = 160  # rich would squeeze tables into 80 columns when not on a terminal


# The commands that record runs in the store; the others change nothing there.
RUN_COMMANDS = {"sync", "schedule", "engage", "import-csv", "delete-profiles", "drop-table"}


def interrupted(command: str | None = None) -> int:
    """Say what a Ctrl-C left, for the command it stopped (None: not known yet)."""
    if command is not None and command not in RUN_COMMANDS:
        print("pitsync: interrupted", file=sys.stderr)
    else:
        print(
            "pitsync: interrupted; nothing in progress was kept (the run in progress rolls "
            "back, and runs that finished stay committed: see `pitsync runs`)",
            file=sys.stderr,
        )
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    command = None
    standard_output = sys.stdout
    # A TextIO in all but name; None: the command started with its standard output closed.
    wrapped = ClosedOutput() if standard_output is None else WholeOutput(standard_output)
    sys.stdout = wrapped  # type: ignore[assignment]
    try:
        # Reading the command line takes a moment too, on a busy machine.
        args = build_parser().parse_args(argv)
        command = args.command
        configure_logging(verbose=args.verbose)
        return run_command(args)
    except KeyboardInterrupt:
        return interrupted(command)
    except OutputError as error:  # --help or --version, written as the command line is read
        print_error(error)
        return 1
    finally:
        sys.stdout = standard_output


def run_command(args: argparse.Namespace) -> int:
    """The command's handler; its errors as one line and an exit status."""
    handler = HANDLERS[args.command]
    try:
        status = handler(args)
        sys.stdout.flush()  # here, where a failure is reported, not as Python exits
        return status
    except PitsyncError as error:
        if args.verbose:
            log.exception("failed")
        print_error(error)
        return USAGE_STATUS if isinstance(error, UsageError) else 1
    except RuntimeError as error:  # DuckDB stops a query on Ctrl-C with its own error
        if not is_interrupt(error):
            raise
        return interrupted(args.command)
    except duckdb.OutOfMemoryException as error:
        print_error(out_of_memory(error))
        return 1
    except BrokenPipeError:
        # The reader went away (`pitsync runs | head`): stop quietly, as a SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS


def out_of_memory(error: BaseException) -> str:
    """DuckDB's first line, and what to do."""
    return with_memory_advice(f"{first_line(error)}; nothing in progress was kept", error)


def print_error(error: object) -> None:
    """The one line of an error on standard error; a name from a warehouse or a command
    line may hold control characters (a newline, a terminal's escape codes), written out."""
    print(f"pitsync: error: {one_line(error)}", file=sys.stderr)


def one_line(text: object) -> str:
    """`printable`, with line ends written out too."""
    return printable(text).replace("\r", "\\r").replace("\n", "\\n")


class PrintableFormatter(logging.Formatter):
    """Log lines of one printable line each, as errors are; SQL logged in --verbose keeps
    its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        return line if record.levelno < logging.INFO else one_line(line)


class StandardErrorHandler(logging.StreamHandler):
    """Lines to standard error as it is when each comes: while a progress bar shows, that
    is the bar's own stream, which prints the line above the bar rather than across it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(*, verbose: bool) -> None:
    """Plain lines on standard error: INFO by default, DEBUG (with SQL) when verbose."""
    handler = StandardErrorHandler()
    handler.setFormatter(PrintableFormatter("pitsync: %(levelname)s: %(message)s"))
    root = logging.getLogger("pitsync")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def command_sync(args: argparse.Namespace) -> int:
    """Sync the chosen tables one after another; status 1 if any of them failed."""
    config = load_config(args.config)
    if args.all and not config.tables:
        raise PitsyncError(
            f"no table to sync: {config.path} configures none; add a [tables.NAME] section"
        )
    tables = list(config.tables.values()) if args.all else config.tables_named(args.table)
    options = SyncOptions(
        strict=args.strict, dry_run=args.dry_run, wait_seconds=args.wait, progress=None
    )
    outcomes = sync_tables(config, tables, options)
    records = [outcome.record for outcome in outcomes if outcome.record]
    failed = [outcome for outcome in outcomes if outcome.error]
    try:
        if records:
            print_sync_report(records, dry_run=args.dry_run)
        if args.all:
            warn_of_unconfigured_tables(config)
    finally:  # a report that cannot be written leaves the failures said on standard error
        for outcome in failed:
            print_error(outcome.error)
    return 1 if failed else 0


def warn_of_unconfigured_tables(config: Config) -> None:
    """One line naming the tables the store holds and the configuration no longer does."""
    names = unconfigured_tables(config)
    if names:
        log.warning(
            "the store holds tables no longer configured: %s; they answer queries and own "
            "their properties until `pitsync drop-table NAME` removes them",
            ", ".join(printable(name) for name in names),
        )


def print_sync_report(records: list[RunRecord], *, dry_run: bool = False) -> None:
    title = "dry run: what a sync would do (nothing was applied)" if dry_run else "sync report"
    table = Table(title=title)
    table.add_column("table", no_wrap=True)
    headings = ("rows read", "inserted", "updated", "deleted", "quarantined", "conflicts")
    for heading in (*headings, "entities", "seconds"):
        table.add_column(heading, justify="right")
    for record in records:
        table.add_row(
            record.table_name,
            str(record.rows_read),
            str(record.inserted),
            str(record.updated),
            str(record.deleted),
            str(record.quarantined),
            str(record.conflicts),
            str(record.entities_changed),
            f"{record.seconds:.2f}",
        )
    terminal().print(table)


RUN_COLUMNS = (
    *("run_id", "table", "mode", "status", "started (UTC)", "seconds", "read"),
    *("inserted", "updated", "deleted", "quarantined", "conflicts", "entities"),
)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def command_runs(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    con = open_read_only(config.store_path, config.memory_limit, args.wait)
    try:
        records = read_runs(con, args.table)
    finally:
        con.close()
    if args.format == "json":
        print(json.dumps([record.as_json() for record in records], indent=2))
        return 0
    # A narrow terminal wraps the cells rather than cutting table names and times short;
    # the error column is shown when a run has one.
    errors = any(r.error for r in records)
    columns = [*RUN_COLUMNS, "error"] if errors else list(RUN_COLUMNS)
    table = Table(*(Column(name, overflow="fold") for name in columns))
    for r in records:
        cells = [
            str(r.run_id),
            r.table_name,
            r.mode,
            r.status,
            utc_text(r.started_at),
            f"{r.seconds:.2f}" if r.finished_at else "",
            *(str(n) for n in (r.rows_read, r.inserted, r.updated, r.deleted)),
            *(str(n) for n in (r.quarantined, r.conflicts, r.entities_changed)),
        ]
        table.add_row(*cells, *([printable(r.error or "")] if errors else []))
    terminal().print(table)
    return 0


def command_query(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        write_relation(session.query(args.sql), args.format)
    return 0


def command_profile(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    entity = Entity(str(args.id), args.group_key)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        moment = resolve_moment(session, args.at)
        if not means_now(args.at):
            properties = history_then(session, entity, moment)
        else:
            latest = latest_profile(session, entity)
            properties = latest if latest is not None else history_profile(session, entity, moment)
    if args.format == "json":
        print(exact_json.dumps(properties, indent=2))
        return 0
    table = Table("property", "value", title=printable(f"{entity.describe()} at {moment}"))
    for name, value in properties.items():
        table.add_row(printable(name), printable(as_text(value)))
    terminal().print(table)
    return 0


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
    problem = moment_text_problem(text)
    if problem:
        raise PitsyncError(f"--at {text!r} is refused: {problem}")
    now = means_now(text)
    sql = "SELECT now() AS moment" if now else "SELECT CAST(? AS TIMESTAMPTZ) AS moment"
    try:
        relation = session.connection.sql(sql, params=[] if now else [spelled_moment(text)])
        rows = formatted(relation, nested_as_json=False).fetchall()
    except duckdb.Error as error:
        raise PitsyncError(
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
        rows = text.select(json_object_text_sql(entry.properties)).fetchall()
        for (row,) in rows:
            values = exact_json.loads(row)
            merged.update({name: value for name, value in values.items() if value is not None})
    return merged


def command_history(args: argparse.Namespace) -> int:
    """Each history table's intervals of the entity, oldest first, a batch at a time."""
    config = load_config(args.config)
    entity = Entity(str(args.id), args.group_key)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
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


def print_timeline(
    console: Console, name: str, entity: Entity, intervals: duckdb.DuckDBPyRelation
) -> None:
    """The first intervals as a terminal table, and how many more there are."""
    title = printable(f"{entity.describe()} in {name}")
    table = Table("from", "until", "properties", title=title)
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


SCHEDULE_EXAMPLE = 'schedule = "0 * * * *" (or @hourly, @daily)'


def command_schedule(args: argparse.Namespace) -> int:
    """The long-running job: each scheduled table runs when due; SIGTERM stops it."""
    config = load_config(args.config)
    tables = scheduled_tables(config)
    if args.table:
        tables = config.tables_named(args.table)
    unscheduled = [table.name for table in tables if not table.schedule]
    if unscheduled:
        raise PitsyncError(
            f"table `{unscheduled[0]}` has no schedule: set {SCHEDULE_EXAMPLE} in "
            f"[tables.{unscheduled[0]}], or leave it out of --table"
        )
    if not tables:
        raise PitsyncError(f"no table to schedule: set {SCHEDULE_EXAMPLE} in [tables.NAME]")
    stopping = threading.Event()
    stop_on_signals(stopping)  # first: reading the sources below may take a while
    check_ownership_of(config, tables)  # as `sync --all` does, before any table runs
    runner = sync_runner(config, SyncOptions(wait_seconds=args.wait, stop=stopping))
    last_runs = last_successful_runs(config, args.wait, stopping)
    Scheduler(tables, runner, last_runs, stopping=stopping).serve()
    return 0


def command_engage(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = apply_file(config, args.file, strict=args.strict, wait=args.wait)
    print_update_report(report)
    return 0


def print_update_report(report: UpdateReport) -> None:
    """Rejections and warnings on standard error, by line; the summary on standard output."""
    messages = [*report.rejections, *(f"line {n}: {m}" for n, m in report.outcome.refused)]
    for message in messages:
        log.warning("rejected %s", message)
    hidden = report.rejected + report.refused_for_limit - len(messages)
    if hidden > 0:
        log.warning("... and %d more rejected records (see the quarantine relation)", hidden)
    for message in report.outcome.warnings:
        log.warning("%s", message)
    unshown = report.outcome.warning_count - len(report.outcome.warnings)
    if unshown > 0:
        log.warning("... and %d more warnings", unshown)
    print(report.summary())


def command_import_csv(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    columns = dict(args.column)
    if len(columns) < len(args.column):
        raise UsageError("a column is mapped twice: give each column one --column N=NAME")
    mapping = {"id_column": args.id_column, "columns": columns, "group_key": args.group_key}
    if args.dry_run:
        print_csv_preview(preview_csv(args.file, **mapping))
    report = import_csv(
        config, args.file, **mapping, dry_run=args.dry_run, strict=args.strict, wait=args.wait
    )
    print_update_report(report)
    return 0


def print_csv_preview(rows: list[tuple[str | None, dict[str, object]]]) -> None:
    table = Table("id", "properties", title="dry run: the first rows as mapped (nothing applied)")
    for profile_id, properties in rows:
        shown = printable(json.dumps(properties, ensure_ascii=False))
        table.add_row(printable(profile_id) if profile_id else "(generated)", shown)
    terminal().print(table)


def command_users(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sql = profiles_sql(args.group_key, args.where, args.limit)
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        if args.group_key is not None:
            check_group_key_known(session.connection, args.group_key)
        try:
            write_relation(session.query(sql), args.format)
        except QueryError as error:
            raise with_text_hint(error, args.where) from error
    return 0


def command_feed(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.end is not None and args.start is None:
        raise UsageError("--to goes with --from: give both, or --days for the last days")
    start = moment_of(args.start, "--from") if args.start else None
    end = moment_of(args.end, "--to") if args.end else None
    if start and end and start >= end:
        raise PitsyncError(f"--from {args.start} is not before --to {args.end}; swap them")
    window = FeedWindow(
        days=args.days or 30,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
    )
    with QuerySession(config.store_path, config.memory_limit, args.wait) as session:
        columns = {name.lower() for name in session.connection.sql("FROM events").columns}
        sql = feed_sql(str(args.id), args.group_key, window, args.hide, columns)
        if not write_relation(session.query(sql), args.format):
            log.warning(
                "no events of %s in %s; a longer --days, or --from/--to, looks further back",
                Entity(str(args.id), args.group_key).describe(),
                window.describe(),
            )
    return 0


def write_relation(relation: duckdb.DuckDBPyRelation, output: str) -> int:
    """Write the rows in the chosen format; returns how many there were."""
    if output == "csv":
        return write_csv(relation, sys.stdout)
    if output == "json":
        return write_json(relation, sys.stdout)
    return write_table(relation, terminal())


def command_delete_profiles(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = delete_profiles(
        config, ids=args.id, where=args.where, group_key=args.group_key, wait=args.wait
    )
    print_update_report(report)
    return 0


def command_drop_table(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    dropped = drop_table(config, args.name, wait=args.wait)
    name, rows = dropped.entry.table_name, counted(dropped.record.deleted, "row")
    print(
        f"dropped {printable(name)} ({dropped.entry.kind}, {rows}) from the store; its runs "
        f"stay (run {dropped.record.run_id} records the drop)"
    )
    if config.configures(name):
        print(f"{printable(name)} is still configured: the next sync loads it again from scratch")
    return 0


def command_model(args: argparse.Namespace) -> int:
    """Print the modeling SQL, or run it where the data lives."""
    config = load_config(args.config)
    check_model_options(args)
    planned = plan_model_sql(config, args.table, args.engine, args.events)
    if not args.execute:
        print(";\n\n".join(planned.rendered()) + ";")
        return 0
    if args.engine == "postgres":
        execute_on_postgres(config, args.table, planned)
        print("created views: " + ", ".join(planned.view_names))
        return 0
    tables = [args.table] + ([args.events] if args.events else [])
    output = Path(args.output) if args.output else None
    counts = execute_on_spark(config, tables, planned, output)
    for name, rows in counts.items():
        print(f"{name}: {rows} rows" + (f" written to {output / name}" if output else ""))
    return 0


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse options that do not go together before any source is read."""
    if args.execute and args.engine not in ("postgres", "spark"):
        raise UsageError(
            f"--execute runs on postgres or spark; for {args.engine}, print the SQL (without "
            "--execute) and run it in the warehouse"
        )
    if args.output and not (args.execute and args.engine == "spark"):
        raise UsageError("--output goes with --engine spark --execute, which writes Parquet")
    if args.output and Path(args.output).exists() and not Path(args.output).is_dir():
        raise PitsyncError(
            f"--output {args.output} is a file; name a folder (made if missing), where each "
            "view is written to a folder of its name"
        )


class PipedConsole(Console):
    """A console whose reader going away ends the command as the other formats end it
    (`run_command`), not with rich's own exit 1, which says an error happened."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


# What runs for each command build_parser defines.
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": command_sync,
    "runs": command_runs,
    "query": command_query,
    "profile": command_profile,
    "history": command_history,
    "schedule": command_schedule,
    "engage": command_engage,
    "import-csv": command_import_csv,
    "users": command_users,
    "feed": command_feed,
    "delete-profiles": command_delete_profiles,
    "drop-table": command_drop_table,
    "model": command_model,
}


def terminal() -> Console:
    """Rich output: the terminal's width, or a wide page when written to a pipe or file."""
    # Values are shown as they are: `[vip]` in a value is no markup, `:smile:` no emoji.
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return PipedConsole(markup=False, emoji=False, width=width)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
