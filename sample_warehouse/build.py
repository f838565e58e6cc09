"""Build the pitsync sample warehouse: a DuckDB file with made-up SaaS tables.

The warehouse holds five tables:

- ``companies``: one row per customer company.
- ``users``: people, each belonging to one company.
- ``company_plan_history``: rows saying "from ``start_timestamp`` on, this company has
  this plan and this many seats" (TIMESTAMPTZ columns).
- ``user_plan_history``: the same for users, with plan and status; its timestamps are
  NAIVE (plain TIMESTAMP) and mean UTC.
- ``events``: product analytics events; ``distinct_id`` is a user id and ``company_id``
  is that user's company id written as text.

Most rows are generated in DuckDB SQL from ``range()``, using a small integer-mixing
function of the row number and the seed, so the same arguments always give the same data.
The hand-written hard cases in ``seed/*.csv`` (documented in ``README.md``) are loaded
with explicit column types and appended to the generated rows. Generated companies are
numbered 1..N; hard-case companies start at 900001 and hard-case users at "hard-".

Run it with:

    .venv/bin/python sample_warehouse/build.py                      # small: a few thousand rows
    .venv/bin/python sample_warehouse/build.py --large --out /tmp/large.duckdb
    .venv/bin/python sample_warehouse/build.py --large --companies 10000 --rows-per-company 200

The file is built beside the target under a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import duckdb

SCRIPT_DIR = Path(__file__).resolve().parent
SEED_DIR = SCRIPT_DIR / "seed"
DEFAULT_OUT = SCRIPT_DIR / "warehouse.duckdb"

SMALL_SIZE = {"companies": 300, "rows_per_company": 8, "events": 5_000}
LARGE_SIZE = {"companies": 200_000, "rows_per_company": 10, "events": 20_000_000}
FIRST_HARD_CASE_COMPANY = 900_001
MAX_ROWS_PER_COMPANY = 100_000
USER_PLAN_SLOTS = 4  # each user gets 1..USER_PLAN_SLOTS user_plan_history rows

# Epoch microseconds (UTC) of the boundaries used by the generator.
COMPANIES_CREATED_FROM = 1_640_995_200_000_000  # 2022-01-01
HISTORY_FROM = 1_672_531_200_000_000  # 2023-01-01
HISTORY_UNTIL = 1_767_225_600_000_000  # 2026-01-01 (exclusive)
DAY_US = 86_400_000_000

TABLES = {
    "companies": {
        "company_id": "BIGINT",
        "name": "VARCHAR",
        "industry": "VARCHAR",
        "created_at": "TIMESTAMPTZ",
    },
    "users": {
        "user_id": "VARCHAR",
        "email": "VARCHAR",
        "name": "VARCHAR",
        "company_id": "BIGINT",
        "created_at": "TIMESTAMPTZ",
    },
    "company_plan_history": {
        "company_id": "BIGINT",
        "plan": "VARCHAR",
        "seats": "INTEGER",
        "start_timestamp": "TIMESTAMPTZ",
        "updated_at": "TIMESTAMPTZ",
    },
    "user_plan_history": {
        "user_id": "VARCHAR",
        "plan": "VARCHAR",
        "status": "VARCHAR",
        "start_timestamp": "TIMESTAMP",
        "updated_at": "TIMESTAMP",
    },
    "events": {
        "insert_id": "VARCHAR",
        "event": "VARCHAR",
        "distinct_id": "VARCHAR",
        "company_id": "VARCHAR",
        "time": "TIMESTAMPTZ",
        "platform": "VARCHAR",
        "amount": "DOUBLE",
    },
}

PLANS = ("free", "starter", "pro", "team", "enterprise")
BASE_SEATS = (1, 3, 10, 25, 100)
ADJECTIVES = ("Bright", "Quiet", "Rapid", "Silver", "North", "Blue", "Clever", "Green")
NOUNS = ("Harbor", "Falcon", "Maple", "Signal", "Summit", "Orbit", "Lantern", "Delta")
SUFFIXES = ("Labs", "Inc", "Systems", "Group", "Studio", "Analytics")
INDUSTRIES = ("software", "retail", "finance", "healthcare", "education", "logistics", "media")
FIRST_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun")
LAST_NAMES = ("Silva", "Novak", "Okafor", "Berg", "Ito", "Moreau", "Khan", "Ruiz", "Lund")
PLATFORMS = ("web", "web", "web", "ios", "android", "api")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build the pitsync sample warehouse.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="DuckDB file to write")
    parser.add_argument("--large", action="store_true", help="200k companies, 20M events")
    parser.add_argument("--companies", type=int, help="number of generated companies")
    parser.add_argument("--rows-per-company", type=int, help="company_plan_history rows each")
    parser.add_argument("--events", type=int, help="number of generated events")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    args = parser.parse_args(argv)
    apply_size_defaults(args)
    check_sizes(parser, args)
    return args


def apply_size_defaults(args: argparse.Namespace) -> None:
    size = LARGE_SIZE if args.large else SMALL_SIZE
    for name, value in size.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def check_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.companies < FIRST_HARD_CASE_COMPANY:
        parser.error(
            f"--companies must be 1..{FIRST_HARD_CASE_COMPANY - 1} (higher ids are hard cases)"
        )
    if not 1 <= args.rows_per_company <= MAX_ROWS_PER_COMPANY:
        parser.error(f"--rows-per-company must be 1..{MAX_ROWS_PER_COMPANY}")
    if args.events < 0:
        parser.error("--events must not be negative")


def user_count(companies: int) -> int:
    """About ten users for every three companies (300 companies -> 1000 users)."""
    return max(1, companies * 10 // 3)


def sql_list(values: tuple) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"


def define_random_macros(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """Macros giving stable pseudo-random numbers of (row number, stream, seed).

    ``rnd(i, stream)`` is a 32-bit value; each column uses its own stream number so the
    columns are unrelated. Each step is an xor-shift or a multiply by an odd constant modulo
    2**32, so distinct row numbers below 2**32 give distinct values, and every intermediate
    stays below 2**63, so BIGINT arithmetic never overflows.
    """
    seed_key = seed % 2**32
    con.execute(f"""
        CREATE TEMP MACRO mix32(x) AS (xor(x, x >> 16) * 73244475) % 4294967296;
        CREATE TEMP MACRO scramble(x) AS mix32(mix32(mix32(x % 4294967296)));
        CREATE TEMP MACRO stream_key(stream) AS scramble(stream::BIGINT * 1103515245 + {seed_key});
        CREATE TEMP MACRO rnd(i, stream) AS
            scramble(i % 4294967296 * 1540483477 + stream_key(stream));
        CREATE TEMP MACRO unit(i, stream) AS rnd(i, stream) / 4294967296.0;
        CREATE TEMP MACRO pick(choices, i, stream) AS choices[1 + rnd(i, stream) % len(choices)];
        CREATE TEMP MACRO rnd_micros(i, stream, n) AS
            (rnd(i, stream) * 1000000 + rnd(i, stream + 1000) % 1000000) % n;
    """)


def define_shared_macros(con: duckdb.DuckDBPyConnection, companies: int) -> None:
    """Values several tables need: company creation time and each user's company."""
    year_2022 = HISTORY_FROM - COMPANIES_CREATED_FROM
    con.execute(f"""
        CREATE TEMP MACRO company_created_us(c) AS
            {COMPANIES_CREATED_FROM} + rnd_micros(c, 1, {year_2022 // 2});
        CREATE TEMP MACRO user_company(u) AS (u - 1) % {companies} + 1;
        CREATE TEMP MACRO user_created_us(u) AS company_created_us(user_company(u))
            + rnd_micros(u, 2, {HISTORY_FROM} - company_created_us(user_company(u)));
    """)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in TABLES.items():
        column_sql = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        con.execute(f"CREATE TABLE {table} ({column_sql})")


def insert_companies(con: duckdb.DuckDBPyConnection, companies: int) -> None:
    con.execute(f"""
        INSERT INTO companies
        SELECT
            c,
            concat_ws(' ', pick({sql_list(ADJECTIVES)}, c, 10),
                pick({sql_list(NOUNS)}, c, 11), pick({sql_list(SUFFIXES)}, c, 12)),
            pick({sql_list(INDUSTRIES)}, c, 13),
            make_timestamptz(company_created_us(c))
        FROM range(1, {companies} + 1) AS t(c)
    """)


def insert_users(con: duckdb.DuckDBPyConnection, users: int) -> None:
    con.execute(f"""
        INSERT INTO users
        SELECT
            printf('u%05d', u),
            lower(first_name || '.' || last_name) || '.' || u
                || '@company' || user_company(u) || '.example',
            first_name || ' ' || last_name,
            user_company(u),
            make_timestamptz(user_created_us(u))
        FROM (
            SELECT
                u,
                pick({sql_list(FIRST_NAMES)}, u, 20) AS first_name,
                pick({sql_list(LAST_NAMES)}, u, 21) AS last_name
            FROM range(1, {users} + 1) AS t(u)
        )
    """)


def insert_company_plan_history(con: duckdb.DuckDBPyConnection, companies: int, k: int) -> None:
    """K rows per company at increasing start times, one in each of K equal time slots.

    A company's rows begin somewhere in its first year and run to the end of 2025. Its plan
    climbs from a starting tier to a final tier, with an occasional one-step downgrade;
    seats grow with the row number and the tier.
    """
    first_year = 365 * DAY_US
    con.execute(f"""
        INSERT INTO company_plan_history
        WITH numbered AS (
            SELECT r, r // {k} + 1 AS company_id, r % {k} AS step
            FROM range({companies * k}) AS t(r)
        ),
        per_company AS (
            SELECT
                *,
                {HISTORY_FROM} + rnd_micros(company_id, 30, {first_year}) AS window_start,
                CASE
                    WHEN unit(company_id, 32) < 0.15 THEN 0
                    WHEN unit(company_id, 32) < 0.40 THEN 1
                    WHEN unit(company_id, 32) < 0.70 THEN 2
                    WHEN unit(company_id, 32) < 0.90 THEN 3
                    ELSE 4
                END AS final_tier
            FROM numbered
        ),
        slotted AS (
            SELECT
                *,
                ({HISTORY_UNTIL} - window_start) // {k} AS slot,
                rnd(company_id, 31) % (final_tier + 1) AS start_tier
            FROM per_company
        ),
        placed AS (
            SELECT
                *,
                window_start + step * slot + rnd_micros(r, 33, slot) AS start_us,
                greatest(0, start_tier
                    + round((final_tier - start_tier) * step / greatest({k} - 1, 1))::BIGINT
                    - CASE WHEN step > 0 AND unit(r, 36) < 0.12 THEN 1 ELSE 0 END) AS tier
            FROM slotted
        )
        SELECT
            company_id,
            {sql_list(PLANS)}[tier + 1],
            greatest(1, round({sql_list(BASE_SEATS)}[tier + 1]
                * (1 + 2.0 * step / {k}) * (0.9 + 0.2 * unit(r, 34))))::INTEGER,
            make_timestamptz(start_us),
            make_timestamptz(start_us + 1000000 + rnd_micros(r, 35, {3600 * 1_000_000}))
        FROM placed
    """)


def insert_user_plan_history(con: duckdb.DuckDBPyConnection, users: int) -> None:
    """1..4 rows per user: a trial first, then mostly active, sometimes past_due/canceled.

    Starts are whole seconds, stored as naive TIMESTAMP values meaning UTC.
    """
    slots = USER_PLAN_SLOTS
    gap = 250 * DAY_US
    con.execute(f"""
        INSERT INTO user_plan_history
        SELECT
            printf('u%05d', u),
            {sql_list(PLANS)}[least(4, rnd(u, 41) % 3 + step) + 1],
            CASE
                WHEN step = 0 THEN 'trial'
                WHEN unit(r, 42) < 0.70 THEN 'active'
                WHEN unit(r, 42) < 0.85 THEN 'past_due'
                ELSE 'canceled'
            END,
            make_timestamp(start_us),
            make_timestamp(start_us + (1 + rnd(r, 43) % 600) * 1000000)
        FROM (
            SELECT
                r,
                u,
                step,
                ({HISTORY_FROM} + step * {gap} + rnd_micros(r, 44, {gap}))
                    // 1000000 * 1000000 AS start_us
            FROM (
                SELECT r, r // {slots} + 1 AS u, r % {slots} AS step
                FROM range({users * slots}) AS t(r)
            )
            WHERE step <= rnd(u, 40) % {slots}
        )
    """)


def insert_events(con: duckdb.DuckDBPyConnection, events: int, users: int) -> None:
    """Events by random users at random microsecond times in 2023..2025."""
    span = HISTORY_UNTIL - HISTORY_FROM
    con.execute(f"""
        INSERT INTO events
        SELECT
            printf('ev-%08x-%d', rnd(r, 50), r),
            event,
            printf('u%05d', u),
            user_company(u)::VARCHAR,
            make_timestamptz({HISTORY_FROM} + rnd_micros(r, 52, {span})),
            pick({sql_list(PLATFORMS)}, r, 53),
            CASE WHEN event = 'purchase' THEN round(5 + 495 * unit(r, 54), 2) END
        FROM (
            SELECT
                r,
                1 + rnd(r, 51) % {users} AS u,
                CASE
                    WHEN unit(r, 55) < 0.45 THEN 'page_view'
                    WHEN unit(r, 55) < 0.70 THEN 'login'
                    WHEN unit(r, 55) < 0.85 THEN 'report_created'
                    WHEN unit(r, 55) < 0.95 THEN 'invite_sent'
                    ELSE 'purchase'
                END AS event
            FROM range({events}) AS t(r)
        )
    """)


def insert_seed_rows(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Append seed/<table>.csv, read with the table's own column types (no detection)."""
    path = SEED_DIR / f"{table}.csv"
    types = ", ".join(f"'{name}': '{kind}'" for name, kind in TABLES[table].items())
    con.execute(
        f"INSERT INTO {table} SELECT * FROM read_csv(?, header = true, auto_detect = false, "
        f"delim = ',', quote = '\"', columns = {{{types}}})",
        [str(path)],
    )


def build(con: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> None:
    users = user_count(args.companies)
    con.execute("SET TimeZone = 'UTC'")
    define_random_macros(con, args.seed)
    define_shared_macros(con, args.companies)
    create_tables(con)
    insert_companies(con, args.companies)
    insert_users(con, users)
    insert_company_plan_history(con, args.companies, args.rows_per_company)
    insert_user_plan_history(con, users)
    insert_events(con, args.events, users)
    for table in TABLES:
        insert_seed_rows(con, table)
    con.execute("CHECKPOINT")


def print_row_counts(con: duckdb.DuckDBPyConnection) -> None:
    for table in TABLES:
        (count,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        print(f"{table:<22} {count:>12,} rows")


def remove_if_present(path: Path) -> None:
    path.unlink(missing_ok=True)


def wal_of(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def build_file(target: Path, args: argparse.Namespace) -> None:
    """Build into a temporary file beside the target, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    remove_if_present(temporary)
    remove_if_present(wal_of(temporary))
    try:
        with duckdb.connect(str(temporary)) as con:
            build(con, args)
            print_row_counts(con)
        remove_if_present(wal_of(target))  # a stale WAL must not be replayed on the new file
        os.replace(temporary, target)
    except BaseException:
        remove_if_present(temporary)
        remove_if_present(wal_of(temporary))
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    build_file(args.out, args)
    print(f"built {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
