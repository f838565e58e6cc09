"""Benchmark: a mirror run over a 2M-row history with 1% of it changed, against a full sync.

    python bench/mirror_sync.py                       # 2M rows, 1% changed
    python bench/mirror_sync.py --companies 50000     # 500k rows, quicker

It copies the large sample warehouse (built once per size), then, each step in a fresh
subprocess: a full sync (the reference), a first mirror run (it reads everything, as a
full sync does), a change of 1% of the source rows (a third updated, a third deleted, a
third inserted), the raw engine's hand-written mirror of the same change on a copy of
the store (see `raw_mirror` in append_sync.py), the mirror run that applies them, and an
idle mirror run over the unchanged source: what every mirror run of this table costs, as
it must read and compare every row to find that nothing changed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from append_sync import DATA, build_sample, line, measure
from append_sync import write_config as write_history_config

TABLE = "company_plan_history"


def main() -> None:
    args = parse_arguments()
    warehouse = prepare_warehouse(args.companies)
    store = DATA / f"mirror-{args.companies}-store.duckdb"
    full = measure("sync", write_config(warehouse, store, "full", args.companies), fresh=True)
    mirror_config = write_config(warehouse, store, "mirror", args.companies)
    measure("sync", mirror_config, fresh=True)
    changed = change_one_percent(warehouse)
    raw_store = DATA / f"mirror-{args.companies}-raw-store.duckdb"
    shutil.copyfile(store, raw_store)
    raw = measure("raw_mirror", mirror_config, fresh=False, store=raw_store)
    mirror = measure("sync", mirror_config, fresh=False)
    idle = measure("sync", mirror_config, fresh=False)

    print(f"history rows: {full['rows']:,}; changed: {changed:,}")
    line("full sync", full["rows"], full)
    line("mirror run", mirror["rows"], mirror)
    line("raw DuckDB", raw["rows"], raw)
    line("idle run", idle["rows"], idle)
    print(f"  mirror / full sync: {mirror['seconds'] / full['seconds']:.1%} (target: under 30%)")
    print(f"  raw DuckDB mirror / full sync: {raw['seconds'] / full['seconds']:.1%}")
    print(f"  mirror / raw DuckDB mirror: {mirror['seconds'] / raw['seconds']:.2f}x")
    print(f"  idle mirror run / full sync: {idle['seconds'] / full['seconds']:.1%}")
    print(
        f"  the mirror run changed {mirror['entities']:,} entities, the idle run {idle['entities']}"
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=200_000)
    return parser.parse_args()


def prepare_warehouse(companies: int) -> Path:
    warehouse = DATA / f"mirror-{companies}-warehouse.duckdb"
    shutil.copyfile(build_sample(companies), warehouse)
    return warehouse


def change_one_percent(warehouse: Path) -> int:
    """Update, delete and insert a third of 1% of the rows each; return how many."""
    import duckdb

    con = duckdb.connect(str(warehouse))
    total = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    third = total // 300
    sample = f"SELECT rowid FROM {TABLE} USING SAMPLE {third} ROWS (reservoir, {{seed}})"
    con.execute(f"UPDATE {TABLE} SET plan = 'changed' WHERE rowid IN ({sample.format(seed=3)})")
    con.execute(f"DELETE FROM {TABLE} WHERE rowid IN ({sample.format(seed=5)})")
    con.execute(
        f"INSERT INTO {TABLE} SELECT company_id, 'enterprise', seats, "
        f"start_timestamp + INTERVAL 3650 DAY, updated_at "
        f"FROM {TABLE} USING SAMPLE {third} ROWS (reservoir, 7)"
    )
    con.close()
    return 3 * third


def write_config(warehouse: Path, store: Path, mode: str, companies: int) -> Path:
    path = DATA / f"mirror-{companies}-{mode}.toml"
    return write_history_config(path, warehouse, store, mode, TABLE)


if __name__ == "__main__":
    main()
