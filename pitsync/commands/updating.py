"""The commands that update profiles: engage, import-csv, delete-profiles."""

from __future__ import annotations

import argparse
import json
import logging

from pitsync.commands.console import terminal, titled_table
from pitsync.config import load_config
from pitsync.connectors.csv_import import import_csv, preview_csv
from pitsync.connectors.profile_updates import UpdateReport, apply_file, delete_profiles
from pitsync.errors import UsageError
from pitsync.queries.output import printable

log = logging.getLogger("pitsync")


def command_engage(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = apply_file(config, args.file, strict=args.strict, wait=args.wait)
    print_update_report(report)
    return 0


def print_update_report(report: UpdateReport) -> None:
    """Rejections and warnings on standard error, by line; the summary on standard output."""
    messages = [*report.rejections, *report.refusals()]
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
    table = titled_table("dry run: the first rows as mapped (nothing applied)", "id", "properties")
    for profile_id, properties in rows:
        shown = printable(json.dumps(properties, ensure_ascii=False))
        table.add_row(printable(profile_id) if profile_id else "(generated)", shown)
    terminal().print(table)


def command_delete_profiles(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = delete_profiles(
        config, ids=args.id, where=args.where, group_key=args.group_key, wait=args.wait
    )
    print_update_report(report)
    missing = len(set(args.id or [])) - report.outcome.profiles_deleted
    if missing > 0:  # a typo deletes nothing, and says so
        log.warning(
            "%s of the ids given had no profile to delete (properties a history table "
            "holds are the table's, and stay)",
            missing,
        )
    return 0
