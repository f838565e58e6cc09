"""Benchmark: a full sync from PostgreSQL against the raw ADBC fetch of the same rows.

    python bench/postgres_sync.py                       # 2M history rows
    python bench/postgres_sync.py --companies 20000     # 200k rows, quicker
    PITSYNC_BENCH_POSTGRES_URI=postgresql://... python bench/postgres_sync.py

It loads company_plan_history of the large sample warehouse into a PostgreSQL schema of
its own (once per size; the schema is kept for the next run), then measures, each step
in a fresh subprocess so that peak memory is that step's own:

1. the raw fetch: the same SELECT pitsync sends, run through the ADBC PostgreSQL driver
   and read to the end as Arrow record batches, the floor for any sync from PostgreSQL;
2. the same fetch streamed into a DuckDB file, each row ended by the same window as
   pitsync's and written (no quarantine, no run record): the floor for a sync that sorts
   after it fetches;
3. `pitsync sync` of that table into an empty store.

After a warm-up read, each step runs three times, interleaved; it prints the median's rows
per second, the ratio (sync / raw fetch) and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
DEFAULT_URI = "postgresql://postgres@127.0.0.1:5432/test"
TABLE = "company_plan_history"


def main() -> None:
    args = parse_arguments()
    if args.step:
        run_step(args)
        return
    schema = f"pitsync_bench_{args.companies}x{args.rows_per_company}"
    warehouse = build_warehouse(args)
    load_into_postgres(args.uri, schema, warehouse)
    store = DATA / f"{schema}-store.duckdb"
    config = write_config(DATA / f"{schema}.toml", schema, store)
    common = ["--uri", args.uri, "--schema", schema, "--store", str(store), "--config", str(config)]
    # Each step three times, interleaved after a warm-up read, so that neither is the one
    # that meets PostgreSQL's cold cache; the medians are reported.
    measure("raw_fetch", common)
    fetches, models, syncs = [], [], []
    for _ in range(REPEATS):
        fetches.append(measure("raw_fetch", common))
        models.append(measure("raw_model", common))
        syncs.append(measure("sync", common))
    fetch, model, sync = median(fetches), median(models), median(syncs)
    if not fetch["rows"] == model["rows"] == sync["rows"]:
        raise SystemExit(f"the sync read {sync['rows']} rows, the raw fetch {fetch['rows']}")

    print(f"history rows in PostgreSQL: {fetch['rows']:,}")
    line("raw ADBC fetch into Arrow", fetch)
    line("raw fetch, sorted, written", model)
    line("pitsync sync (full)", sync)
    ratio = sync["seconds"] / fetch["seconds"]
    print(f"  sync / raw fetch: {ratio:.2f}x (target: within 1.5x)")
    print(f"  raw fetch sorted and written / raw fetch: {model['seconds'] / fetch['seconds']:.2f}x")
    print(f"  sync / raw fetch sorted and written: {sync['seconds'] / model['seconds']:.2f}x")


REPEATS = 3


def median(runs: list[dict]) -> dict:
    """The run of median time."""
    return sorted(runs, key=lambda figures: figures["seconds"])[len(runs) // 2]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=200_000)
    parser.add_argument("--rows-per-company", type=int, default=10)
    parser.add_argument("--uri", default=os.environ.get("PITSYNC_BENCH_POSTGRES_URI", DEFAULT_URI))
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    return parser.parse_args()


def build_warehouse(args: argparse.Namespace) -> Path:
    """The large sample warehouse as a DuckDB file, with few events (they are not used)."""
    warehouse = DATA / f"warehouse-{args.companies}x{args.rows_per_company}-1000.duckdb"
    if not warehouse.exists():
        DATA.mkdir(exist_ok=True)
        size = ["--companies", str(args.companies), "--rows-per-company"]
        size += [str(args.rows_per_company), "--events", "1000", "--out", str(warehouse)]
        subprocess.run(
            [sys.executable, str(ROOT / "sample_warehouse" / "build.py"), *size], check=True
        )
    return warehouse


def load_into_postgres(uri: str, schema: str, warehouse: Path) -> None:
    """Copy the history table into its own schema, unless an earlier run already did."""
    import adbc_driver_postgresql.dbapi as postgres
    import duckdb

    with postgres.connect(uri) as con, con.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' AND table_name = '{TABLE}'"
        )
        if cursor.fetchone()[0]:
            return
        print(f"loading {TABLE} into PostgreSQL schema {schema} ...", flush=True)
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        source = duckdb.connect(str(warehouse), read_only=True)
        source.execute("SET TimeZone = 'UTC'")
        rows = source.sql(f"SELECT * FROM {TABLE}").to_arrow_reader(122_880)
        cursor.adbc_ingest(TABLE, rows, mode="create", db_schema_name=schema)
        con.commit()
        source.close()


def write_config(path: Path, schema: str, store: Path) -> Path:
    path.write_text(
        f'[store]\npath = "{store}"\n'
        '[sources.postgres]\ntype = "postgres"\nuri_env = "PITSYNC_BENCH_POSTGRES_URI"\n'
        f'schema = "{schema}"\n'
        f"[tables.{TABLE}]\n"
        'source = "postgres"\nkind = "group_history"\nid_column = "company_id"\n'
        'group_key = "company_id"\nstart_time = "start_timestamp"\ntie_breaker = "updated_at"\n',
        encoding="utf-8",
    )
    return path


def line(label: str, figures: dict) -> None:
    rate = figures["rows"] / figures["seconds"]
    print(
        f"  {label:<28} {figures['seconds']:7.2f}s {rate:>12,.0f} rows/s "
        f"peak memory {figures['peak_mb']:,.0f} MB"
    )


def measure(step: str, common: list[str]) -> dict:
    """One step in a fresh interpreter; its JSON figures plus its peak memory."""
    uri = common[common.index("--uri") + 1]
    result = subprocess.run(
        [sys.executable, __file__, "--step", step, *common],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PITSYNC_BENCH_POSTGRES_URI": uri},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_step(args: argparse.Namespace) -> None:
    """Inside the subprocess: run one step, print its figures as JSON."""
    # Imported before the clock starts: start-up cost is not a cost per row.
    import adbc_driver_postgresql.dbapi  # noqa: F401

    import pitsync.connectors.sync  # noqa: F401

    started = time.perf_counter()
    rows = STEPS[args.step](args)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak_mb}))


def raw_fetch(args: argparse.Namespace) -> int:
    """The SELECT of every column pitsync reads, fetched to the end as Arrow batches."""
    import adbc_driver_postgresql.dbapi as postgres

    from pitsync.connectors.extraction import select_columns

    columns = ["company_id", "plan", "seats", "start_timestamp", "updated_at"]
    rows = 0
    with postgres.connect(args.uri) as con, con.cursor() as cursor:
        cursor.execute(select_columns("postgres", TABLE, columns, schema=args.schema))
        for batch in cursor.fetch_record_batch():
            rows += batch.num_rows
    return rows


def raw_model(args: argparse.Namespace) -> int:
    """The raw fetch streamed into a DuckDB file, each row ended by the same window as
    pitsync's and written: the floor for any sync that sorts after it fetches."""
    import adbc_driver_postgresql.dbapi as postgres
    import duckdb

    from pitsync.connectors.extraction import select_columns

    columns = ["company_id", "plan", "seats", "start_timestamp", "updated_at"]
    Path(args.store).unlink(missing_ok=True)
    store = duckdb.connect(args.store)
    store.execute("SET TimeZone = 'UTC'")
    with postgres.connect(args.uri) as con, con.cursor() as cursor:
        cursor.execute(select_columns("postgres", TABLE, columns, schema=args.schema))
        store.register("fetched", cursor.fetch_record_batch())
        store.execute(
            "CREATE TABLE intervals AS SELECT company_id, start_timestamp AS start_time, "
            "lead(start_timestamp) OVER (PARTITION BY company_id ORDER BY start_timestamp, "
            "updated_at, plan, seats) AS end_time, updated_at, plan, seats FROM fetched"
        )
    rows = store.execute("SELECT count(*) FROM intervals").fetchall()[0][0]
    store.close()
    return rows


def sync(args: argparse.Namespace) -> int:
    from pitsync.config import load_config
    from pitsync.connectors.sync import SyncOptions, sync_table

    Path(args.store).unlink(missing_ok=True)
    config = load_config(args.config)
    return sync_table(config, config.table(TABLE), SyncOptions()).rows_read


STEPS = {"raw_fetch": raw_fetch, "raw_model": raw_model, "sync": sync}


if __name__ == "__main__":
    main()
