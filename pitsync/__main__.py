"""The `pitsync` command (also `python -m pitsync`).

The command line is loaded inside `main`, so that Ctrl-C while its modules load (DuckDB,
Arrow: a noticeable moment) ends in one line, like Ctrl-C at any later point.
"""

from __future__ import annotations

import sys

INTERRUPTED_STATUS = 130  # as a shell reports a command stopped by SIGINT


def main() -> int:
    try:
        from pitsync.cli import main as command_line
    except KeyboardInterrupt:
        print("pitsync: interrupted while starting; nothing was done", file=sys.stderr)
        return INTERRUPTED_STATUS
    return command_line()


if __name__ == "__main__":
    sys.exit(main())
