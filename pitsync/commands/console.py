"""Where commands write: tables of rows to the terminal, a pipe or a file, and errors in one
line to standard error."""

from __future__ import annotations

import sys

import duckdb
from rich.cells import cell_len
from rich.console import Console
from rich.table import Column, Table

from pitsync.queries.output import printable, write_csv, write_json, write_table

PIPE_WIDTH = 160  # rich would squeeze tables into 80 columns when not on a terminal


def write_relation(relation: duckdb.DuckDBPyRelation, output: str) -> int:
    """Write the rows in the chosen format; returns how many there were."""
    if output == "csv":
        return write_csv(relation, sys.stdout)
    if output == "json":
        return write_json(relation, sys.stdout)
    return write_table(relation, terminal())


def titled_table(title: str, *columns: str | Column) -> Table:
    """A table at least as wide as its title, which would otherwise wrap (a moment cut in
    two) over narrow columns. A column named alone folds a long value onto more lines on a
    narrow terminal, rather than cut it."""
    folding = [Column(c, overflow="fold") if isinstance(c, str) else c for c in columns]
    return Table(*folding, title=title, min_width=cell_len(title))


class PipedConsole(Console):
    """A console whose reader going away ends the command as the other formats end it
    (`run_command`), not with rich's own exit 1, which says an error happened."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def terminal() -> Console:
    """Rich output: the terminal's width, or a wide page when written to a pipe or file."""
    # Values are shown as they are: `[vip]` in a value is no markup, `:smile:` no emoji.
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return PipedConsole(markup=False, emoji=False, width=width)


def print_error(error: object) -> None:
    """The one line of an error on standard error; a name from a warehouse or a command
    line may hold control characters (a newline, a terminal's escape codes), written out."""
    print(f"pitsync: error: {one_line(error)}", file=sys.stderr)


def one_line(text: object) -> str:
    """`printable`, with line ends written out too."""
    return printable(text).replace("\r", "\\r").replace("\n", "\\n")
