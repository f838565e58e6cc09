"""The exceptions pitsync raises: one base class, one subclass per kind of failure.

Each carries the offending values as attributes, and its message says what was wrong and
what to do. No message ever holds a credential or a connection string.
"""

from __future__ import annotations


class PitsyncError(Exception):
    """Base class: a failure a user can act on (exit status 1 on the command line)."""


class ConfigError(PitsyncError):
    """The configuration is wrong: a key, a value, or a column it names."""

    def __init__(self, message: str, *, key: str | None = None, table: str | None = None):
        super().__init__(message)
        self.key = key
        self.table = table


class UsageError(ConfigError):
    """Options of a command that do not go together (exit status 2, as argparse's)."""


class SourceError(PitsyncError):
    """A source could not be opened or read."""

    def __init__(self, message: str, *, source: str | None = None):
        super().__init__(message)
        self.source = source


class OutputError(PitsyncError):
    """The command's output could not be written (a full disk, an encoding short of a
    character)."""


class StoreError(PitsyncError):
    """The store could not be opened, or does not hold what was asked for."""


class StrictModeError(PitsyncError):
    """A run in strict mode met bad rows, so nothing was applied."""

    def __init__(self, message: str, *, table: str, quarantined: int):
        super().__init__(message)
        self.table = table
        self.quarantined = quarantined


class QueryRefused(PitsyncError):
    """A query was refused before it ran: it is not a read, or touches files."""

    def __init__(self, message: str, *, sql: str):
        super().__init__(message)
        self.sql = sql


DEPTH_LIMIT = "Max expression depth limit of"


class QueryError(PitsyncError):
    """A read-only query failed inside DuckDB (an unknown column, a type error)."""

    @classmethod
    def from_duckdb(cls, error: BaseException) -> QueryError:
        """DuckDB's reason on one line, with its hints (`Candidate bindings: ...`), but
        without its lists of every function signature or its quote of the SQL: that SQL is
        the query as it runs, rewritten, not as the user wrote it."""
        if DEPTH_LIMIT in str(error):  # its advice, to SET a limit, cannot be taken here
            return cls(
                "the query failed: it nests deeper than DuckDB reads (1000 levels); nest it less"
            )
        kept = []
        for line in str(error).strip().splitlines():
            if not line.strip() or line.startswith(("\t", "LINE ")):
                break
            kept.append(line)
        message = f"the query failed: {' '.join(kept) or type(error).__name__}"
        return cls(with_memory_advice(message, error))


# What to do when DuckDB runs out of memory: its own advice names settings pitsync sets.
MEMORY_ADVICE = (
    "raise `memory_limit` in [store] (or remove it, to let DuckDB take most of the "
    "machine's memory), or give the command less at a time"
)


def with_memory_advice(message: str, error: BaseException) -> str:
    """The message, and what to do when `error` is DuckDB running out of memory."""
    if type(error).__name__ != "OutOfMemoryException":  # duckdb's, not imported here
        return message
    return f"{message}; {MEMORY_ADVICE}"


def first_line(error: BaseException) -> str:
    """Engine and driver messages carry multi-line context; the first line says what happened."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
