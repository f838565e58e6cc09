"""The commands that sync tables into the store, read its runs, and drop its tables:
sync, schedule, runs, drop-table."""

from __future__ import annotations

import argparse
import json
import logging
import threading
from datetime import UTC, datetime

from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table

from pitsync.commands.console import print_error, terminal
from pitsync.config import Config, load_config
from pitsync.connectors.runs import RunRecord, counted, read_runs
from pitsync.connectors.schedule import (
    Scheduler,
    last_successful_runs,
    scheduled_tables,
    stop_on_signals,
    sync_runner,
)
from pitsync.connectors.stored_tables import drop_table, unconfigured_tables
from pitsync.connectors.sync import SyncOptions, check_ownership_of, sync_tables
from pitsync.errors import PitsyncError
from pitsync.queries.output import printable
from pitsync.store import open_read_only

log = logging.getLogger("pitsync")


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


UNBOUNDED_WIDTH = 10_000  # wider than any terminal: a table's natural width
REPORT_HEADINGS = (
    *("rows read", "inserted", "updated", "deleted", "quarantined", "conflicts"),
    *("entities", "seconds"),
)


def print_sync_report(records: list[RunRecord], *, dry_run: bool = False) -> None:
    """One row per table; on a terminal too narrow for that, a line per table, which
    wraps between figures, so that no figure is ever cut short."""
    title = "dry run: what a sync would do (nothing was applied)" if dry_run else "sync report"
    rows = [report_row(record) for record in records]
    console = terminal()
    table = Table("table", *(Column(heading, justify="right") for heading in REPORT_HEADINGS))
    for row in rows:
        table.add_row(*row)
    table.title = title
    if fits(console, table):
        console.print(table)
        return
    console.print(title, highlight=False)
    for name, *figures in rows:
        counts = zip(figures, REPORT_HEADINGS, strict=True)
        line = ", ".join(f"{figure} {heading}" for figure, heading in counts)
        console.print(f"{name}: {line}", highlight=False, soft_wrap=not console.is_terminal)


def fits(console: Console, table: Table) -> bool:
    """Whether the table, every cell on one line, is no wider than the terminal."""
    unbounded = console.options.update_width(UNBOUNDED_WIDTH)
    return Measurement.get(console, unbounded, table).maximum <= console.width


def report_row(record: RunRecord) -> list[str]:
    counts = (
        *(record.rows_read, record.inserted, record.updated, record.deleted),
        *(record.quarantined, record.conflicts, record.entities_changed),
    )
    return [record.table_name, *(str(count) for count in counts), f"{record.seconds:.2f}"]


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
    if not records:  # said in words: an empty table on a narrow terminal would say nothing
        of_table = f" of table {printable(args.table)}" if args.table else ""
        terminal().print(f"no runs{of_table} are recorded", highlight=False)
        return 0
    print_runs(records)
    return 0


def print_runs(records: list[RunRecord]) -> None:
    """A row per run, with an error column when a run has one; on a terminal too narrow
    for that, a line per run, which wraps between its figures."""
    errors = any(r.error for r in records)
    table = Table(*RUN_COLUMNS, *(["error"] if errors else []))
    for r in records:
        table.add_row(*run_cells(r), *([printable(r.error or "")] if errors else []))
    console = terminal()
    if fits(console, table):
        console.print(table)
        return
    for r in records:
        run, table_name, mode, status, started, seconds, *counts = run_cells(r)
        figures = ", ".join(
            f"{count} {heading}" for count, heading in zip(counts, RUN_COLUMNS[6:], strict=True)
        )
        took = f" in {seconds}s" if seconds else ""
        line = f"run {run}: {table_name} ({mode}) {status} {started} UTC{took}: {figures}"
        error = f"; error: {printable(r.error)}" if r.error else ""
        # A terminal wraps the line between figures; a file or pipe keeps it one line.
        console.print(line + error, highlight=False, soft_wrap=not console.is_terminal)


def run_cells(r: RunRecord) -> list[str]:
    """A run's cells under RUN_COLUMNS."""
    return [
        str(r.run_id),
        r.table_name,
        r.mode,
        r.status,
        utc_text(r.started_at),
        f"{r.seconds:.2f}" if r.finished_at else "",
        *(str(n) for n in (r.rows_read, r.inserted, r.updated, r.deleted)),
        *(str(n) for n in (r.quarantined, r.conflicts, r.entities_changed)),
    ]


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
