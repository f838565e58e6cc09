"""What a path given to pitsync names, told apart before anything is opened."""

from __future__ import annotations

import stat
from pathlib import Path

FILE, FOLDER, MISSING, OTHER = "file", "folder", "missing", "not a regular file"
DUCKDB_MAGIC = b"DUCK"  # bytes 8 to 12 of every DuckDB file
SQLITE_MAGIC = b"SQLite format 3\x00"
# What `database_kind` finds a file to be, as a message says it.
EMPTY_FILE, SQLITE_FILE, OTHER_FILE = "an empty file", "an SQLite database", "no DuckDB file"


def reason(error: OSError) -> str:
    """Why the system refused a file, as a message says it: `permission denied`."""
    return (error.strerror or str(error)).lower()


def path_kind(path: Path) -> str:
    """FILE, FOLDER, MISSING or OTHER (a device, a pipe); for a path pitsync may not look
    at, why not (`permission denied`).

    `Path.is_file()` raises on a folder that may not be entered, where a one-line
    message is due.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError as error:
        return reason(error)
    if stat.S_ISDIR(mode):
        return FOLDER
    return FILE if stat.S_ISREG(mode) else OTHER


def file_problem(path: Path) -> str | None:
    """Why `path` is no file to read, as a message says it (`is a folder`); None if it is
    one."""
    kind = path_kind(path)
    if kind == FILE:
        return None
    said = {MISSING: "not found", FOLDER: "is a folder", OTHER: "is not a regular file"}
    return said.get(kind, f"cannot be read: {kind}")


def database_kind(path: Path) -> str | None:
    """What a file is, by its first bytes: None for a DuckDB file, else EMPTY_FILE,
    SQLITE_FILE or OTHER_FILE. Raises OSError when the file cannot be read."""
    with path.open("rb") as file:
        header = file.read(len(SQLITE_MAGIC))
    if header[8:12] == DUCKDB_MAGIC:
        return None
    if not header:
        return EMPTY_FILE
    return SQLITE_FILE if header.startswith(SQLITE_MAGIC) else OTHER_FILE
