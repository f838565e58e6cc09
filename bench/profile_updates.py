"""Benchmark: 1M mixed profile update records applied to 100k user profiles.

    python bench/profile_updates.py                      # 1M records, 100k profiles
    python bench/profile_updates.py --records 200000     # quicker

The records are generated in DuckDB (seeded, so every run sees the same file): 40% $set,
15% $set_once, 15% $add, 10% $union, 10% $append, 5% $remove, 4% $unset, 1% $delete,
each naming one to three properties. Then, each in a fresh subprocess:

1. `pitsync engage` of the whole file into an empty store, then again into the store it
   left (profiles that exist);
2. the raw engine on the same file: DuckDB reading the same lines, exploding every $set
   and keeping the last value of each property, by hand, with no other operator. It is
   the floor of what any fold over these records can cost.

It prints seconds, records per second, peak memory (max RSS), and the ratio to the raw
engine. Target: at least 100k records per second. `--memory-limit 256MB` caps DuckDB's
buffers (the `[store] memory_limit` setting), to show the fold stays within a bound
whatever the number of profiles; past it DuckDB spills to disk.
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
DATA = HERE / "data"

MIX = [  # (upper bound of the draw, operator, payload SQL)
    (0.40, "$set", "json_object('plan', plan, 'seats', seats, 'region', region)"),
    (0.55, "$set_once", "json_object('first_source', region, 'first_plan', plan)"),
    (0.70, "$add", "json_object('logins', 1, 'spend', seats * 1.5)"),
    (0.80, "$union", "json_object('tags', [region, plan])"),
    (0.90, "$append", "json_object('pages', plan)"),
    (0.95, "$remove", "json_object('tags', region)"),
    (0.99, "$unset", "['seats']"),
    (1.00, "$delete", "''"),
]


def main() -> None:
    args = parse_arguments()
    if args.step:
        run_step(args)
        return
    records = build_records(args.records, args.profiles)
    config = write_config(DATA / "profiles.toml", DATA / "profiles-store.duckdb", args.memory_limit)
    store = DATA / "profiles-store.duckdb"
    store.unlink(missing_ok=True)
    first = measure("engage", config, records)
    second = measure("engage", config, records)
    raw = measure("raw", config, records)

    print(f"records: {args.records:,} over {args.profiles:,} profiles ({size(records)})")
    report("engage, empty store", args.records, first)
    report("engage, existing profiles", args.records, second)
    report("raw DuckDB ($set only)", args.records, raw)
    print(f"  engage / raw engine: {first['seconds'] / raw['seconds']:.2f}x")
    print("  target: at least 100,000 records per second")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--memory-limit", help='DuckDB\'s buffer limit for pitsync, e.g. "256MB"')
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    return parser.parse_args()


def build_records(records: int, profiles: int) -> Path:
    """JSON lines of mixed operators, written by DuckDB; built once per size."""
    path = DATA / f"updates-{records}-{profiles}.jsonl"
    if path.exists():
        return path
    import duckdb

    DATA.mkdir(exist_ok=True)
    operator = (
        "CASE "
        + " ".join(
            f"WHEN draw < {bound} THEN json_object('$distinct_id', 'u' || profile, "
            f"'{op}', {payload}, '$time', 1700000000000 + i)"
            for bound, op, payload in MIX
        )
        + " END"
    )
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    con.execute(f"""
        COPY (
            SELECT {operator} AS line FROM (
                SELECT i, random() AS draw, CAST(floor(random() * {profiles}) AS BIGINT)
                    AS profile,
                    ['free', 'pro', 'team'][1 + CAST(floor(random() * 3) AS INTEGER)] AS plan,
                    1 + CAST(floor(random() * 50) AS INTEGER) AS seats,
                    ['eu', 'us', 'apac', 'latam'][1 + CAST(floor(random() * 4) AS INTEGER)]
                        AS region
                FROM range({records}) t(i)
            ) ORDER BY i
        ) TO '{path}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1f')
    """)
    return path


def write_config(path: Path, store: Path, memory_limit: str | None) -> Path:
    DATA.mkdir(exist_ok=True)
    limit = f'memory_limit = "{memory_limit}"\n' if memory_limit else ""
    path.write_text(f'[store]\npath = "{store}"\n{limit}')
    return path


def measure(step: str, config: Path, records: Path) -> dict:
    command = [sys.executable, __file__, "--step", step, "--config", str(config)]
    output = subprocess.run(
        [*command, "--file", str(records)], check=True, capture_output=True, text=True
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def run_step(args: argparse.Namespace) -> None:
    """In the subprocess: one timed step, its figures as one JSON line."""
    started = time.perf_counter()
    if args.step == "engage":
        from pitsync.config import load_config
        from pitsync.connectors.profile_updates import apply_file

        report = apply_file(load_config(args.config), args.file)
        extra = {"applied": report.outcome.applied, "profiles": report.outcome.profiles_changed}
    else:
        extra = raw_engine(args.file)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak, **extra}))


def raw_engine(path: str) -> dict:
    """Hand-written DuckDB: every $set property exploded, the last value of each kept."""
    import duckdb

    con = duckdb.connect(str(DATA / "raw-store.duckdb"))
    con.execute(f"""
        CREATE OR REPLACE TABLE latest AS
        WITH lines AS (
            SELECT row_number() OVER () AS line, json AS record
            FROM read_ndjson_objects('{path}')
        )
        SELECT record->>'$."$distinct_id"' AS profile_id, e.key AS name,
            arg_max(e.value, line) AS value
        FROM lines, json_each(record->'$."$set"') e
        GROUP BY ALL
    """)
    rows = con.execute("SELECT count(*) FROM latest").fetchone()
    con.close()
    return {"properties": rows[0] if rows else 0}


def report(label: str, records: int, figures: dict) -> None:
    rate = records / figures["seconds"]
    peak = figures["peak"] / 2**20
    print(f"  {label}: {figures['seconds']:.2f} s, {rate:,.0f} records/s, peak {peak:,.0f} MB")


def size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:,.0f} MB"


if __name__ == "__main__":
    main()
