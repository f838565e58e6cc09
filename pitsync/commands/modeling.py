"""The model command: the modeling SQL for an engine, printed or run where the data lives."""

from __future__ import annotations

import argparse
from pathlib import Path

from pitsync.config import load_config
from pitsync.connectors.engines import execute_on_postgres, execute_on_spark, plan_model_sql
from pitsync.errors import PitsyncError, UsageError


def command_model(args: argparse.Namespace) -> int:
    """Print the modeling SQL, or run it where the data lives."""
    config = load_config(args.config)
    check_model_options(args)
    planned = plan_model_sql(config, args.table, args.engine, args.events)
    if not args.execute:
        print(";\n\n".join(planned.rendered()) + ";")
        return 0
    if args.engine == "postgres":
        execute_on_postgres(config, args.table, planned)
        print("created views: " + ", ".join(planned.view_names))
        return 0
    tables = [args.table] + ([args.events] if args.events else [])
    output = Path(args.output) if args.output else None
    counts = execute_on_spark(config, tables, planned, output)
    for name, rows in counts.items():
        print(f"{name}: {rows} rows" + (f" written to {output / name}" if output else ""))
    return 0


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse options that do not go together before any source is read."""
    if args.execute and args.engine not in ("postgres", "spark"):
        raise UsageError(
            f"--execute runs on postgres or spark; for {args.engine}, print the SQL (without "
            "--execute) and run it in the warehouse"
        )
    if args.output and not (args.execute and args.engine == "spark"):
        raise UsageError("--output goes with --engine spark --execute, which writes Parquet")
    if args.output and Path(args.output).exists() and not Path(args.output).is_dir():
        raise PitsyncError(
            f"--output {args.output} is a file; name a folder (made if missing), where each "
            "view is written to a folder of its name"
        )
