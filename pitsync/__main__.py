"""The `pitsync` command (also `python -m pitsync`).

The command line is loaded inside `main`, so that Ctrl-C while its modules load (DuckDB,
Arrow: a noticeable moment) ends in one line, like Ctrl-C at any later point.
"""

from __future__ import annotations

import os
import sys

INTERRUPTED_STATUS = 130  # as a shell reports a command stopped by SIGINT


def main() -> int:
    try:
        from pitsync.cli import main as command_line
    except (KeyboardInterrupt, ImportError) as error:
        leave_if_interrupted(error)
        raise
    return command_line()


def leave_if_interrupted(error: BaseException) -> None:
    """End the command, status 130, if `error` is Ctrl-C met while modules loaded."""
    # An extension module (DuckDB's) reports Ctrl-C during its loading as an ImportError.
    if not interrupted(error):
        return
    print("pitsync: interrupted while starting; nothing was done", file=sys.stderr)
    sys.stderr.flush()
    # Leave at once: a module that failed to load may have left the interrupt pending,
    # and Python, meeting it again as it shuts down, would end by the signal instead.
    os._exit(INTERRUPTED_STATUS)


def interrupted(error: BaseException | None) -> bool:
    """Whether `error` is Ctrl-C, or was caused by it."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
