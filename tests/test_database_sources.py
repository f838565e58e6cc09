"""Database sources read through ADBC: types, quoted names, credentials, missing drivers.

Each table is created in the database itself (a PostgreSQL schema of its own, or an
SQLite file), synced, and the store file is then opened directly to see what it holds.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import socket
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pitsync.config import load_config
from pitsync.connectors.databases import (
    DRIVERS,
    TextDecoder,
    redact,
    with_connect_timeout,
    with_text_checked,
    with_times_unwrapped,
)
from pitsync.errors import ConfigError, SourceError
from pitsync.modeling.staging import UNREADABLE
from tests.conftest import PostgresSchema, Project, toml_value, utc

SECRET = "SECRETPW123"
SECRET_URI = f"postgresql://postgres:{SECRET}@127.0.0.1:1/test"  # nothing listens on port 1
PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def stored_types(project: Project, relation: str) -> dict[str, str]:
    """Column types of a stored relation, read from the store file (queries refuse DESCRIBE)."""
    con = duckdb.connect(str(project.store), read_only=True)
    try:
        return {row[0]: row[1] for row in con.execute(f"DESCRIBE main.{relation}").fetchall()}
    finally:
        con.close()


def configure_accounts(project: Project, **settings: str) -> None:
    project.configure(
        "account_history",
        kind="group_history",
        id_column="account_id",
        group_key="account_id",
        start_time="start_timestamp",
        **settings,
    )


POSTGRES_ACCOUNTS = (
    "CREATE TABLE account_history (account_id integer, seats integer, "
    "lifetime_events bigint, price numeric(10, 2), usage_ratio numeric, wide numeric(40, 2), "
    "active boolean, plan text, renews_on date, start_timestamp timestamp, "
    "trial_ends_at timestamptz, settings json, flags jsonb)"
)
ARRAY_ACCOUNTS = (
    "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
    "seats integer[], owners uuid[])"
)
POSTGRES_ACCOUNT_ROW = (
    "INSERT INTO account_history VALUES (7, 12, 9000000000, 1234.50, 0.125, 12.5, true, "
    "'pro', '2024-06-30', '2024-03-01 09:00:00', '2024-03-15 12:00:00+02', "
    """'{"theme":  "dark"}', '{"alpha": [1,2], "beta": true}')"""
)


@pytest.mark.backends("postgres")
def test_postgres_types_are_stored_as_their_duckdb_counterparts(project: Project) -> None:
    project.database_sql(POSTGRES_ACCOUNTS, POSTGRES_ACCOUNT_ROW)
    configure_accounts(project, timezone="Asia/Tokyo")
    project.sync("account_history")

    # numeric(10,2) fits a decimal; unconstrained or wider than 38 digits becomes double.
    assert stored_types(project, "account_history") == {
        "account_id": "VARCHAR",
        "start_time": "TIMESTAMP WITH TIME ZONE",
        "end_time": "TIMESTAMP WITH TIME ZONE",
        "seats": "INTEGER",
        "lifetime_events": "BIGINT",
        "price": "DECIMAL(10,2)",
        "usage_ratio": "DOUBLE",
        "wide": "DOUBLE",
        "active": "BOOLEAN",
        "plan": "VARCHAR",
        "renews_on": "DATE",
        "trial_ends_at": "TIMESTAMP WITH TIME ZONE",
        "settings": "JSON",
        "flags": "JSON",
    }
    # 09:00 naive in Tokyo (UTC+9) is midnight UTC; 12:00+02 is 10:00 UTC. json keeps
    # the text as written; jsonb is PostgreSQL's normal form, shorter keys first.
    assert project.query(
        "SELECT account_id, start_time, seats, lifetime_events, price, usage_ratio, wide, "
        "active, plan, renews_on, trial_ends_at, settings, flags FROM account_history"
    ) == [
        (
            "7",
            utc("2024-03-01T00:00:00Z"),
            12,
            9_000_000_000,
            Decimal("1234.50"),
            0.125,
            12.5,
            True,
            "pro",
            dt.date(2024, 6, 30),
            utc("2024-03-15T10:00:00Z"),
            '{"theme":  "dark"}',
            '{"beta": true, "alpha": [1, 2]}',
        )
    ]


@pytest.mark.backends("postgres")
@pytest.mark.parametrize(
    ("column_type", "value"),
    [
        ("inet", "10.0.0.1"),
        ("int4range", "[1,10)"),
        ("money", "12.34"),  # the driver would hand over 1234 (cents)
        ("oid", "4000000000"),  # the driver would hand over -294967296
        # Arrays of those: the items would arrive as bytes, cents, or opaque text.
        ("inet[]", "{10.0.0.1}"),
        ("money[]", "{12.34}"),
        ("numeric[]", "{1.25}"),
    ],
)
def test_an_unmappable_postgres_type_names_the_column_and_stores_nothing(
    project: Project, column_type: str, value: str
) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        f"network {column_type})",
        f"INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', '{value}')",
    )
    configure_accounts(project)

    with pytest.raises(
        ConfigError, match="column `network` of table `account_history` .* cannot map"
    ):
        project.sync("account_history")
    assert not project.store.exists()


# Uuids as PostgreSQL's `uuid::text` prints them: lower-case hex in groups of 8-4-4-4-12.
ACCOUNT_UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
OWNER_UUID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


@pytest.mark.backends("postgres")
def test_postgres_uuid_ids_and_properties_are_stored_as_lower_case_text(project: Project) -> None:
    # The account is written once in upper case and once in lower case: one id. The owner
    # is written without hyphens, which PostgreSQL reads as the same uuid.
    project.database_sql(
        "CREATE TABLE account_history (account_id uuid, start_timestamp timestamptz, "
        "plan text, owner_id uuid)",
        "INSERT INTO account_history VALUES "
        "('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '2024-03-01 00:00:00+00', 'free', "
        "'6BA7B8109DAD11D180B400C04FD430C8'), "
        "('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-04-01 00:00:00+00', 'pro', NULL), "
        f"(NULL, '2024-03-01 00:00:00+00', 'free', '{OWNER_UUID}')",
    )
    configure_accounts(project)
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted, record.quarantined) == (3, 2, 1)
    types = stored_types(project, "account_history")
    assert (types["account_id"], types["owner_id"]) == ("VARCHAR", "VARCHAR")
    # The NULL owner of the second row is undefined from April, not the March owner.
    march, april = utc("2024-03-01T00:00:00Z"), utc("2024-04-01T00:00:00Z")
    assert project.query(
        "SELECT account_id, start_time, end_time, plan, owner_id FROM account_history "
        "ORDER BY start_time"
    ) == [
        (ACCOUNT_UUID, march, april, "free", OWNER_UUID),
        (ACCOUNT_UUID, april, None, "pro", None),
    ]
    assert project.query("SELECT reason FROM quarantine") == [("missing id",)]


@pytest.mark.backends("postgres")
def test_postgres_arrays_of_uuids_are_lists_of_text_and_other_arrays_lists(
    project: Project,
) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "owners uuid[], seats integer[], tags text[])",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', "
        "'{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11, NULL}', '{3, 5}', '{eu, \"big one\"}')",
    )
    configure_accounts(project)
    project.sync("account_history")

    types = stored_types(project, "account_history")
    assert (types["owners"], types["seats"], types["tags"]) == (
        "VARCHAR[]",
        "INTEGER[]",
        "VARCHAR[]",
    )
    assert project.query("SELECT owners, seats, tags FROM account_history") == [
        ([ACCOUNT_UUID, None], [3, 5], ["eu", "big one"])
    ]


@pytest.mark.backends("postgres")
def test_postgres_arrays_whose_subscripts_start_anywhere_are_read_as_their_items(
    project: Project,
) -> None:
    # An array's first subscript may be any integer; the driver refused the whole read
    # on one that is neither 0 nor 1.
    project.database_sql(
        ARRAY_ACCOUNTS,
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', '[2:3]={7,8}', "
        "'[5:5]={A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'), "
        "('a2', '2024-03-01 00:00:00+00', '[-5:-4]={1,2}', '{}'), "
        "('a3', '2024-03-01 00:00:00+00', '[0:1]={5,6}', NULL)",
    )
    configure_accounts(project)

    assert project.sync("account_history").inserted == 3
    assert project.query("SELECT account_id, seats, owners FROM account_history ORDER BY 1") == [
        ("a1", [7, 8], [ACCOUNT_UUID]),
        ("a2", [1, 2], []),
        ("a3", [5, 6], None),
    ]


@pytest.mark.backends("postgres")
def test_a_postgres_row_with_a_multi_dimensional_array_is_quarantined_naming_the_column(
    project: Project,
) -> None:
    # PostgreSQL keeps `{{1,2},{3,4}}` in an integer[] column; the driver would hand it over
    # as [1, 2, 3, 4]. Such a row cannot be stored as it is, so it is set aside; the
    # one-dimensional, empty and NULL arrays of the other rows are kept.
    project.database_sql(
        ARRAY_ACCOUNTS,
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', '{3, 5}', '{}'), "
        "('a1', '2024-04-01 00:00:00+00', '{{1, 2}, {3, 4}}', NULL), "
        "('a2', '2024-03-01 00:00:00+00', NULL, "
        f"'{{{{{ACCOUNT_UUID}}}, {{{OWNER_UUID}}}}}'), "
        "('a3', '2024-03-01 00:00:00+00', '{7}', NULL)",
    )
    configure_accounts(project)
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted, record.quarantined) == (4, 2, 2)
    assert project.query(
        "SELECT account_id, end_time, seats, owners FROM account_history ORDER BY account_id"
    ) == [("a1", None, [3, 5], []), ("a3", None, [7], None)]
    assert project.query("SELECT reason FROM quarantine ORDER BY reason") == [
        ("multi-dimensional array in column owners",),
        ("multi-dimensional array in column seats",),
    ]


@pytest.mark.backends("postgres")
def test_a_postgres_numeric_nan_is_quarantined_where_a_decimal_cannot_hold_it(
    project: Project,
) -> None:
    # numeric(10, 2) becomes DECIMAL(10, 2), which has no NaN: that row is set aside. An
    # unconstrained numeric becomes a DOUBLE, which holds NaN and infinities as they are.
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "price numeric(10, 2), ratio numeric)",
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', 'NaN', 1.5), "
        "('a2', '2024-03-01 00:00:00+00', 3.25, 'NaN'), "
        "('a3', '2024-03-01 00:00:00+00', 1.00, '-Infinity')",
    )
    configure_accounts(project)
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted, record.quarantined) == (3, 2, 1)
    rows = project.query(
        "SELECT account_id, CAST(price AS VARCHAR), isnan(ratio), ratio = -'Infinity'::DOUBLE "
        "FROM account_history ORDER BY account_id"
    )
    assert rows == [("a2", "3.25", True, False), ("a3", "1.00", False, True)]
    assert project.query("SELECT reason, row_data->>'account_id' FROM quarantine") == [
        ("NaN in numeric column price", "a1")
    ]


@pytest.mark.backends("postgres")
def test_a_postgres_numeric_past_every_double_is_quarantined_not_made_infinite(
    project: Project,
) -> None:
    # A double ends near 1.8e308, where a numeric goes on: 2^1024 - 2^970 is the least
    # number that rounds to infinity, and one less rounds to the largest double. A
    # numeric that is infinite, or NaN, stays so.
    rounds_to_infinity = 2**1024 - 2**970
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "ratio numeric)",
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', 1e400), "
        f"('a2', '2024-03-01 00:00:00+00', -{rounds_to_infinity}), "
        f"('a3', '2024-03-01 00:00:00+00', {rounds_to_infinity - 1}), "
        "('a4', '2024-03-01 00:00:00+00', 'Infinity'), "
        "('a5', '2024-03-01 00:00:00+00', 'NaN')",
    )
    configure_accounts(project)
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted, record.quarantined) == (5, 3, 2)
    rows = project.query("SELECT account_id, ratio FROM account_history ORDER BY account_id")
    assert [row[0] for row in rows] == ["a3", "a4", "a5"]
    assert rows[0][1] == sys.float_info.max and rows[1][1] == float("inf")
    assert rows[2][1] != rows[2][1]  # NaN
    quarantined = "SELECT reason, row_data->>'account_id' FROM quarantine ORDER BY 2"
    assert project.query(quarantined) == [
        ("number too large for a double in column ratio", "a1"),
        ("number too large for a double in column ratio", "a2"),
    ]


@pytest.mark.backends("postgres")
def test_postgres_uuid_insert_ids_append_once_and_uuid_group_keys_join(project: Project) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id uuid, start_timestamp timestamptz, plan text)",
        f"INSERT INTO account_history VALUES ('{ACCOUNT_UUID}', '2024-03-01 00:00:00+00', 'pro')",
        "CREATE TABLE events (insert_id uuid, event text, distinct_id text, account_id uuid, "
        "time timestamptz, loaded_at timestamptz)",
        "INSERT INTO events VALUES "
        "('11111111-1111-4111-8111-11111111111A', 'login', 'u1', "
        "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '2024-03-02 00:00:00+00', "
        "'2024-03-02 10:00:00+00'), "
        f"('22222222-2222-4222-8222-222222222222', 'login', 'u1', '{ACCOUNT_UUID}', "
        "'2024-02-01 00:00:00+00', '2024-03-02 10:00:00+00')",
    )
    configure_accounts(project)
    project.configure(
        "events", kind="events", mode="append", cursor="loaded_at", insert_id="insert_id"
    )
    project.sync("account_history")
    project.sync("events")
    project.database_sql(
        "INSERT INTO events VALUES ('33333333-3333-4333-8333-333333333333', 'login', 'u2', "
        "NULL, '2024-03-03 00:00:00+00', '2024-03-02 11:00:00+00')"
    )
    record = project.sync("events")

    # The first two sit at the watermark and are read again, unchanged; the third is new.
    assert (record.rows_read, record.inserted, record.updated) == (3, 1, 0)
    # February is before the account's first row; the third event names no account.
    assert project.query(
        "SELECT e.insert_id, e.account_id, h.plan FROM events AS e "
        "LEFT JOIN account_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.account_id = e.account_id ORDER BY e.insert_id"
    ) == [
        ("11111111-1111-4111-8111-11111111111a", ACCOUNT_UUID, "pro"),
        ("22222222-2222-4222-8222-222222222222", ACCOUNT_UUID, None),
        ("33333333-3333-4333-8333-333333333333", None, None),
    ]


@pytest.mark.backends("postgres")
def test_a_postgres_uuid_cursor_reads_from_its_watermark_in_uuid_order(project: Project) -> None:
    # Time-ordered uuids (version 7) rise as rows are written. The watermark is stored as
    # text; PostgreSQL compares it with the column as a uuid, whose order is its hex order.
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "plan text, row_version uuid)",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', 'free', "
        "'018f0000-0000-7000-8000-000000000009')",
    )
    configure_accounts(project, mode="append", cursor="row_version")
    project.sync("account_history")
    # ...0A is past ...09 (written in upper case); ...08 is below the watermark.
    project.database_sql(
        "INSERT INTO account_history VALUES "
        "('a1', '2024-04-01 00:00:00+00', 'pro', '018F0000-0000-7000-8000-00000000000A'), "
        "('a1', '2024-05-01 00:00:00+00', 'team', '018f0000-0000-7000-8000-000000000008')"
    )
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted, record.watermark_after) == (
        2,
        1,
        "018f0000-0000-7000-8000-00000000000a",
    )
    assert project.query(
        "SELECT plan, start_time, end_time FROM account_history ORDER BY start_time"
    ) == [
        ("free", utc("2024-03-01T00:00:00Z"), utc("2024-04-01T00:00:00Z")),
        ("pro", utc("2024-04-01T00:00:00Z"), None),
    ]


# Collated so that a later load sorts below the watermark: "a" < "B" there, but the
# watermark is the greatest cursor by code point, as the store compares text ("B" < "a").
COLLATED_CURSOR = {"postgres": 'text COLLATE "en-x-icu"', "sqlite": "TEXT COLLATE NOCASE"}


@pytest.mark.backends("postgres", "sqlite")
def test_a_collated_text_cursor_is_compared_by_code_point(project: Project) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp text, plan text, "
        f"batch {COLLATED_CURSOR[project.backend]})",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', 'free', 'B')",
    )
    configure_accounts(project, mode="append", cursor="batch")
    project.sync("account_history")
    project.database_sql(
        "INSERT INTO account_history VALUES ('a2', '2024-03-01 00:00:00+00', 'pro', 'a')"
    )
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted, record.watermark_after) == (2, 1, "a")
    assert project.query("SELECT account_id FROM account_history ORDER BY 1") == [
        ("a1",),
        ("a2",),
    ]


@pytest.mark.backends("postgres")
def test_a_postgres_enum_cursor_is_refused_before_anything_is_read(project: Project) -> None:
    # PostgreSQL orders an enum by its labels' place in the type: here b2 comes before b1,
    # and a watermark of text would read them the other way round.
    project.database_sql(
        "CREATE TYPE load_batch AS ENUM ('b2', 'b1')",
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "plan text, batch load_batch)",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', 'free', 'b2')",
    )
    configure_accounts(project, mode="append", cursor="batch")

    with pytest.raises(ConfigError, match="cursor `batch` is of type load_batch, which Post"):
        project.sync("account_history")
    assert not project.store.exists()


@pytest.mark.backends("postgres")
def test_a_postgres_uuid_start_time_is_refused_before_anything_is_read(project: Project) -> None:
    # Read as its text, a uuid would be quarantined row by row as an unreadable time.
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp uuid, plan text)",
        "INSERT INTO account_history VALUES ('a1', '018f0000-0000-7000-8000-000000000009', 'free')",
    )
    configure_accounts(project)

    with pytest.raises(ConfigError, match="`start_timestamp` .start_time. holds uuid values"):
        project.sync("account_history")
    assert not project.store.exists()


@pytest.mark.backends("postgres")
def test_a_postgres_numeric_cursor_read_as_a_double_is_refused(project: Project) -> None:
    # As a double, 100000000000000001 and 100000000000000002 are one number: a later load
    # would tie with the one before it.
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "plan text, load_number numeric)",
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', 'free', 100000000000000001)",
    )
    configure_accounts(project, mode="append", cursor="load_number")

    with pytest.raises(ConfigError, match="cursor `load_number` is a numeric without a prec"):
        project.sync("account_history")
    assert not project.store.exists()


@pytest.mark.backends("postgres")
def test_a_postgres_numeric_cursor_of_38_digits_orders_loads_exactly(project: Project) -> None:
    # The two loads of one key differ in the 18th digit; the later one replaces the first.
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "plan text, load_number numeric(38, 0))",
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', 'zzz-first', 100000000000000001)",
    )
    configure_accounts(project, mode="append", cursor="load_number")
    project.sync("account_history")
    project.database_sql(
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00+00', 'aaa-corrected', 100000000000000002)"
    )
    record = project.sync("account_history")

    assert (record.updated, record.conflicts) == (1, 0)
    assert project.query("SELECT plan FROM account_history") == [("aaa-corrected",)]


@pytest.mark.backends("postgres")
def test_a_postgres_text_cursor_that_becomes_a_uuid_reads_every_row_once(
    project: Project,
) -> None:
    # The watermark "batch-9" is no uuid for PostgreSQL to compare with: the next run reads
    # every row, and the uuid's own watermark holds from then on.
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "plan text, row_version text)",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', 'free', 'batch-9')",
    )
    configure_accounts(project, mode="append", cursor="row_version")
    project.sync("account_history")
    project.database_sql(
        "UPDATE account_history SET row_version = '018f0000-0000-7000-8000-000000000001'",
        "ALTER TABLE account_history ALTER row_version TYPE uuid USING row_version::uuid",
        "INSERT INTO account_history VALUES "
        "('a2', '2024-03-01 00:00:00+00', 'pro', '018f0000-0000-7000-8000-000000000002')",
    )
    changed = project.sync("account_history")

    assert (changed.rows_read, changed.inserted) == (2, 1)
    assert changed.watermark_after == "018f0000-0000-7000-8000-000000000002"


@pytest.mark.backends("sqlite")
def test_sqlite_types_and_text_start_times(project: Project) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id INTEGER, seats INTEGER, ratio REAL, "
        "plan TEXT, price NUMERIC, start_timestamp TEXT)",
        "INSERT INTO account_history VALUES "
        "(7, 12, 0.125, 'pro', 19.5, '2024-03-01T09:00:00+09:00'), "
        "(8, 3, 2.5, 'free', 20, '2024-03-01 00:00:00')",
    )
    configure_accounts(project, timezone="Europe/Berlin")
    project.sync("account_history")

    # SQLite integers are 64-bit; NUMERIC holds 19.5 as REAL and 20 as INTEGER, so the
    # column is read as double.
    assert stored_types(project, "account_history") == {
        "account_id": "VARCHAR",
        "start_time": "TIMESTAMP WITH TIME ZONE",
        "end_time": "TIMESTAMP WITH TIME ZONE",
        "seats": "BIGINT",
        "ratio": "DOUBLE",
        "plan": "VARCHAR",
        "price": "DOUBLE",
    }
    # With its offset, 09:00+09:00 is midnight UTC; without one, midnight in Berlin
    # (UTC+1 in winter) is 23:00 UTC the day before.
    assert project.query(
        "SELECT account_id, start_time, seats, ratio, plan, price FROM account_history "
        "ORDER BY account_id"
    ) == [
        ("7", utc("2024-03-01T00:00:00Z"), 12, 0.125, "pro", 19.5),
        ("8", utc("2024-02-29T23:00:00Z"), 3, 2.5, "free", 20.0),
    ]


@pytest.mark.backends("sqlite")
def test_a_sqlite_value_of_another_storage_class_quarantines_its_row(project: Project) -> None:
    # SQLite keeps any value in any column; the driver would fail the whole read on one.
    project.database_sql(
        "CREATE TABLE account_history (account_id TEXT, start_timestamp TEXT, seats INTEGER, "
        "price REAL, paid BOOLEAN, note TEXT)",
        "INSERT INTO account_history VALUES "
        "('a1', '2024-03-01 00:00:00', 3, 2, 1, 12.5), "
        "('a2', '2024-03-01 00:00:00', x'00ff', 1.5, 0, NULL), "
        "('a3', '2024-03-01 00:00:00', 9.3e18, 1.5, 0, NULL), "
        "('a4', '2024-03-01 00:00:00', 4, 'cheap', 0, NULL), "
        "('a5', '2024-03-01 00:00:00', NULL, NULL, 'yes', NULL), "
        "('a6', '2024-03-01 00:00:00', NULL, NULL, NULL, x'fffe')",
    )
    configure_accounts(project)

    record = project.sync("account_history")

    assert (record.inserted, record.quarantined) == (1, 5)
    assert project.query("SELECT account_id, seats, price, paid, note FROM account_history") == [
        ("a1", 3, 2.0, True, "12.5")
    ]
    # The reason names the value as SQLite writes it: the row keeps it NULL.
    assert project.query("SELECT reason FROM quarantine ORDER BY reason") == [
        ("blob value X'00FF' in integer column seats",),
        ("blob value X'FFFE' in text column note",),
        ("real value 9.3e+18 in integer column seats",),
        ("text value 'cheap' in real column price",),
        ("text value 'yes' in boolean column paid",),
    ]


@pytest.mark.backends("sqlite")
def test_sqlite_text_that_is_not_utf8_quarantines_its_row_naming_the_column(
    project: Project,
) -> None:
    # SQLite keeps any bytes as text. Handed to DuckDB as they are, they invalidated the
    # store's engine, and no run of any table could even be recorded.
    project.database_sql(
        "CREATE TABLE account_history (account_id TEXT, start_timestamp TEXT, note TEXT)",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00', 'fine'), "
        "('a2', CAST(x'323032342d30332d3031ff' AS TEXT), 'x'), "
        "('a3', '2024-03-01 00:00:00', CAST(x'61ff62' AS TEXT)), "
        "(CAST(x'61ff62' AS TEXT), '2024-03-01 00:00:00', 'y')",
        # Text in an integer column: its reason quotes it, its bad bytes escaped.
        "CREATE TABLE seat_history (account_id TEXT, start_timestamp TEXT, seats INTEGER)",
        "INSERT INTO seat_history VALUES ('a1', '2024-03-01 00:00:00', 3), "
        "('a2', '2024-03-01 00:00:00', CAST(x'61ff' AS TEXT))",
    )
    configure_accounts(project)
    project.configure(
        "seat_history", kind="user_history", id_column="account_id", start_time="start_timestamp"
    )

    seats = project.sync("seat_history")
    record = project.sync("account_history")

    assert (seats.inserted, seats.quarantined) == (1, 1)
    assert (record.inserted, record.quarantined) == (1, 3)
    assert project.query("SELECT account_id, note FROM account_history") == [("a1", "fine")]
    assert project.query("SELECT reason, row_data FROM quarantine ORDER BY reason") == [
        (
            "text that is not UTF-8 in column account_id",
            '{"account_id":null,"start_timestamp":"2024-03-01 00:00:00","note":"y"}',
        ),
        (
            "text that is not UTF-8 in column note",
            '{"account_id":"a3","start_timestamp":"2024-03-01 00:00:00","note":null}',
        ),
        (
            "text that is not UTF-8 in column start_timestamp",
            '{"account_id":"a2","start_timestamp":null,"note":"x"}',
        ),
        (
            "text value 'a\\xFF' in integer column seats",
            '{"account_id":"a2","start_timestamp":"2024-03-01 00:00:00","seats":null}',
        ),
    ]


def test_text_that_is_not_utf8_is_made_null_and_an_earlier_reason_stands() -> None:
    # As a driver hands text over: the bytes, whatever they are.
    v = pa.array([b"ok", b"a\xffb", b"\xc3\xa9", None, b"\xe2\x82"], pa.binary())
    w = pa.array([b"x", b"y", b"\xff", b"z", b"w"], pa.binary())
    batch = pa.RecordBatch.from_arrays([v.view(pa.string()), w.view(pa.string())], names=["v", "w"])
    decoder = TextDecoder()

    checked = with_text_checked(batch, decoder)

    assert checked.column("v").to_pylist() == ["ok", None, "é", None, None]
    assert checked.column("w").to_pylist() == ["x", "y", None, "z", "w"]
    assert checked.column(UNREADABLE).to_pylist() == [
        None,
        "text that is not UTF-8 in column v",
        "text that is not UTF-8 in column w",
        None,
        "text that is not UTF-8 in column v",
    ]
    # A reason that quotes a value (SQLite's, of a value of another type) has its bytes
    # outside printable ASCII escaped when it is not UTF-8, and stands all the same.
    reasons = [b"NaN in numeric column p", b"text value 'a\xff\"' in integer column n"]
    given = batch.append_column(
        UNREADABLE, pa.array([*reasons, None, None, None], pa.binary()).view(pa.string())
    )
    assert with_text_checked(given, decoder).column(UNREADABLE).to_pylist()[:3] == [
        "NaN in numeric column p",
        "text value 'a\\xFF\"' in integer column n",
        "text that is not UTF-8 in column w",
    ]
    assert with_text_checked(given.slice(0, 1), decoder).column("v").to_pylist() == ["ok"]
    decoder.close()


@pytest.mark.backends("sqlite")
def test_sqlite_columns_declared_json_or_uuid_are_read_as_text(project: Project) -> None:
    # Their affinity is NUMERIC, yet they hold text; only NUMERIC or DECIMAL mean numbers.
    project.database_sql(
        "CREATE TABLE account_history (account_id UUID, start_timestamp TEXT, payload JSON, "
        "price DECIMAL(10, 2))",
        "INSERT INTO account_history VALUES ('0ba7b810-9dad-11d1-80b4-00c04fd430c8', "
        """'2024-03-01 00:00:00', '{"a": 1}', 19.5), ('7', '2024-03-01 00:00:00', 5, 20)""",
    )
    configure_accounts(project)
    project.sync("account_history")

    types = stored_types(project, "account_history")
    assert (types["payload"], types["price"]) == ("VARCHAR", "DOUBLE")
    assert project.query(
        "SELECT account_id, payload, price FROM account_history ORDER BY account_id"
    ) == [("0ba7b810-9dad-11d1-80b4-00c04fd430c8", '{"a": 1}', 19.5), ("7", "5", 20.0)]


@pytest.mark.backends("sqlite")
def test_sqlite_numeric_ids_are_the_text_sqlite_prints(project: Project) -> None:
    # A NUMERIC column keeps whole numbers as integers: as doubles, 123 would be "123.0"
    # and 2^53 and 2^53 + 1 one id.
    project.database_sql(
        "CREATE TABLE account_history (account_id NUMERIC, start_timestamp TEXT, plan TEXT)",
        "INSERT INTO account_history VALUES (123, '2024-01-01 00:00:00', 'free'), "
        "(9007199254740992, '2024-01-01 00:00:00', 'pro'), "
        "(9007199254740993, '2024-01-01 00:00:00', 'team')",
    )
    configure_accounts(project)
    record = project.sync("account_history")

    assert (record.inserted, record.conflicts) == (3, 0)
    assert project.query("SELECT account_id, plan FROM account_history ORDER BY plan") == [
        ("123", "free"),
        ("9007199254740992", "pro"),
        ("9007199254740993", "team"),
    ]


@pytest.mark.backends("sqlite")
def test_a_sqlite_numeric_cursor_past_2_to_the_53_loses_no_boundary_row(project: Project) -> None:
    # The cursor is read as a double, which rounds 1709251200123456900 up to
    # 1709251200123457024; SQLite compares the stored integer with it exactly, so a
    # watermark of the rounded value would leave out a row at the boundary.
    loaded = 1709251200123456900
    project.database_sql(
        "CREATE TABLE account_history (account_id TEXT, start_timestamp TEXT, plan TEXT, "
        "loaded NUMERIC)",
        f"INSERT INTO account_history VALUES ('a1', '2024-01-01 00:00:00', 'free', {loaded})",
    )
    configure_accounts(project, mode="append", cursor="loaded")
    project.sync("account_history")
    project.database_sql(
        f"INSERT INTO account_history VALUES ('a2', '2024-01-02 00:00:00', 'pro', {loaded})"
    )
    record = project.sync("account_history")

    assert (record.rows_read, record.inserted) == (2, 1)
    assert project.query("SELECT account_id FROM account_history ORDER BY 1") == [
        ("a1",),
        ("a2",),
    ]


@pytest.mark.backends("sqlite")
def test_a_sqlite_cursor_without_a_declared_type_is_refused(project: Project) -> None:
    # Read as text, its watermark would be the text '5', and SQLite orders every number
    # below any text: no later row would ever be read.
    project.database_sql(
        "CREATE TABLE loads (account_id TEXT, start_timestamp TEXT, plan TEXT, loaded)",
        "INSERT INTO loads VALUES ('a1', '2024-01-01 00:00:00', 'free', 5)",
        "CREATE VIEW account_history AS SELECT *, loaded + 0 AS batch FROM loads",
    )
    configure_accounts(project, mode="append", cursor="batch")

    with pytest.raises(ConfigError, match="cursor `batch` has no declared type"):
        project.sync("account_history")
    assert not project.store.exists()


@pytest.mark.backends("sqlite")
def test_sqlite_epochs_in_a_timestamp_column_are_read_by_time_unit(project: Project) -> None:
    # SQLite declares the column TIMESTAMP (read as text) but keeps epoch seconds in it.
    project.database_sql(
        "CREATE TABLE account_history (account_id TEXT, start_timestamp TIMESTAMP, plan TEXT)",
        "INSERT INTO account_history VALUES ('a', 1704067200, 'free'), ('a', '1706745600', "
        "'pro'), ('b', '2024-01-01 00:00:00', 'team')",
    )
    configure_accounts(project, time_unit="s")
    record = project.sync("account_history")

    # 1704067200 s is 2024-01-01 00:00 UTC, 1706745600 s is 2024-02-01; b's row is no epoch.
    assert (record.inserted, record.quarantined) == (2, 1)
    assert project.query(
        "SELECT plan, start_time, end_time FROM account_history ORDER BY start_time"
    ) == [
        ("free", utc("2024-01-01T00:00:00Z"), utc("2024-02-01T00:00:00Z")),
        ("pro", utc("2024-02-01T00:00:00Z"), None),
    ]
    assert project.query("SELECT reason FROM quarantine") == [("unreadable start time",)]


@pytest.mark.backends("postgres", "sqlite")
def test_names_that_need_quoting_are_read_as_names(project: Project) -> None:
    project.database_sql(
        'CREATE TABLE "Plan History" (company_id text, "select" text, "say ""hi""" integer, '
        "start_timestamp timestamptz)",
        """INSERT INTO "Plan History" VALUES ('c1', 'annual', 3, '2024-03-01 00:00:00+00')""",
    )
    project.configure(
        "plan_history",
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time="start_timestamp",
        **{"from": "Plan History"},
    )
    project.sync("plan_history")

    assert project.query('SELECT company_id, "select", "say ""hi""" FROM plan_history') == [
        ("c1", "annual", 3)
    ]


@pytest.mark.backends("postgres", "sqlite")
def test_a_from_that_looks_like_sql_is_only_a_missing_table(project: Project) -> None:
    project.database_sql("CREATE TABLE x (id integer)", "INSERT INTO x VALUES (1)")
    configure_accounts(project, **{"from": "plans; DROP TABLE x"})

    with pytest.raises(SourceError) as raised:
        project.sync("account_history")

    assert project.database_sql("SELECT count(*) FROM x") == [(1,)]
    assert "table `plans; DROP TABLE x` not found" in str(raised.value)
    # The message lists what the schema does hold, so the user can fix `from`.
    assert "tables are: x;" in str(raised.value)


@pytest.mark.backends("postgres", "sqlite")
def test_a_table_whose_name_closes_the_quote_is_read_as_that_table(project: Project) -> None:
    # If the quote inside the name were not doubled, reading it would run the DROP.
    name = 'plans"; DROP TABLE x; --'
    project.database_sql(
        "CREATE TABLE x (id integer)",
        "INSERT INTO x VALUES (1)",
        'CREATE TABLE "plans""; DROP TABLE x; --" (account_id text, start_timestamp timestamptz)',
        """INSERT INTO "plans""; DROP TABLE x; --" VALUES ('a1', '2024-03-01 00:00:00+00')""",
    )
    configure_accounts(project, **{"from": name})

    assert project.sync("account_history").inserted == 1
    assert project.database_sql("SELECT count(*) FROM x") == [(1,)]


def locked_source_config(project: Project, uri_key: str) -> None:
    """A store made by one good run, then a PostgreSQL source whose URI holds a password."""
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id VARCHAR, start_timestamp TIMESTAMPTZ)",
        "INSERT INTO company_plan_history VALUES ('c1', '2024-03-01 00:00:00+00')",
    )
    project.configure(
        "company_plan_history",
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time="start_timestamp",
    )
    project.sync("company_plan_history")
    uri_line = f'uri = "{SECRET_URI}"' if uri_key == "uri" else 'uri_env = "CRM_URI"'
    project.write_config(
        f'[sources.crm]\ntype = "postgres"\n{uri_line}\n'
        '[tables.accounts]\nsource = "crm"\nkind = "user_history"\n'
        'id_column = "account_id"\nstart_time = "start_timestamp"\n'
    )


@pytest.mark.slow
@pytest.mark.parametrize("uri_key", ["uri", "uri_env"])
def test_a_password_in_the_uri_is_never_printed_or_recorded(project: Project, uri_key: str) -> None:
    locked_source_config(project, uri_key)
    env = {"CRM_URI": SECRET_URI}

    for flags in ([], ["--verbose"]):
        sync = project.cli(*flags, "sync", "--all", check=False, env=env)
        assert sync.returncode == 1
        assert "cannot connect to postgres" in sync.stderr
        assert SECRET not in sync.stdout + sync.stderr
    runs = project.cli("runs", "--format", "json", env=env)
    assert [run["table_name"] for run in json.loads(runs.stdout)] == ["company_plan_history"]
    assert SECRET not in runs.stdout + runs.stderr


def test_an_unset_uri_env_stops_only_what_reads_that_source(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_URI", raising=False)
    locked_source_config(project, "uri_env")

    query = project.cli("query", "SELECT company_id FROM company_plan_history")
    other = project.cli("sync", "--table", "company_plan_history")
    crm = project.cli("sync", "--table", "accounts", check=False)

    assert "c1" in query.stdout
    assert other.returncode == 0
    assert crm.returncode == 1
    assert crm.stderr.strip() == (
        "pitsync: error: [sources.crm]: environment variable CRM_URI (from `uri_env`) is "
        "not set or empty; export it with the connection URI"
    )


def test_redact_hides_the_uri_and_its_password() -> None:
    uri = "postgresql://postgres:s3cret@db.internal:5432/crm"
    message = f"cannot reach {uri}; password s3cret rejected"
    assert redact(message, uri) == "cannot reach ***; password *** rejected"
    assert redact("host=db password=s3cret failed", "host=db password=s3cret") == "*** failed"


def test_redact_finds_passwords_a_url_parser_refuses_and_their_decoded_form() -> None:
    broken = "postgresql://postgres:S3CR3T@[::1/test"
    assert redact(f"bad address in {broken}", broken) == "bad address in ***"
    encoded = "postgresql://u:SECRET%40PW@db/crm"
    assert redact("login failed: SECRET@PW", encoded) == "login failed: ***"


@pytest.mark.parametrize(
    ("uri", "echoed"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/test?password=x8F&kQz2Lm=z7&dbname=test",
            'invalid URI query parameter: "kQz2Lm"',
        ),
        (
            "host=127.0.0.1 password=Tr0ub4dor correcthorse=battery9 dbname=test",
            'invalid connection option "correcthorse"',
        ),
    ],
)
def test_redact_takes_a_name_the_driver_does_not_know_after_a_password_as_part_of_it(
    uri: str, echoed: str
) -> None:
    # Only the driver's own parameters (dbname) end a password; the driver refuses any
    # other name, echoing it: here, a piece of the password.
    assert redact(echoed, uri) == echoed.rpartition('"')[0].rpartition('"')[0] + '"***"'


@pytest.mark.parametrize(
    ("uri", "echoed", "shown"),
    [
        # An unescaped / ends the authority: the driver reads the password's first piece
        # as the port, and says so.
        (
            "postgresql://postgres:Sekr1t/X7@127.0.0.1:5432/test",
            'invalid integer value "Sekr1t" for connection option "port"',
            'invalid integer value "***" for connection option "port"',
        ),
        # An unescaped & in a password parameter starts another parameter.
        (
            "postgresql://postgres@127.0.0.1:5432/test?password=Sekr1t&X7",
            'missing key/value separator "=" in URI query parameter: "X7"',
            'missing key/value separator "=" in URI query parameter: "***"',
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/test?password=Sekr1t;X7%zz",
            'invalid percent-encoded token: "Sekr1t;X7%zz"; also "X7%zz"',
            'invalid percent-encoded token: "***"; also "***%***"',
        ),
    ],
)
def test_redact_hides_each_piece_of_a_password_the_driver_cut_apart(
    uri: str, echoed: str, shown: str
) -> None:
    assert redact(echoed, uri) == shown


def test_redact_hides_a_password_up_to_the_next_parameter_and_no_further() -> None:
    # Unquoted, a password ends at a blank: the driver echoes the word after it.
    spaced = "host=127.0.0.1 port=5432 password=Hunter2 Secret dbname=test"
    assert redact('missing "=" after "Secret"', spaced) == 'missing "=" after "***"'
    quoted = "host=127.0.0.1 password='Hunter2 Secret' dbname=test"
    assert redact("password Hunter2 Secret rejected", quoted) == "password *** rejected"
    # The database named after the password is no secret.
    uri = "postgresql://postgres@127.0.0.1:5432/?password=Sekr1t&dbname=nosuchdb"
    assert redact('database "nosuchdb" does not exist', uri) == 'database "nosuchdb" does not exist'


@pytest.mark.backends("postgres")
def test_a_password_cut_apart_by_the_driver_is_not_printed(project: Project) -> None:
    project.write_config(
        '[sources.crm]\ntype = "postgres"\n'
        'uri = "postgresql://postgres:Sekr1t/X7@127.0.0.1:5432/test"\n'
        '[tables.accounts]\nsource = "crm"\nkind = "user_history"\n'
        'id_column = "account_id"\nstart_time = "start_timestamp"\n'
    )

    sync = project.cli("--verbose", "sync", "--all", check=False)

    assert sync.returncode == 1
    assert "cannot connect to postgres" in sync.stderr
    assert "Sekr1t" not in sync.stdout + sync.stderr
    assert "X7" not in sync.stdout + sync.stderr


@pytest.mark.parametrize(
    ("uri", "what"),
    [
        ("mysql://root:Sekr1tX7@127.0.0.1/x", " (it is a mysql:// address)"),
        ("POSTGRESQL://root:Sekr1tX7@127.0.0.1/x", " (it is a POSTGRESQL:// address)"),
        ("127.0.0.1:5432/test?user=postgres&password=Sekr1tX7", ""),
        ("Sekr1tX7@127.0.0.1", ""),
    ],
)
def test_a_connection_string_that_is_no_postgres_one_is_refused_by_what_it_is(
    project: Project, uri: str, what: str
) -> None:
    # The driver would take these as key=value pairs and name the first `key`: a piece
    # of the string, perhaps of the password.
    project.write_config(
        f'[sources.crm]\ntype = "postgres"\nuri = "{uri}"\n'
        '[tables.accounts]\nsource = "crm"\nkind = "user_history"\n'
        'id_column = "account_id"\nstart_time = "start_timestamp"\n'
    )

    sync = project.cli("--verbose", "sync", "--all", check=False)

    assert sync.returncode == 1
    assert sync.stderr.strip().splitlines()[-1] == (
        "pitsync: error: source `crm`: the connection string is neither a postgresql:// "
        f"address nor libpq's key=value pairs{what}; write it as "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or as host=HOST port=PORT "
        "dbname=DATABASE user=USER); check `uri` (or `uri_env`) in [sources.crm]"
    )
    assert "Sekr1t" not in sync.stdout + sync.stderr


def test_a_uri_that_is_not_text_is_refused_without_showing_it(tmp_path) -> None:
    path = tmp_path / "pitsync.toml"
    path.write_text(
        '[sources.crm]\ntype = "postgres"\nuri = ["postgresql://u:S3CR3T@db/crm"]\n',
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as refused:
        load_config(str(path))
    assert "S3CR3T" not in str(refused.value) and "got an array" in str(refused.value)


@pytest.mark.backends("postgres")
def test_a_numeric_with_a_negative_scale_is_read_as_a_double(project: Project) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id text, start_timestamp timestamptz, "
        "budget numeric(5, -2))",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00+00', 1234567)",
    )
    configure_accounts(project)
    project.sync("account_history")

    # numeric(5, -2) rounds to hundreds: 1234567 is kept as 1234600.
    assert stored_types(project, "account_history")["budget"] == "DOUBLE"
    assert project.query("SELECT budget FROM account_history") == [(1234600.0,)]


@pytest.mark.backends("sqlite")
def test_sqlite_numbers_in_text_columns_keep_every_digit(project: Project) -> None:
    project.database_sql(
        "CREATE TABLE account_history (account_id TEXT, start_timestamp TEXT, note, seen DATETIME)",
        "INSERT INTO account_history VALUES ('a1', '2024-03-01 00:00:00', 1234567.89, 2460000.5)",
    )
    configure_accounts(project)
    project.sync("account_history")

    assert project.query("SELECT note, seen FROM account_history") == [("1234567.89", "2460000.5")]


CLOUD_URIS = {"snowflake": "snowflake://reader@account/analytics", "bigquery": "bigquery://p"}


@pytest.mark.parametrize("source_type", ["snowflake", "bigquery"])
def test_a_missing_cloud_driver_says_which_extra_to_install(
    project: Project, source_type: str
) -> None:
    module = DRIVERS[source_type].module.split(".")[0]
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed, so the missing-driver message cannot show")
    project.write_config(
        f'[sources.cloud]\ntype = "{source_type}"\nuri = "{CLOUD_URIS[source_type]}"\n'
        '[tables.accounts]\nsource = "cloud"\nkind = "user_history"\n'
        'id_column = "account_id"\nstart_time = "start_timestamp"\n'
    )

    with pytest.raises(
        SourceError, match=rf"{source_type} extra .*pip install '\.\[{source_type}\]'"
    ):
        project.sync("accounts")
    assert not project.store.exists()


@pytest.mark.parametrize("source_type", ["snowflake", "bigquery"])
def test_the_extra_the_install_hint_names_is_declared(source_type: str) -> None:
    # The hint is only useful if `pip install '.[EXTRA]'` brings the driver.
    extras = tomllib.loads(PYPROJECT.read_text())["project"].get("optional-dependencies", {})
    wanted = f"adbc-driver-{source_type}"
    assert any(req.startswith(wanted) for req in extras.get(source_type, [])), (
        f"pyproject.toml declares no extra `{source_type}` with {wanted}"
    )


@pytest.mark.backends("postgres", "duckdb")
def test_an_infinite_start_time_is_quarantined(project: Project, backend: str) -> None:
    """PostgreSQL's infinity reaches DuckDB as a time 290,000 years BC; neither it nor
    DuckDB's own infinity is a moment a row can start at."""
    statements = [
        "CREATE TABLE plans (company_id TEXT, start_timestamp TIMESTAMPTZ, plan TEXT)",
        "INSERT INTO plans VALUES ('c1', '2024-01-01 00:00:00+00', 'free'), "
        "('c1', 'infinity', 'never'), ('c1', '-infinity', 'always')",
    ]
    if backend == "postgres":
        project.database_sql(*statements)
    else:
        project.source_sql(*statements)
    project.configure(
        "plans",
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time="start_timestamp",
    )
    record = project.sync("plans")
    assert (record.inserted, record.quarantined) == (1, 2)
    assert project.query("SELECT plan, start_time::VARCHAR, end_time FROM plans") == [
        ("free", "2024-01-01 00:00:00+00", None)
    ]
    reasons = project.query("SELECT DISTINCT reason FROM quarantine")
    assert reasons == [("infinite or out-of-range start time",)]


@pytest.mark.backends("postgres")
def test_infinite_times_are_kept_as_infinities_and_ones_past_reach_are_quarantined(
    project: Project,
) -> None:
    """The driver turns `infinity` into a time 290,000 years BC: stored as a property it
    would be silently wrong, and as a tie-breaker it would pick the other row."""
    project.database_sql(
        "CREATE TABLE subscriptions (user_id integer, start_timestamp timestamptz, "
        "expires_at timestamptz, valid_to date, notices timestamp[], updated_at timestamptz, "
        "plan text)",
        "INSERT INTO subscriptions VALUES "
        "(1, '2024-01-01 00:00+00', '2025-01-01 00:00+00', '2025-01-01', "
        "'{2024-06-01 00:00}', '2024-01-02 00:00+00', 'pro'), "
        "(2, '2024-01-01 00:00+00', 'infinity', NULL, NULL, '2024-01-02 00:00+00', 'a'), "
        "(3, '2024-01-01 00:00+00', NULL, '-infinity', NULL, '2024-01-02 00:00+00', 'b'), "
        "(4, '2024-01-01 00:00+00', NULL, NULL, '{2024-01-01, infinity}', NULL, 'c'), "
        "(5, '2024-01-01 00:00+00', '294250-01-01 00:00+00', NULL, NULL, NULL, 'e'), "
        "(7, '2024-01-01 00:00+00', NULL, NULL, '{2024-01-01, 294270-01-01 00:00}', NULL, 'f'), "
        # A tie the infinite updated_at wins, as it does in PostgreSQL.
        "(6, '2024-01-01 00:00+00', NULL, NULL, NULL, 'infinity', 'winner'), "
        "(6, '2024-01-01 00:00+00', NULL, NULL, NULL, '2024-05-01 00:00+00', 'loser')",
    )
    project.configure(
        "subscriptions",
        kind="user_history",
        id_column="user_id",
        start_time="start_timestamp",
        tie_breaker="updated_at",
    )
    record = project.sync("subscriptions")

    # Four intervals (6's loser is kept only as a hidden event), three rows quarantined.
    assert (record.inserted, record.quarantined, record.conflicts) == (4, 3, 1)
    assert project.query(
        "SELECT user_id, expires_at::VARCHAR, valid_to::VARCHAR, notices, plan "
        "FROM subscriptions ORDER BY user_id"
    ) == [
        ("1", "2025-01-01 00:00:00+00", "2025-01-01", [dt.datetime(2024, 6, 1)], "pro"),
        ("2", "infinity", None, None, "a"),
        ("3", None, "-infinity", None, "b"),
        ("6", None, None, None, "winner"),
    ]
    assert project.query("SELECT reason FROM quarantine ORDER BY row_data->>'user_id'") == [
        ("infinite or out-of-range time in array column notices",),
        ("out-of-range time in column expires_at",),
        ("infinite or out-of-range time in array column notices",),
    ]


def test_wrapped_times_are_unwrapped_or_marked_and_an_earlier_reason_stands() -> None:
    # As the driver hands them over: PostgreSQL's timestamptz infinity and a time in year
    # 294,250, both wrapped around to before 4713 BC; its date -infinity; 2024-01-01.
    wrapped_infinity, wrapped_late = -9_222_425_352_054_775_809, -9_223_278_134_509_551_616
    instants = pa.array([wrapped_infinity, 1_704_067_200_000_000, wrapped_late], pa.int64())
    days = pa.array([19_723, -2_147_472_691, None], pa.int32())
    batch = pa.RecordBatch.from_arrays(
        [
            instants.cast(pa.timestamp("us", tz="UTC")),
            days.cast(pa.date32()),
            pa.array([None, None, "NaN in numeric column p"]),
        ],
        names=["t", "d", UNREADABLE],
    )

    unwrapped = with_times_unwrapped(batch, ["t", "d"])

    # DuckDB's infinities are the greatest integers of each width, and their negations.
    assert unwrapped.column("t").view(pa.int64()).to_pylist() == [
        2**63 - 1,
        1_704_067_200_000_000,
        wrapped_late,
    ]
    assert unwrapped.column("d").view(pa.int32()).to_pylist() == [19_723, -(2**31 - 1), None]
    assert unwrapped.column(UNREADABLE).to_pylist() == [None, None, "NaN in numeric column p"]
    only_late = with_times_unwrapped(batch.drop_columns([UNREADABLE]), ["t", "d"])
    assert only_late.column(UNREADABLE).to_pylist() == [
        None,
        None,
        "out-of-range time in column t",
    ]


@pytest.mark.backends("postgres")
def test_numeric_and_char_ids_are_the_text_postgres_prints(project: Project) -> None:
    """An unconstrained numeric would be read as a double: 123 as "123.0", and the ids
    2^53 and 2^53 + 1 as one entity. A char(n) would keep the padding PostgreSQL itself
    ignores: a blank id would not be missing, and 'gold' and 'gold  ' would be two tiers,
    the greater one winning a tie."""
    project.database_sql(
        "CREATE TABLE company_plan_history (company_id numeric, owner char(5), "
        "start_timestamp timestamptz, plan text)",
        "INSERT INTO company_plan_history VALUES "
        "(123, 'ab', '2024-01-01 00:00+00', 'free'), "
        "(9007199254740993, 'ab', '2024-01-01 00:00+00', 'pro'), "
        "(9007199254740992, 'ab', '2024-02-01 00:00+00', 'team'), "
        "(1.50, 'ab', '2024-01-01 00:00+00', 'free')",
        "CREATE TABLE owner_history (owner char(5), start_timestamp timestamptz, "
        "tier char(6), badges char(3)[])",
        "INSERT INTO owner_history VALUES "
        "('ab', '2024-01-01 00:00+00', 'gold', ARRAY['a', 'bc']), "
        "('ab', '2024-01-01 00:00+00', 'gold  ', ARRAY['a  ', 'bc ']), "
        "('', '2024-01-01 00:00+00', 'none', NULL)",
    )
    for table, key in (("company_plan_history", "company_id"), ("owner_history", "owner")):
        project.configure(
            table,
            kind="group_history",
            id_column=key,
            group_key=key,
            start_time="start_timestamp",
        )
        project.sync(table)

    assert project.query(
        "SELECT company_id, plan, end_time IS NULL FROM company_plan_history ORDER BY ALL"
    ) == [
        ("1.50", "free", True),
        ("123", "free", True),
        ("9007199254740992", "team", True),
        ("9007199254740993", "pro", True),
    ]
    assert project.query("SELECT owner, tier, badges FROM owner_history") == [
        ("ab", "gold", ["a", "bc"])
    ]
    assert project.query("SELECT count(*) FROM _pitsync.superseded") == [(0,)]
    assert project.query("SELECT reason FROM quarantine") == [("missing id",)]


@pytest.mark.backends("sqlite")
def test_a_sqlite_file_another_program_holds_locked_is_said_to_be_locked(
    project: Project,
) -> None:
    project.source_sql(
        "CREATE TABLE account_history (account_id INTEGER, start_timestamp TIMESTAMPTZ)"
    )
    configure_accounts(project)
    # SQLite's locks are the system's file locks, which hold between processes only.
    holding = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", holding, str(project.sqlite_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "locked\n"
        with pytest.raises(SourceError) as raised:
            project.sync("account_history")
    finally:
        writer.communicate("", timeout=30)

    assert str(raised.value) == (
        f"source `warehouse`: the SQLite file {project.sqlite_file} is locked by another "
        "program writing it (database is locked); run again when it is done"
    )
    project.sync("account_history")  # once it is done


@pytest.mark.backends("sqlite")
def test_a_sqlite_view_that_cannot_be_read_gives_sqlites_reason_not_a_missing_table(
    project: Project,
) -> None:
    project.source_sql(
        "CREATE TABLE base (account_id INTEGER, start_timestamp TIMESTAMPTZ)",
        "CREATE TABLE other (x INTEGER)",
    )
    project.database_sql("CREATE VIEW account_history AS SELECT * FROM base", "DROP TABLE base")
    configure_accounts(project)

    with pytest.raises(SourceError) as raised:
        project.sync("account_history")

    message = str(raised.value)
    assert message.startswith(
        "source `warehouse`: cannot read the columns of table `account_history`: "
    )
    assert "no such table: main.base" in message and "not found" not in message


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda path: path.write_text("hello"),
            "is not an SQLite database (file is not a database)",
        ),
        (lambda path: path.mkdir(), "is a folder"),
        (lambda path: None, "not found"),
    ],
)
def test_a_sqlite_path_that_is_no_database_says_so_once(
    project: Project, make: Callable[[Path], object], said: str
) -> None:
    configure_accounts(project)
    project.sqlite_file.unlink(missing_ok=True)
    make(project.sqlite_file)

    with pytest.raises(SourceError) as raised:
        project.sync("account_history")
    message = str(raised.value)
    assert said in message and "check `path`" in message
    assert "uri" not in message and message.count("source `warehouse`") == 1


@pytest.mark.parametrize("name", ["a%41.db", "data#2.db", "x?y.db"])
def test_a_sqlite_path_is_the_file_it_names_opened_read_only(tmp_path: Path, name: str) -> None:
    # In a URI, SQLite reads `%41` as `A`, and a `?` or `#` ends the path there: such a
    # path read another file (`aA.db`), or created one (`data`, `x`) and found no table.
    project = Project(root=tmp_path, backend="sqlite")
    for file_name, plan in [(name, "named"), ("aA.db", "other")]:
        with sqlite3.connect(tmp_path / file_name) as con:
            con.execute("CREATE TABLE h (id TEXT, st TEXT, plan TEXT)")
            con.execute(f"INSERT INTO h VALUES ('u1', '2024-01-01 00:00:00', '{plan}')")
        con.close()
    before = sorted(path.name for path in tmp_path.iterdir())
    project.configure("h", source="files", kind="user_history", id_column="id", start_time="st")
    project.write_config(f'[sources.files]\ntype = "sqlite"\npath = {toml_value(name)}\n')

    assert project.sync("h").inserted == 1
    assert project.query("SELECT id, plan FROM h") == [("u1", "named")]
    created = sorted(path.name for path in tmp_path.iterdir() if path.name not in before)
    assert created == ["pitsync.toml", "store.duckdb"]


@pytest.mark.backends("postgres")
def test_a_failed_read_leaves_the_next_table_of_the_source_readable(project: Project) -> None:
    # The view fails as PostgreSQL computes its rows; the failed read must not leave the
    # shared connection in an aborted transaction, where the next table looks missing.
    project.database_sql(
        "CREATE TABLE base (id text, st timestamptz, n integer)",
        "INSERT INTO base VALUES ('a', '2024-01-01 00:00:00+00', 1), "
        "('b', '2024-01-01 00:00:00+00', 0)",
        "CREATE VIEW broken AS SELECT id, st, 1 / n AS q FROM base",
        "CREATE TABLE good (id text, st timestamptz, plan text)",
        "INSERT INTO good VALUES ('a', '2024-01-01 00:00:00+00', 'pro')",
    )
    project.configure("broken", kind="user_history", id_column="id", start_time="st")
    project.configure(
        "good", kind="group_history", id_column="id", group_key="company_id", start_time="st"
    )

    result = project.cli("sync", "--all", check=False)

    assert result.returncode == 1
    assert "reading table `broken` failed" in result.stderr
    assert "division by zero" in result.stderr
    assert "not found" not in result.stderr
    assert project.query("SELECT id, plan FROM good") == [("a", "pro")]


@pytest.mark.backends("postgres")
def test_postgres_composites_are_read_as_the_json_postgres_writes(project: Project) -> None:
    # Read as structs, a composite after a NULL one came back NULL, and an infinity
    # inside one came back as a time some 290,000 years BC.
    project.database_sql(
        "CREATE TYPE validity AS (valid_until timestamptz, renew_on date)",
        "CREATE TYPE contract AS (terms validity, seats integer[])",
        "CREATE TABLE plans (id text, st timestamptz, v validity, c contract, vs validity[])",
        "INSERT INTO plans VALUES "
        "('u1', '2024-01-01 00:00:00+00', NULL, NULL, NULL), "
        "('u2', '2024-01-01 00:00:00+00', ROW('2025-01-01 05:30:00+05:30', '2024-05-01'), "
        "ROW(ROW('infinity', NULL), ARRAY[1, 2]), "
        "ARRAY[ROW('294276-12-31 23:59:59+00', 'infinity')::validity, NULL]), "
        "('u3', '2024-01-01 00:00:00+00', ROW(NULL, NULL), NULL, ARRAY[]::validity[])",
    )
    # A session in India: JSON times are still written in UTC.
    assert project.postgres is not None
    in_india = "options=-c%20TimeZone%3DAsia%2FKolkata"
    project.postgres = replace(project.postgres, uri=f"{project.postgres.uri}?{in_india}")
    project.configure("plans", kind="user_history", id_column="id", start_time="st")

    record = project.sync("plans")

    assert (record.inserted, record.quarantined) == (3, 0)
    assert stored_types(project, "plans")["v"] == "JSON"
    stored = project.query("SELECT id, v, c, vs FROM plans ORDER BY id")
    values = [tuple(json.loads(value) if value else value for value in row[1:]) for row in stored]
    assert values == [
        (None, None, None),
        (
            {"valid_until": "2025-01-01T00:00:00+00:00", "renew_on": "2024-05-01"},
            {"terms": {"valid_until": "infinity", "renew_on": None}, "seats": [1, 2]},
            [{"valid_until": "294276-12-31T23:59:59+00:00", "renew_on": "infinity"}, None],
        ),
        ({"valid_until": None, "renew_on": None}, None, []),
    ]


@pytest.mark.backends("postgres")
def test_a_composite_the_driver_cannot_describe_is_read_as_json_too(project: Project) -> None:
    # The driver cannot describe a composite holding a range; PostgreSQL's catalog can.
    project.database_sql(
        "CREATE TYPE span AS (days int4range)",
        "CREATE TABLE plans (id text, st timestamptz, s span, ss span[], r int4range)",
        "INSERT INTO plans VALUES ('u1', '2024-01-01 00:00:00+00', ROW('[1,5)'), "
        "ARRAY[ROW('[2,3)')::span], NULL)",
    )
    project.configure("plans", kind="user_history", id_column="id", start_time="st")

    with pytest.raises(ConfigError, match="column `r` of table `plans` has type int4range"):
        project.sync("plans")
    project.database_sql("ALTER TABLE plans DROP COLUMN r")
    project.sync("plans")

    [(single, listed)] = project.query("SELECT s, ss FROM plans")
    assert (json.loads(single), json.loads(listed)) == ({"days": "[1,5)"}, [{"days": "[2,3)"}])


@pytest.mark.backends("postgres", "sqlite")
def test_a_from_in_another_case_finds_the_table_as_the_database_spells_it(
    project: Project,
) -> None:
    # Names compare without case, as in the store: `PLANS` finds `plans`.
    project.database_sql(
        "CREATE TABLE plans (user_id text, valid_from text, plan text)",
        "INSERT INTO plans VALUES ('u1', '2024-01-01', 'pro')",
    )
    project.configure(
        "accounts",
        kind="user_history",
        id_column="user_id",
        start_time="valid_from",
        **{"from": "PLANS"},
    )

    assert project.sync("accounts").inserted == 1
    assert project.query("SELECT user_id, plan FROM accounts") == [("u1", "pro")]


@pytest.mark.backends("postgres")  # SQLite's names are one whatever their case
def test_a_from_matching_two_spellings_says_which_and_how_to_choose(project: Project) -> None:
    project.database_sql(
        "CREATE TABLE plans (user_id text, valid_from text, plan text)",
        'CREATE TABLE "Plans" (user_id text, valid_from text, plan text)',
    )
    project.configure(
        "accounts",
        kind="user_history",
        id_column="user_id",
        start_time="valid_from",
        **{"from": "PLANS"},
    )

    with pytest.raises(
        SourceError,
        match="table `PLANS` is ambiguous: .* has `Plans` and "
        "`plans`, which differ only in case; set `from` to the one to read",
    ):
        project.sync("accounts")


@pytest.mark.backends("postgres")
def test_without_a_schema_only_the_search_path_is_searched_and_listed(
    project: Project, postgres_uri: str
) -> None:
    # A bare name is read through the search path. Tables of other schemas are neither
    # a second spelling of it (`Plans` made `PLANS` ambiguous) nor tables to list.
    assert project.postgres is not None
    project.database_sql(
        "CREATE TABLE plans (user_id text, valid_from text, plan text)",
        "INSERT INTO plans VALUES ('u1', '2024-01-01', 'pro')",
    )
    elsewhere = PostgresSchema.create(postgres_uri)
    try:
        elsewhere.execute('CREATE TABLE "Plans" (q int)', "CREATE TABLE hidden (q int)")
        search_path = f"options=-csearch_path%3D{project.postgres.name}"
        uri = postgres_uri + ("&" if "?" in postgres_uri else "?") + search_path
        for name, table in [("accounts", "PLANS"), ("ghosts", "hidden")]:
            project.configure(
                name,
                source="bare",
                kind="user_history",
                id_column="user_id",
                start_time="valid_from",
                **{"from": table},
            )
        project.write_config(f'[sources.bare]\ntype = "postgres"\nuri = {toml_value(uri)}\n')

        assert project.sync("accounts").inserted == 1
        with pytest.raises(SourceError) as raised:
            project.sync("ghosts")
    finally:
        elsewhere.drop()
    assert project.query("SELECT user_id, plan FROM accounts") == [("u1", "pro")]
    assert (
        f"table `hidden` not found in the schemas of the search path ({project.postgres.name}; "
        "set `schema` for another); tables are: plans;"
    ) in str(raised.value)


@pytest.mark.parametrize(
    ("uri", "connected"),
    [
        ("postgresql://u@db/crm", "postgresql://u@db/crm?connect_timeout=10"),
        (
            "postgresql://u@db/crm?sslmode=require",
            "postgresql://u@db/crm?sslmode=require&connect_timeout=10",
        ),
        ("postgresql://u@db/crm?", "postgresql://u@db/crm?connect_timeout=10"),
        ("host=db dbname=crm", "host=db dbname=crm connect_timeout=10"),
        ("postgresql://u@db/crm?CONNECT_TIMEOUT=60", "postgresql://u@db/crm?CONNECT_TIMEOUT=60"),
        ("host=db connect_timeout = 3", "host=db connect_timeout = 3"),
    ],
)
def test_a_postgres_uri_gets_a_connect_timeout_unless_it_sets_one(uri: str, connected: str) -> None:
    assert with_connect_timeout(uri) == connected


@pytest.mark.backends("duckdb")
def test_a_server_that_never_answers_fails_the_run_within_the_timeout(project: Project) -> None:
    # It takes the connection and says nothing: without a timeout the driver would wait
    # for good, and neither Ctrl-C nor the scheduled job's SIGTERM would end the wait.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        project.write_config(
            '[sources.crm]\ntype = "postgres"\n'
            f'uri = "postgresql://postgres@127.0.0.1:{port}/test"\n'
            '[tables.accounts]\nsource = "crm"\nkind = "user_history"\n'
            'id_column = "account_id"\nstart_time = "start_timestamp"\n'
        )
        command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
        # Without a timeout the run would wait past this one, which fails the test.
        sync = subprocess.run(
            [*command, "sync", "--all"], capture_output=True, text=True, timeout=60
        )

    assert sync.returncode == 1
    assert "cannot connect to postgres" in sync.stderr
