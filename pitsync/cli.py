"""The `pitsync` command line: sync, schedule, runs, query, profile, history, model.

Exit status: 0 on success, 1 on a user or data error (a message, no traceback unless
--verbose), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

import duckdb

from pitsync.__main__ import leave_if_interrupted
from pitsync.arguments import build_parser
from pitsync.commands.console import one_line, print_error
from pitsync.errors import OutputError, PitsyncError, UsageError, first_line, with_memory_advice
from pitsync.interrupts import InterruptedAfterCommit, is_interrupt, raise_held_interrupt
from pitsync.queries.output import ClosedOutput, WholeOutput

log = logging.getLogger("pitsync")

SIGPIPE_STATUS = 141  # what a shell reports for a program ended by SIGPIPE
USAGE_STATUS = 2  # argparse's, for options that do not go together


# The commands that record runs in the store; the others change nothing there.
RUN_COMMANDS = {"sync", "schedule", "engage", "import-csv", "delete-profiles", "drop-table"}


def interrupted(command: str | None = None, *, after_commit: bool = False) -> int:
    """Say what a Ctrl-C left, for the command it stopped (None: not known yet);
    `after_commit`: it came as a run committed, which it let finish."""
    if command is not None and command not in RUN_COMMANDS:
        print("pitsync: interrupted", file=sys.stderr)
    elif after_commit:
        print(
            "pitsync: interrupted as a run committed: that run stays committed, and nothing "
            "after it ran (see `pitsync runs`)",
            file=sys.stderr,
        )
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
        args = read_command_line(argv, wrapped)
        command = args.command
        configure_logging(verbose=args.verbose)
        return run_command(args)
    except KeyboardInterrupt as error:
        return interrupted(command, after_commit=isinstance(error, InterruptedAfterCommit))
    except OutputError as error:  # --help or --version, written as the command line is read
        print_error(error)
        return 1
    finally:
        sys.stdout = standard_output


def read_command_line(
    argv: Sequence[str] | None, output: WholeOutput | ClosedOutput
) -> argparse.Namespace:
    """The parsed arguments. `--help` and `--version` print and leave from here: with 141
    when their reader went away, as the other commands leave then."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as leaving:
        if leaving.code == 0 and not reached_its_reader(output):
            silence_standard_output()
            raise SystemExit(SIGPIPE_STATUS) from None
        raise


def reached_its_reader(output: WholeOutput | ClosedOutput) -> bool:
    """Whether all that was written to standard output went to its reader."""
    if isinstance(output, ClosedOutput):
        return True  # writing to it raised an error of its own
    with contextlib.suppress(BrokenPipeError):  # noted as reader_gone
        output.flush()
    return not output.reader_gone


def silence_standard_output() -> None:
    """Standard output onto /dev/null, so that Python, flushing it at exit, finds no pipe
    without a reader to complain of."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run_command(args: argparse.Namespace) -> int:
    """The command's handler; its errors as one line and an exit status."""
    handler = handler_of(args.command)
    try:
        status = handler(args)
        sys.stdout.flush()  # here, where a failure is reported, not as Python exits
        # Ctrl-C while the last run committed: the run stands, and the command says it
        # was interrupted, as when Ctrl-C came between two tables' runs.
        raise_held_interrupt()
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
    except duckdb.Error as error:
        # None that pitsync foresaw: a store changed or damaged by another program, or a
        # fault of pitsync's own. One line all the same; the traceback with --verbose.
        if args.verbose:
            log.exception("failed")
        print_error(unforeseen(error))
        return 1
    except BrokenPipeError:
        # The reader went away (`pitsync runs | head`): stop quietly, as a SIGPIPE would.
        silence_standard_output()
        return SIGPIPE_STATUS


def out_of_memory(error: BaseException) -> str:
    """DuckDB's first line, and what to do."""
    return with_memory_advice(f"{first_line(error)}; nothing in progress was kept", error)


def unforeseen(error: duckdb.Error) -> str:
    """DuckDB's first line, and what to do."""
    return (
        f"DuckDB stopped the command: {first_line(error)}; if the store was changed by "
        "another program or its file is damaged, restore it from a copy, or move it aside "
        "and sync every table again; else run the command again with --verbose and report "
        "what it prints"
    )


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


# The module of pitsync.commands that holds each command's `command_NAME`. Only the
# command's own module is imported, so a command loads no more than it uses.
HANDLERS = {
    "sync": "syncing",
    "runs": "syncing",
    "schedule": "syncing",
    "drop-table": "syncing",
    "query": "reading",
    "profile": "reading",
    "history": "reading",
    "users": "reading",
    "feed": "reading",
    "engage": "updating",
    "import-csv": "updating",
    "delete-profiles": "updating",
    "model": "modeling",
}


def handler_of(command: str) -> Callable[[argparse.Namespace], int]:
    try:
        module = importlib.import_module(f"pitsync.commands.{HANDLERS[command]}")
    except (KeyboardInterrupt, ImportError) as error:
        leave_if_interrupted(error)  # Ctrl-C while the command's modules load, as at start
        raise
    return getattr(module, "command_" + command.replace("-", "_"))


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
