"""The command line's commands and options: what each takes, and the checks of its
values that argparse runs before any command does."""

from __future__ import annotations

import argparse
import math
from typing import Any

from pitsync import __version__
from pitsync.config import CONFIG_ENV
from pitsync.modeling.portable import ENGINES
from pitsync.store import DEFAULT_WAIT_SECONDS

FEED_DAYS = (30, 60, 90)  # the windows `feed --days` offers

# argparse names the type of what add_subparsers returns only privately.
Subcommands = argparse._SubParsersAction


class GivenOnce(argparse.Action):
    """An option of one value that refuses a second: argparse would keep the last and drop
    the first without a word, and `delete-profiles --where A --where B` delete by B alone."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given: set[str] = vars(namespace).setdefault(GIVEN, set())
        if self.dest in given:
            parser.error(f"{option_string} was given twice; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


GIVEN = "_options_given"  # where a parse notes the options it has met


class Parser(argparse.ArgumentParser):
    """The parser of pitsync and of each of its commands: options of one value are
    `GivenOnce`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, GivenOnce)
        self.register("action", "store", GivenOnce)


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with a one-line help; the command's name is
    `command` in what it parses."""
    parser = Parser(
        prog="pitsync",
        description="Sync warehouse history tables into DuckDB and ask what was true when.",
    )
    parser.add_argument("--version", action="version", version=f"pitsync {__version__}")
    parser.add_argument(
        "--config",
        type=config_path,
        help=f"the configuration file (default: ${CONFIG_ENV}, else ./pitsync.toml)",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log the SQL that runs, and tracebacks on errors",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    waiting = waiting_options()
    add_sync(commands, waiting)
    add_runs(commands, waiting)
    add_query(commands, waiting)
    add_profile(commands, waiting)
    add_history(commands, waiting)
    add_schedule(commands, waiting)
    add_engage(commands, waiting)
    add_import_csv(commands, waiting)
    add_users(commands, waiting)
    add_feed(commands, waiting)
    add_delete_profiles(commands, waiting)
    add_drop_table(commands, waiting)
    add_model(commands)  # it reads no store, so it has no --wait
    return parser


def waiting_options() -> argparse.ArgumentParser:
    """The options of every command that opens the store."""
    waiting = Parser(add_help=False, parents=[everywhere()])
    waiting.add_argument(
        "--wait",
        type=non_negative_seconds,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait while another process holds the store "
        f"(default: {DEFAULT_WAIT_SECONDS:g})",
    )
    return waiting


def add_sync(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    sync = commands.add_parser(
        "sync", help="sync tables from their sources into the store", parents=[waiting]
    )
    which = sync.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--table",
        action="append",
        metavar="NAME",
        help="a configured table to sync (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="sync every configured table")
    sync.add_argument(
        "--strict",
        action="store_true",
        help="fail the run, applying nothing, if any row is quarantined",
    )
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="run every step, print what would be inserted, updated and deleted, then roll back",
    )


def add_runs(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    runs = commands.add_parser(
        "runs", help="list recorded sync runs, oldest first", parents=[waiting]
    )
    runs.add_argument("--table", metavar="NAME", help="only the runs of this table")
    add_format_argument(runs, ("table", "json"))


def add_query(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    query = commands.add_parser(
        "query", help="run a read-only SQL query over the store", parents=[waiting]
    )
    query.add_argument("sql", help="the query; FOR SYSTEM_TIME AS OF asks for a moment")
    add_format_argument(query, ("table", "csv", "json"))


def add_profile(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    profile = commands.add_parser(
        "profile",
        help="an entity's merged profile now, or its history properties at a moment (--at)",
        parents=[waiting],
    )
    add_entity_arguments(profile)
    profile.add_argument(
        "--at", default="now", help="the moment, ISO 8601; naive means UTC (default: now)"
    )
    add_format_argument(profile, ("table", "json"))


def add_history(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    history = commands.add_parser(
        "history", help="an entity's intervals, oldest first", parents=[waiting]
    )
    add_entity_arguments(history)
    add_format_argument(history, ("table", "json"))


def add_schedule(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    schedule = commands.add_parser(
        "schedule",
        help="run each table on its cron schedule, in the foreground, until SIGTERM",
        parents=[waiting],
    )
    schedule.add_argument(
        "--table", action="append", metavar="NAME", help="only these tables (repeatable)"
    )


def add_engage(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    engage = commands.add_parser(
        "engage",
        help="apply profile update records ($set, $add, ...) from JSON lines or a JSON array",
        parents=[waiting],
    )
    engage.add_argument("file", help="the records: a file, or - for standard input")
    engage.add_argument(
        "--strict",
        action="store_true",
        help="apply nothing if any record is rejected",
    )


def add_import_csv(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    imports = commands.add_parser(
        "import-csv",
        help="set profile properties from a CSV file without a header row",
        parents=[waiting],
    )
    imports.add_argument("file", help="the CSV file; its columns are numbered from 1")
    imports.add_argument(
        "--id-column", type=column_number, metavar="N", help="the column holding the profile id"
    )
    imports.add_argument(
        "--column",
        action="append",
        type=column_mapping,
        required=True,
        metavar="N=NAME",
        help="import column N as property NAME (repeatable); unmapped columns are skipped",
    )
    imports.add_argument(
        "--group-key", metavar="KEY", type=group_key, help="the rows are groups of this key"
    )
    imports.add_argument(
        "--dry-run", action="store_true", help="show the first rows as mapped; change nothing"
    )
    imports.add_argument(
        "--strict", action="store_true", help="apply nothing if any row is rejected"
    )


def add_users(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    users = commands.add_parser(
        "users", help="list profiles, filtered on any property", parents=[waiting]
    )
    users.add_argument(
        "--where",
        type=condition,
        metavar="PREDICATE",
        help="a SQL condition; other names are properties: \"plan = 'pro'\"",
    )
    users.add_argument("--limit", type=positive_count, metavar="N", help="at most N profiles")
    users.add_argument(
        "--group-key",
        metavar="KEY",
        type=group_key,
        help="list the group profiles of this key instead",
    )
    add_format_argument(users, ("table", "csv", "json"))


def add_feed(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    feed = commands.add_parser(
        "feed", help="an entity's events, newest first (hidden events left out)", parents=[waiting]
    )
    add_entity_arguments(feed)
    span = feed.add_mutually_exclusive_group()
    span.add_argument(
        "--days", type=int, choices=FEED_DAYS, help="the last 30, 60 or 90 days (default: 30)"
    )
    span.add_argument("--from", dest="start", metavar="T", help="from this moment (ISO 8601)")
    feed.add_argument(
        "--to", dest="end", metavar="T", help="until this moment, exclusive (with --from only)"
    )
    feed.add_argument(
        "--hide",
        action="append",
        default=[],
        metavar="EVENT",
        help="leave out this event (repeatable)",
    )
    add_format_argument(feed, ("table", "csv", "json"))


def add_delete_profiles(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    delete = commands.add_parser(
        "delete-profiles",
        help="delete profiles (their properties; their events stay)",
        parents=[waiting],
    )
    chosen = delete.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--id", action="append", type=profile_id, metavar="ID", help="a profile id (repeatable)"
    )
    chosen.add_argument(
        "--where", type=condition, metavar="PREDICATE", help="every profile matching this"
    )
    delete.add_argument(
        "--group-key", metavar="KEY", type=group_key, help="delete group profiles of this key"
    )


def add_drop_table(commands: Subcommands, waiting: argparse.ArgumentParser) -> None:
    dropping = (
        "remove a synced table from the store: its rows, view, events and state (its runs "
        "stay); a table still configured is synced again from scratch by the next sync"
    )
    drop = commands.add_parser(
        "drop-table",
        help=dropping,
        description=f"{dropping.capitalize()}. The properties a profile table set stay in "
        "the profiles, as those of any update do.",
        parents=[waiting],
    )
    drop.add_argument(
        "name",
        metavar="NAME",
        help="a synced table, as `pitsync runs` names it (profile updates are no table)",
    )


def add_model(commands: Subcommands) -> None:
    model = commands.add_parser(
        "model",
        help="print (or run) the interval modeling as SQL for another engine",
        parents=[everywhere()],
    )
    model.add_argument("--table", required=True, metavar="NAME", help="a history table")
    model.add_argument("--engine", required=True, choices=ENGINES, help="the SQL dialect")
    model.add_argument(
        "--events", metavar="NAME", help="also join this events table with the intervals"
    )
    model.add_argument(
        "--execute",
        action="store_true",
        help="create the views: in the PostgreSQL source, or on a local Spark session",
    )
    model.add_argument(
        "--output", metavar="DIR", help="with --engine spark --execute: write views as Parquet"
    )


def everywhere() -> argparse.ArgumentParser:
    """--config and --verbose after the command too; they then win over the ones before."""
    options = Parser(add_help=False)
    options.add_argument(
        "--config", type=config_path, default=argparse.SUPPRESS, help="the configuration file"
    )
    options.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log the SQL that runs, and tracebacks on errors",
    )
    return options


def config_path(text: str) -> str:
    """An empty path is most often a variable left unset; it must not mean the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the config path is empty; name a file, or leave --config out to use "
            f"${CONFIG_ENV} or ./pitsync.toml"
        )
    return text


def profile_id(text: str) -> str:
    """An empty id names no profile, as in an update record; most often a variable left
    unset."""
    if text == "":
        raise argparse.ArgumentTypeError("the id is empty; give the id of a profile")
    return text


def condition(text: str) -> str:
    """An empty condition is most often a variable left unset; it must not mean every
    profile (`delete-profiles --where "$FILTER"` would delete them all)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the condition is empty; write one, such as \"plan = 'pro'\" (leave --where out "
            "of `users` to list every profile)"
        )
    return text


def non_negative_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # also refuses NaN, which would wait forever
        raise argparse.ArgumentTypeError(f"--wait takes seconds, 0 or more, not {text!r}")
    return seconds


def column_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"columns are numbered from 1, not {text!r}")
    return int(text)


def column_mapping(text: str) -> tuple[int, str]:
    """`3=plan`: column 3 becomes the property `plan`."""
    number, equals, name = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"write a mapping as N=NAME, e.g. 3=plan, not {text!r}")
    return column_number(number.strip()), name


# DuckDB takes a LIMIT as a 64-bit integer, and refuses a larger one as a conversion error.
LARGEST_COUNT = 2**63 - 1


def positive_count(text: str) -> int:
    try:
        count = int(text) if text.strip().isascii() else 0
    except ValueError:
        count = 0
    if not 1 <= count <= LARGEST_COUNT:
        raise argparse.ArgumentTypeError(
            f"give a count from 1 to {LARGEST_COUNT}, not {text!r}; leave --limit out for all"
        )
    return count


def group_key(text: str) -> str:
    """A group key names a column: an empty one would quietly mean users instead."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "a group key cannot be empty; name one (e.g. company_id), or leave "
            "--group-key out for users"
        )
    return text


def add_format_argument(parser: argparse.ArgumentParser, choices: tuple[str, ...]) -> None:
    parser.add_argument(
        "--format", choices=choices, default="table", help="output format (default: table)"
    )


def add_entity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=profile_id, help="the user's distinct id, or the group's id")
    parser.add_argument(
        "--group-key",
        metavar="KEY",
        type=group_key,
        help="the group key (e.g. company_id); without it ID is a user",
    )
