"""Benchmark: an append run adding 10k rows to a 5M-row history, against a full sync.

    python bench/append_sync.py                        # 5M rows, 10k appended
    python bench/append_sync.py --companies 100000     # 1M rows, quicker

It builds the large sample warehouse (once per size) and gives its company history a
`loaded_at` cursor, rising with each row. Then, each step in a fresh subprocess:

1. a full sync of the table (mode = "full"), the reference;
2. a first append run (it reads everything, as a full sync does) to set the watermark;
3. 10k rows are added to the source, all with later cursor values: 5k new keys of
   existing companies, and 5k new loads of existing keys, which replace them;
4. the append run that picks them up;
5. the raw engine on a copy of the same store: the hand-written DuckDB upsert of the same
   rows (read past the watermark, replace the touched entities' rows, sorted again with
   the same window), with no quarantine, no comparison and no run record;
6. an idle append run: it reads the 10k rows again (they share the watermark's cursor
   value) and changes nothing. What it costs, every append run of this table costs:
   opening and committing the store, and finding the read rows' keys among the 5M.

It prints seconds, rows per second, and the ratios of the append run, of the raw
engine and of the idle run to the full sync.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
TABLE = "plan_changes"
APPENDED = 10_000


def main() -> None:
    args = parse_arguments()
    if args.step:
        run_step(args)
        return
    warehouse = prepare_warehouse(args)
    store = DATA / f"append-{args.companies}-store.duckdb"
    full_config = write_config(
        DATA / f"append-{args.companies}-full.toml", warehouse, store, "full"
    )
    append_config = write_config(
        DATA / f"append-{args.companies}-append.toml", warehouse, store, "append"
    )
    full = measure("sync", full_config, fresh=True)
    measure("sync", append_config, fresh=True)  # the first append run sets the watermark
    added = add_rows(warehouse)
    raw_store = DATA / f"append-{args.companies}-raw-store.duckdb"
    shutil.copyfile(store, raw_store)
    raw = measure("raw_append", append_config, fresh=False, store=raw_store)
    append = measure("sync", append_config, fresh=False)
    idle = measure("sync", append_config, fresh=False)

    print(f"history rows: {full['rows']:,}; appended: {added:,}")
    line("full sync", full["rows"], full)
    line("append run", append["rows"], append)
    line("raw DuckDB", raw["rows"], raw)
    line("idle run", idle["rows"], idle)
    ratio = append["seconds"] / full["seconds"]
    print(f"  append / full sync: {ratio:.1%} (target: under 5%)")
    print(f"  raw DuckDB upsert / full sync: {raw['seconds'] / full['seconds']:.1%}")
    print(f"  append / raw DuckDB upsert: {append['seconds'] / raw['seconds']:.2f}x")
    print(f"  idle append run / full sync: {idle['seconds'] / full['seconds']:.1%}")
    print(
        f"  the append run changed {append['entities']:,} entities, the idle run {idle['entities']}"
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=500_000)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    return parser.parse_args()


def build_sample(companies: int) -> Path:
    """The large sample warehouse, 10 history rows a company and few events, built once."""
    built = DATA / f"warehouse-{companies}x10-1000.duckdb"
    if not built.exists():
        DATA.mkdir(exist_ok=True)
        size = ["--companies", str(companies), "--rows-per-company", "10"]
        size += ["--events", "1000", "--out", str(built)]
        subprocess.run(
            [sys.executable, str(ROOT / "sample_warehouse" / "build.py"), *size], check=True
        )
    return built


def prepare_warehouse(args: argparse.Namespace) -> Path:
    """A copy of the large sample warehouse with the history and its cursor column."""
    warehouse = DATA / f"append-{args.companies}-warehouse.duckdb"
    shutil.copyfile(build_sample(args.companies), warehouse)
    import duckdb

    con = duckdb.connect(str(warehouse))
    con.execute(
        f"CREATE TABLE {TABLE} AS SELECT *, TIMESTAMPTZ '2024-06-01 00:00:00+00' "
        "+ to_microseconds(row_number() OVER ()) AS loaded_at FROM company_plan_history"
    )
    con.close()
    return warehouse


def add_rows(warehouse: Path) -> int:
    """10k rows inserted past the cursor, as an append-only source grows: 5k new keys (a
    later start) and 5k new loads of existing keys (same start, another plan), all of one
    later load time. Returns how many rows were added."""
    import duckdb

    half = APPENDED // 2
    con = duckdb.connect(str(warehouse))
    [(late,)] = con.execute(f"SELECT max(loaded_at) + INTERVAL 1 DAY FROM {TABLE}").fetchall()
    before = count_rows(con)
    con.execute(
        f"INSERT INTO {TABLE} SELECT company_id, 'enterprise', seats, "
        f"start_timestamp + INTERVAL 3650 DAY, updated_at, $late "
        f"FROM {TABLE} USING SAMPLE {half} ROWS (reservoir, 7)",
        {"late": late},
    )
    # Sampled from the rows the first insert did not add, so the two sets of keys differ.
    con.execute(
        f"INSERT INTO {TABLE} SELECT company_id, 'changed', seats, start_timestamp, "
        f"updated_at, $late FROM (FROM {TABLE} WHERE loaded_at < $late) "
        f"USING SAMPLE {half} ROWS (reservoir, 11)",
        {"late": late},
    )
    added = count_rows(con) - before
    con.close()
    return added


def count_rows(con) -> int:
    [(rows,)] = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()
    return rows


def write_config(path: Path, warehouse: Path, store: Path, mode: str, table: str = TABLE) -> Path:
    """A config syncing `table` of the warehouse as a company history in `mode`."""
    cursor = 'cursor = "loaded_at"\n' if mode == "append" else ""
    path.write_text(
        f'[store]\npath = "{store}"\n'
        f'[sources.warehouse]\ntype = "duckdb"\npath = "{warehouse}"\n'
        f"[tables.{table}]\n"
        'source = "warehouse"\nkind = "group_history"\nid_column = "company_id"\n'
        'group_key = "company_id"\nstart_time = "start_timestamp"\ntie_breaker = "updated_at"\n'
        f'mode = "{mode}"\n{cursor}',
        encoding="utf-8",
    )
    return path


def line(label: str, rows: int, figures: dict) -> None:
    rate = rows / figures["seconds"]
    print(
        f"  {label:<12} {figures['seconds']:7.3f}s {rate:>12,.0f} rows/s "
        f"peak memory {figures['peak_mb']:,.0f} MB"
    )


def measure(step: str, config: Path, *, fresh: bool, store: Path | None = None) -> dict:
    """One step in a fresh interpreter; its JSON figures plus its peak memory."""
    extra = ["--fresh"] if fresh else []
    extra += ["--store", str(store)] if store else []
    result = subprocess.run(
        [sys.executable, __file__, "--step", step, "--config", str(config), *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_step(args: argparse.Namespace) -> None:
    """Inside the subprocess: one step, timed from after the imports.

    The source connectors load lazily, so they are imported here, before the clock
    starts: start-up cost is not a cost of the run.
    """
    import duckdb

    import pitsync.connectors.databases  # noqa: F401
    from pitsync.config import load_config
    from pitsync.connectors.sync import SyncOptions, sync_table

    config = load_config(args.config)
    if args.fresh:
        config.store_path.unlink(missing_ok=True)
    [table] = config.tables.values()  # each benchmark config holds the one table it syncs
    started = time.perf_counter()
    if args.step in RAW_STEPS:
        warehouse = config.sources[table.source].path
        rows, entities = RAW_STEPS[args.step](duckdb, Path(args.store), warehouse, table.name)
    else:
        record = sync_table(config, table, SyncOptions())
        rows, entities = record.rows_read, record.entities_changed
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"seconds": seconds, "rows": rows, "peak_mb": peak_mb}
    print(json.dumps({**figures, "entities": entities}))


# The columns of the benchmark's history, and its stored intervals in the store.
COLUMNS = "company_id, start_timestamp AS start_time, updated_at, plan, seats"
ENDED = (
    "SELECT *, lead(start_time) OVER (PARTITION BY company_id "
    "ORDER BY start_time, updated_at, plan, seats) AS end_time FROM "
)


def stored_intervals(table: str) -> str:
    return f'_pitsync."intervals__{table}"'


def raw_append(duckdb, store: Path, warehouse: Path, table: str) -> tuple[int, int]:
    """The hand-written upsert: rows past the watermark replace their keys' rows, and the
    touched entities' rows are sorted again; one transaction."""
    con = duckdb.connect(str(store))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)")
    stored = stored_intervals(table)
    watermark = (
        f"(SELECT CAST(value AS TIMESTAMPTZ) FROM _pitsync.watermarks WHERE table_name = '{table}')"
    )
    con.execute("BEGIN")
    con.execute(
        f"CREATE TEMP TABLE arriving AS SELECT {COLUMNS} FROM w.{table} "
        f"WHERE loaded_at >= {watermark}"
    )
    con.execute("CREATE TEMP TABLE touched AS SELECT DISTINCT company_id FROM arriving")
    con.execute(
        "CREATE TEMP TABLE merged AS SELECT company_id, start_time, updated_at, plan, seats "
        f"FROM {stored} SEMI JOIN touched USING (company_id) "
        "ANTI JOIN arriving USING (company_id, start_time) UNION ALL SELECT * FROM arriving"
    )
    con.execute(f"DELETE FROM {stored} WHERE company_id IN (SELECT company_id FROM touched)")
    con.execute(f"INSERT INTO {stored} BY NAME {ENDED} merged")
    con.execute("COMMIT")
    rows = con.execute("SELECT count(*) FROM arriving").fetchall()[0][0]
    entities = con.execute("SELECT count(*) FROM touched").fetchall()[0][0]
    con.close()
    return rows, entities


def raw_mirror(duckdb, store: Path, warehouse: Path, table: str) -> tuple[int, int]:
    """The hand-written mirror: the whole source compared with the stored rows, column by
    column, and the entities with a differing row replaced; one transaction."""
    con = duckdb.connect(str(store))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)")
    stored = stored_intervals(table)
    same = " AND ".join(
        f"b.{name} IS NOT DISTINCT FROM s.{name}"
        for name in ("company_id", "start_time", "updated_at", "plan", "seats")
    )
    con.execute("BEGIN")
    con.execute(f"CREATE TEMP TABLE source_rows AS SELECT {COLUMNS} FROM w.{table}")
    con.execute(
        "CREATE TEMP TABLE touched AS SELECT DISTINCT coalesce(b.company_id, s.company_id) "
        f"AS company_id FROM source_rows AS b FULL JOIN {stored} AS s ON {same} "
        "WHERE b.company_id IS NULL OR s.company_id IS NULL"
    )
    con.execute(f"DELETE FROM {stored} WHERE company_id IN (SELECT company_id FROM touched)")
    con.execute(
        f"INSERT INTO {stored} BY NAME {ENDED} "
        "(SELECT * FROM source_rows SEMI JOIN touched USING (company_id))"
    )
    con.execute("COMMIT")
    rows = con.execute("SELECT count(*) FROM source_rows").fetchall()[0][0]
    entities = con.execute("SELECT count(*) FROM touched").fetchall()[0][0]
    con.close()
    return rows, entities


RAW_STEPS = {"raw_append": raw_append, "raw_mirror": raw_mirror}


if __name__ == "__main__":
    main()
