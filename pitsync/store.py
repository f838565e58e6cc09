"""The store: the DuckDB file pitsync owns, its reserved names, and how it is opened.

Public relations (what `pitsync query` reads) live in the `main` schema: one table per
history table, and the views `events`, `all_events`, `quarantine` and `runs`. What
pitsync keeps for itself lives in the `_pitsync` schema.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from pitsync.errors import StoreError, first_line
from pitsync.paths import EMPTY_FILE, FOLDER, MISSING, OTHER, database_kind, path_kind, reason
from pitsync.quoting import quote_string

log = logging.getLogger(__name__)

# Reserved column names of the public relations, defined once.
START_TIME = "start_time"
END_TIME = "end_time"
EVENT = "event"
DISTINCT_ID = "distinct_id"
TIME = "time"
PROPERTIES = "properties"
RESERVED_COLUMNS = (START_TIME, END_TIME, PROPERTIES)

# Not plain "pitsync": DuckDB names a database after its file, and pitsync.duckdb would
# make `pitsync.runs` ambiguous.
INTERNAL_SCHEMA = "_pitsync"
RUNS = f"{INTERNAL_SCHEMA}.runs"
QUARANTINE = f"{INTERNAL_SCHEMA}.quarantine"
SUPERSEDED = f"{INTERNAL_SCHEMA}.superseded"
CATALOG = f"{INTERNAL_SCHEMA}.catalog"
WATERMARKS = f"{INTERNAL_SCHEMA}.watermarks"
PROFILES = f"{INTERNAL_SCHEMA}.profiles"
PROFILE_PROPERTIES = f"{INTERNAL_SCHEMA}.profile_properties"
EVENT_IDENTITY = f"{INTERNAL_SCHEMA}.event_identity"

# Every instant is stored as TIMESTAMPTZ; sessions run in UTC so nothing shifts on display.
# (TimeZone is an ICU setting, so it is set after connecting, once ICU has loaded.)
SET_UTC = "SET TimeZone = 'UTC'"

SCHEMA_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {INTERNAL_SCHEMA};
CREATE TABLE IF NOT EXISTS {RUNS} (
    run_id BIGINT PRIMARY KEY,
    table_name VARCHAR NOT NULL,
    mode VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    rows_read BIGINT,
    inserted BIGINT,
    updated BIGINT,
    deleted BIGINT,
    quarantined BIGINT,
    conflicts BIGINT,
    watermark_before VARCHAR,
    watermark_after VARCHAR,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    run_id BIGINT NOT NULL,
    table_name VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    row_data JSON
);
CREATE TABLE IF NOT EXISTS {SUPERSEDED} (
    run_id BIGINT NOT NULL,
    table_name VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    start_time TIMESTAMPTZ NOT NULL,
    properties JSON
);
CREATE TABLE IF NOT EXISTS {WATERMARKS} (
    table_name VARCHAR PRIMARY KEY,
    cursor_column VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    type_name VARCHAR NOT NULL
);
ALTER TABLE {RUNS} ADD COLUMN IF NOT EXISTS entities_changed BIGINT;
CREATE TABLE IF NOT EXISTS {CATALOG} (
    table_name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    id_column VARCHAR NOT NULL,
    group_key VARCHAR,
    stored_as VARCHAR NOT NULL,
    properties VARCHAR[] NOT NULL
);
-- How a history table's start times were read: a change there moves every key.
ALTER TABLE {CATALOG} ADD COLUMN IF NOT EXISTS keyed_by VARCHAR;
-- An events table's event column: events without an insert id are keyed by their name.
ALTER TABLE {CATALOG} ADD COLUMN IF NOT EXISTS event_column VARCHAR;
-- The source and source table a watermark is a value of.
ALTER TABLE {WATERMARKS} ADD COLUMN IF NOT EXISTS read_from VARCHAR;
CREATE TABLE IF NOT EXISTS {PROFILES} (
    group_key VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    last_seen TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS {EVENT_IDENTITY} (
    table_name VARCHAR PRIMARY KEY,
    properties VARCHAR[] NOT NULL
);
CREATE TABLE IF NOT EXISTS {PROFILE_PROPERTIES} (
    group_key VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value JSON NOT NULL
);
"""


DEFAULT_WAIT_SECONDS = 5.0


class StoreInUse(StoreError):
    """Another process held the store for longer than the wait allowed."""


class StoreGivenUp(StoreInUse):
    """The job was asked to stop before it had the store, so it did not open it."""


RETRY_SECONDS = 0.1
# The store needs no extension beyond those built in; DuckDB would otherwise fetch one
# over the network to read a file that is no DuckDB file.
NO_EXTENSIONS: dict[str, str | bool | int | float | list[str]] = {
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
}
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def connect_waiting(
    path: Path, wait_seconds: float, *, given_up: threading.Event | None = None, **options: Any
) -> duckdb.DuckDBPyConnection:
    """Connect, waiting up to `wait_seconds` while another process holds the store; once
    `given_up` is set (a job asked to stop), neither wait nor connect.

    DuckDB lets one process write a file, and no other open it meanwhile; a reader then
    waits for the writer's run to end, and so always sees a whole run or none of it.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        if given_up is not None and given_up.is_set():
            raise StoreGivenUp(f"the store {path} was left unopened: the job is stopping")
        try:
            return duckdb.connect(str(path), **options)
        except duckdb.IOException as error:
            holder = LOCK_HOLDER.search(str(error))
            if holder is None:
                raise
            if time.monotonic() >= deadline:
                raise StoreInUse(
                    f"the store {path} is in use by process {holder.group(2)} "
                    f"({holder.group(1)}: another pitsync command, or any program with "
                    f"the store open); waited "
                    f"{wait_seconds:g}s: try again when it is done, or pass --wait SECONDS"
                ) from None
            time.sleep(RETRY_SECONDS)


def open_for_writing(
    path: Path,
    memory_limit: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    *,
    given_up: threading.Event | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the store for a sync run; a busy store is waited for
    (see `connect_waiting`)."""
    make_folder_for(path)
    check_is_duckdb_file(path)
    # A file DuckDB makes now holds nothing of anyone's, and needs no look inside.
    made_now = path_kind(path) == MISSING
    try:
        connection = connect_waiting(path, wait_seconds, given_up=given_up, config=NO_EXTENSIONS)
    except duckdb.Error as error:  # a file DuckDB cannot read, or a damaged one
        raise opening_failed(path, "writing", error) from error
    if not made_now:
        check_is_not_foreign(connection, path)
    connection.execute(SET_UTC)
    limit_memory(connection, memory_limit)
    try:
        connection.execute(SCHEMA_DDL)
    except duckdb.Error as error:
        connection.close()
        raise opening_failed(path, "writing", error) from error
    # The layout is up to date now, but for a column it cannot add: one taken away.
    _, damaged = missing_store_columns(connection)
    if damaged:
        connection.close()
        raise StoreError(changed_store(path, damaged[0]))
    return connection


# DuckDB's words for a store file it found but could not read: cut short, its WAL another
# database's, or its blocks damaged.
UNREADABLE_STORE = re.compile(r"could not read|replaying WAL|corrupt|checksum", flags=re.IGNORECASE)


def opening_failed(path: Path, purpose: str, error: duckdb.Error) -> StoreError:
    """DuckDB's first line, and, where the file it found could not be read, what to do.

    A store DuckDB failed to create (a disk that was full) is such a file too, and is
    left for the user to move aside: another process may have made a store there since
    the path was found free, and nothing here can tell the two apart.
    """
    message = f"cannot open the store {path} for {purpose}: {first_line(error)}"
    if UNREADABLE_STORE.search(str(error)):
        message += (
            "; if the file was cut short (a disk that was full as it was made) or written "
            "by another program, restore the store from a copy, or move it aside and sync "
            "every table again (profiles that engage or import-csv set live only in the "
            "store)"
        )
    return StoreError(message)


def check_is_duckdb_file(path: Path) -> None:
    """The store path names a DuckDB file, or nothing yet: a folder, an empty file or
    another kind of file is said to be one, before DuckDB tries to read it (it would
    look for an extension that reads SQLite, for one)."""
    kind = path_kind(path)
    if kind == FOLDER:
        raise StoreError(f"the store path {path} is a folder; set [store] path to a file")
    if kind == MISSING:
        return
    if kind == OTHER:  # a pipe would keep the open waiting for a writer
        raise StoreError(
            f"the store path {path} is not a regular file (a device or a pipe); set [store] "
            "path to a file"
        )
    try:
        found = database_kind(path)
    except OSError as error:
        raise StoreError(
            f"cannot read the store {path}: {reason(error)}; let pitsync read and write it, or "
            "set [store] path to another file"
        ) from error
    if found == EMPTY_FILE:
        raise StoreError(
            f"the store {path} is an empty file, which DuckDB cannot open; remove it, and "
            "the next sync creates the store there"
        )
    if found is not None:
        raise StoreError(
            f"{path} is {found}, not a pitsync store; point [store] path at the store, or "
            "at a file that does not exist yet for a new one"
        )


def check_store_exists(path: Path, holds: str) -> None:
    """For a command that changes what a store holds: none there is one line, and no
    store is made (`holds`: what it would change, `tables`)."""
    if path_kind(path) == MISSING:
        raise StoreError(f"the store {path} does not exist, so it holds no {holds}")


def check_is_not_foreign(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A DuckDB database of someone else's (anything of its own, no pitsync schema) is left
    as it is: a run would add pitsync's tables and views among the owner's."""
    if not has_catalog(connection) and not holds_nothing(connection):
        connection.close()
        raise StoreError(
            f"{path} is a DuckDB database pitsync did not make (it holds tables, views or "
            "other objects of its own); point [store] path at the store, or at a file that "
            "does not exist yet"
        )


def has_catalog(connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether pitsync's catalog table is there: every store has it from its first run."""
    [(tables,)] = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = 'catalog'",
        [INTERNAL_SCHEMA],
    ).fetchall()
    return bool(tables)


# What a database holds of its own, besides pitsync's schema: tables, views, schemas,
# sequences, macros and types.
OWN_OBJECTS = " + ".join(
    f"(SELECT count(*) FROM {relation} WHERE database_name = current_database(){condition})"
    for relation, condition in (
        ("duckdb_tables()", ""),
        ("duckdb_views()", " AND NOT internal"),
        ("duckdb_schemas()", f" AND NOT internal AND schema_name <> '{INTERNAL_SCHEMA}'"),
        ("duckdb_sequences()", ""),
        ("duckdb_functions()", " AND NOT internal"),
        ("duckdb_types()", " AND NOT internal"),
    )
)


def holds_nothing(connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database holds nothing but (maybe) pitsync's own empty schema."""
    [(objects,)] = connection.execute(f"SELECT {OWN_OBJECTS}").fetchall()
    return not objects


def make_folder_for(path: Path) -> None:
    """Make the store's folder if it is missing, or say why it cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        existing = next(folder for folder in path.parents if folder.exists())
        why = (
            f"{existing} is a file, not a folder"
            if not existing.is_dir()
            else f"{error.strerror or error} in {existing}"
        )
        raise StoreError(
            f"cannot make the folder {path.parent} for the store {path}: {why}; set [store] "
            "path to a file in a folder pitsync may write in, or make that folder first"
        ) from error


def roll_back(connection: duckdb.DuckDBPyConnection) -> None:
    """Undo the open transaction. DuckDB ends a transaction whose COMMIT failed itself, so
    there may be none left; any other failure to roll back is logged, never raised over
    the error that made the rollback needed."""
    try:
        connection.execute("ROLLBACK")
    except duckdb.Error as error:
        if "no transaction is active" not in str(error):
            log.error("the rollback failed too: %s", str(error).splitlines()[0])


def limit_memory(connection: duckdb.DuckDBPyConnection, memory_limit: str | None) -> None:
    """Cap DuckDB's buffers (the staged rows, sorts, joins); beyond it DuckDB spills to disk."""
    if memory_limit is not None:
        connection.execute(f"SET memory_limit = {quote_string(memory_limit)}")


# Held while a query session sets the database's settings or finds them set.
QUERY_SETTINGS_LOCK = threading.Lock()


def open_read_only(
    path: Path,
    memory_limit: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    *,
    given_up: threading.Event | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the store for queries: read-only, no file or network access, settings locked;
    a busy store is waited for (see `connect_waiting`)."""
    check_is_duckdb_file(path)
    if not path.is_file():
        raise StoreError(f"the store {path} does not exist yet; run `pitsync sync --all` first")
    config: dict[str, str | bool | int | float | list[str]] = {
        "enable_external_access": "false",
        **NO_EXTENSIONS,
        # DuckDB shares one database among a process's connections to a file opened with
        # the same settings. This one is pitsync's alone, so a connection the caller opened
        # otherwise is refused by DuckDB, never joined with its settings.
        "custom_user_agent": "pitsync",
    }
    try:
        connection = connect_waiting(
            path, wait_seconds, given_up=given_up, read_only=True, config=config
        )
    except duckdb.Error as error:
        raise opening_failed(path, "reading", error) from error
    with QUERY_SETTINGS_LOCK:  # two sessions opening at once: one sets, the other finds
        if locked_as_wanted(connection):
            # Another session of this process opened the store first: its settings,
            # shared and locked, stand.
            log.debug("the store %s is open in this process already", path)
        else:
            lock_for_queries(connection, path, memory_limit)
    check_is_store(connection, path)
    return connection


def lock_for_queries(
    connection: duckdb.DuckDBPyConnection, path: Path, memory_limit: str | None
) -> None:
    """Times in UTC for every session of the database, the memory limit, then the lock,
    last, so that no query can turn file access back on."""
    try:
        connection.execute("SET GLOBAL TimeZone = 'UTC'")
        limit_memory(connection, memory_limit)
        connection.execute("SET lock_configuration = true")
    except duckdb.InvalidInputException as error:  # this process locked it otherwise
        connection.close()
        raise StoreError(
            f"cannot open the store {path} for queries: this process holds it open with "
            f"other settings ({str(error).splitlines()[0]}); close that connection first"
        ) from error


def locked_as_wanted(connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether the settings are locked already, with times in UTC and no file access."""
    row = connection.execute(
        "SELECT current_setting('lock_configuration'), current_setting('TimeZone'), "
        "current_setting('enable_external_access')"
    ).fetchone()
    return bool(row and row[0] and row[1] in ("UTC", "Etc/UTC") and row[2] is False)


def check_is_store(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A DuckDB file pitsync did not write has no catalog; say so instead of failing later."""
    if not has_catalog(connection):
        # A first sync killed before its first commit leaves a DuckDB file with nothing
        # in it: the store it was making, not some other database, as a sync finds too.
        unfinished = holds_nothing(connection)
        connection.close()
        if unfinished:
            raise StoreError(unfinished_store(path))
        raise StoreError(
            f"{path} is not a pitsync store (it has no {CATALOG} table); point [store] path "
            "at the store, or at a file that does not exist yet and run `pitsync sync --all`"
        )
    missing, damaged = missing_store_columns(connection)
    if damaged:
        connection.close()
        raise StoreError(changed_store(path, damaged[0]))
    if missing:
        connection.close()
        raise StoreError(
            f"the store {path} was written by an earlier pitsync (it has no {missing[0]}); "
            "bring it up to date by writing it once, with `pitsync sync --all` (where no "
            "table is configured, `pitsync engage` of an empty file), then run this command"
        )
    # Every run, failed ones too, leaves the public views; only a first run that was
    # killed leaves a store without them.
    if not has_public_views(connection):
        connection.close()
        raise StoreError(unfinished_store(path))


def changed_store(path: Path, column: str) -> str:
    return (
        f"the store {path} lacks {column}, which every pitsync store has had: it was "
        "changed by another program; restore it from a copy, or move it aside and sync "
        "every table again (profiles that engage or import-csv set live only in the store)"
    )


def unfinished_store(path: Path) -> str:
    return (
        f"the store {path} holds no finished run yet (the first sync was stopped before it "
        "ended); run `pitsync sync --all`"
    )


def missing_store_columns(
    connection: duckdb.DuckDBPyConnection,
) -> tuple[list[str], list[str]]:
    """The internal columns of this pitsync's layout the store lacks (a store is brought up
    to date only when it is written), and of those, the ones no pitsync ever left out: a
    column its table was made with, of a table the store holds."""
    present = set(connection.execute(STORE_COLUMNS, [INTERNAL_SCHEMA]).fetchall())
    tables = {table for table, _ in present}
    missing = [pair for pair in layout_columns() if pair not in present]
    damaged = [pair for pair in missing if pair[0] in tables and pair in created_columns()]
    return [".".join(pair) for pair in missing], [".".join(pair) for pair in damaged]


STORE_COLUMNS = (
    "SELECT schema_name || '.' || table_name, column_name FROM duckdb_columns() "
    "WHERE schema_name = ? AND database_name = current_database()"
)


CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\S+) \((.*?)\n\);", re.DOTALL)
ADDED_COLUMN = re.compile(r"ALTER TABLE (\S+) ADD COLUMN IF NOT EXISTS (\w+)")


@functools.cache
def layout_columns() -> list[tuple[str, str]]:
    """Each internal table and column SCHEMA_DDL makes, read from its text: an engine to
    run it would cost every query command some 20 ms as it starts."""
    return [*created_columns(), *ADDED_COLUMN.findall(SCHEMA_DDL)]


@functools.cache
def created_columns() -> list[tuple[str, str]]:
    """The columns each internal table is made with: later ones are added to it."""
    return [
        (table, line.split()[0])
        for table, body in CREATED_TABLE.findall(SCHEMA_DDL)
        for line in body.strip().splitlines()
    ]


def has_public_views(connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has its public views (`runs` among them) yet."""
    [(views,)] = connection.execute(
        "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'main' AND view_name = 'runs'"
    ).fetchall()
    return bool(views)
