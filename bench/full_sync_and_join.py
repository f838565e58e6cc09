"""Benchmark: a full sync and the temporal join, each against the raw engine in the same run.

    python bench/full_sync_and_join.py                   # 2M history rows, 20M events
    python bench/full_sync_and_join.py --deep            # 10k companies x 200 rows
    python bench/full_sync_and_join.py --events 2000000  # a quicker run

It builds the large sample warehouse under bench/data/ (once per size), then measures,
each step in a fresh subprocess so that peak memory is that step's own:

1. the bare copy: `CREATE TABLE AS SELECT *` of company_plan_history from the warehouse
   into an empty DuckDB file, the floor for any sync;
2. `pitsync sync` of company_plan_history (and of events, needed for step 4);
3. the hand-written `ASOF LEFT JOIN` of the stored events with the stored intervals;
4. the same question through `pitsync query`'s temporal SQL.

It prints rows per second, the ratios (sync / bare copy, temporal SQL / hand-written
ASOF) and each step's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"

JOIN_QUESTION = "SELECT h.plan, count(*) AS events, sum(h.seats) AS seats FROM {events} AS e "
TEMPORAL_JOIN = (
    JOIN_QUESTION.format(events="events")
    + "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
    "ON h.company_id = e.company_id GROUP BY h.plan ORDER BY h.plan"
)
HAND_WRITTEN_ASOF = (
    JOIN_QUESTION.format(events="_pitsync.events__events")
    + "ASOF LEFT JOIN company_plan_history AS h "
    "ON h.company_id = e.company_id AND e.time >= h.start_time GROUP BY h.plan ORDER BY h.plan"
)


def main() -> None:
    args = parse_arguments()
    if args.step:
        run_step(args)
        return
    size = [
        "--companies",
        str(args.companies),
        "--rows-per-company",
        str(args.rows_per_company),
        "--events",
        str(args.events),
    ]
    name = f"warehouse-{args.companies}x{args.rows_per_company}-{args.events}"
    warehouse = DATA / f"{name}.duckdb"
    if not warehouse.exists():
        DATA.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "sample_warehouse" / "build.py"),
                *size,
                "--out",
                str(warehouse),
            ],
            check=True,
        )
    store = DATA / f"{name}-store.duckdb"
    config = write_config(DATA / f"{name}.toml", warehouse, store)
    report(warehouse, store, config)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=200_000)
    parser.add_argument("--rows-per-company", type=int, default=10)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument(
        "--deep", action="store_true", help="deep history: 10k companies with 200 rows each"
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.deep:
        args.companies, args.rows_per_company = 10_000, 200
    return args


def write_config(path: Path, warehouse: Path, store: Path) -> Path:
    path.write_text(
        f'[store]\npath = "{store}"\n'
        f'[sources.warehouse]\ntype = "duckdb"\npath = "{warehouse}"\n'
        "[tables.company_plan_history]\n"
        'source = "warehouse"\nkind = "group_history"\nid_column = "company_id"\n'
        'group_key = "company_id"\nstart_time = "start_timestamp"\ntie_breaker = "updated_at"\n'
        '[tables.events]\nsource = "warehouse"\nkind = "events"\n',
        encoding="utf-8",
    )
    return path


def report(warehouse: Path, store: Path, config: Path) -> None:
    """Run every step in its own process and print the figures."""
    common = ["--warehouse", str(warehouse), "--store", str(store), "--config", str(config)]
    bare = measure("bare_copy", common)
    sync = measure("sync_history", common)
    measure("sync_events", common)
    asof = measure("hand_written_asof", common)
    temporal = measure("temporal_sql", common)
    if asof["answer"] != temporal["answer"]:
        raise SystemExit("the temporal SQL and the hand-written ASOF join disagree")

    rows, events = sync["rows"], asof["rows"]
    print(f"history rows: {rows:,}   events: {events:,}")
    line("bare CREATE TABLE AS SELECT", rows, bare)
    line("pitsync sync (full)", rows, sync)
    print(f"  sync / bare copy: {sync['seconds'] / bare['seconds']:.2f}x (target: within 3x)")
    line("hand-written ASOF LEFT JOIN", events, asof)
    line("pitsync temporal SQL", events, temporal)
    ratio = temporal["seconds"] / asof["seconds"]
    print(f"  temporal SQL / hand-written ASOF: {ratio:.2f}x (target: within 1.3x)")


def line(label: str, rows: int, figures: dict) -> None:
    rate = rows / figures["seconds"]
    print(
        f"  {label:<30} {figures['seconds']:7.2f}s {rate:>14,.0f} rows/s "
        f"peak memory {figures['peak_mb']:,.0f} MB"
    )


def measure(step: str, common: list[str]) -> dict:
    """One step in a fresh interpreter; its JSON figures plus its peak memory."""
    result = subprocess.run(
        [sys.executable, __file__, "--step", step, *common],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_step(args: argparse.Namespace) -> None:
    """Inside the subprocess: run one step, print its figures as JSON."""
    import duckdb

    # Imported before the clock starts: start-up cost is not a cost per row.
    import pitsync.connectors.sync  # noqa: F401
    import pitsync.queries.execute  # noqa: F401

    started = time.perf_counter()
    rows, answer = STEPS[args.step](args, duckdb)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "answer": answer, "peak_mb": peak_mb}))


def bare_copy(args: argparse.Namespace, duckdb) -> tuple[int, None]:
    target = Path(args.store).with_suffix(".bare.duckdb")
    target.unlink(missing_ok=True)
    con = duckdb.connect(str(target))
    con.execute(f"ATTACH '{args.warehouse}' AS warehouse (READ_ONLY)")
    con.execute("CREATE TABLE copy AS SELECT * FROM warehouse.company_plan_history")
    rows = con.execute("SELECT count(*) FROM copy").fetchone()[0]
    con.close()
    target.unlink()
    return rows, None


def sync_step(table: str):
    def step(args: argparse.Namespace, duckdb) -> tuple[int, None]:
        from pitsync.config import load_config
        from pitsync.connectors.sync import SyncOptions, sync_table

        if table == "company_plan_history":
            Path(args.store).unlink(missing_ok=True)
        config = load_config(args.config)
        record = sync_table(config, config.table(table), SyncOptions())
        return record.rows_read, None

    return step


def hand_written_asof(args: argparse.Namespace, duckdb) -> tuple[int, list]:
    con = duckdb.connect(args.store, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    answer = con.execute(HAND_WRITTEN_ASOF).fetchall()
    return sum(row[1] for row in answer), [list(map(str, row)) for row in answer]


def temporal_sql(args: argparse.Namespace, duckdb) -> tuple[int, list]:
    from pitsync.queries.execute import QuerySession

    with QuerySession(Path(args.store)) as session:
        answer = session.query(TEMPORAL_JOIN).fetchall()
    return sum(row[1] for row in answer), [list(map(str, row)) for row in answer]


STEPS = {
    "bare_copy": bare_copy,
    "sync_history": sync_step("company_plan_history"),
    "sync_events": sync_step("events"),
    "hand_written_asof": hand_written_asof,
    "temporal_sql": temporal_sql,
}


if __name__ == "__main__":
    main()
