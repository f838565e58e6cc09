"""The real `pitsync` command, run as a subprocess on a temporary warehouse.

Every scenario seeds a warehouse file, runs the commands a user would type, and compares
what they print with values worked out by hand from the seeded rows.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.console import Console

from pitsync.arguments import build_parser
from pitsync.cli import HANDLERS
from pitsync.commands import reading, syncing
from pitsync.config import TableConfig
from pitsync.connectors.runs import RunRecord
from pitsync.connectors.sync import as_run_error
from pitsync.queries.output import cell
from pitsync.store import SCHEMA_DDL, layout_columns
from tests.conftest import Project, company_history, configure_company_history, login_events

# c1 is free (1 seat) from 1 Jan, then pro with seats undefined from 1 Feb; c2 is team
# (5 seats) from 15 Jan noon. Rows are out of order so "oldest first" means something.
ROWS = [
    ("c1", "pro", None, "2024-02-01 00:00:00+00", None),
    ("c2", "team", 5, "2024-01-15 12:00:00+00", None),
    ("c1", "free", 1, "2024-01-01 00:00:00+00", None),
]
INTERVALS = [
    {
        "company_id": "c1",
        "plan": "free",
        "seats": 1,
        "start_time": "2024-01-01T00:00:00+00:00",
        "end_time": "2024-02-01T00:00:00+00:00",
    },
    {
        "company_id": "c1",
        "plan": "pro",
        "seats": None,
        "start_time": "2024-02-01T00:00:00+00:00",
        "end_time": None,
    },
    {
        "company_id": "c2",
        "plan": "team",
        "seats": 5,
        "start_time": "2024-01-15T12:00:00+00:00",
        "end_time": None,
    },
]
INTERVALS_SQL = (
    "SELECT company_id, plan, seats, start_time, end_time FROM {table} "
    "ORDER BY company_id, start_time"
)
PROFILE_ARGS = ("profile", "c1", "--group-key", "company_id", "--format", "json")


def cli_json(project: Project, *args: str) -> Any:
    """The command's standard output, read as JSON."""
    return json.loads(project.cli(*args).stdout)


def query_json(project: Project, sql: str) -> list[dict[str, Any]]:
    return cli_json(project, "query", sql, "--format", "json")


def seeded(project: Project) -> Project:
    """The three history rows and two logins, configured but not yet synced."""
    company_history(project, ROWS)
    login_events(
        project, [("e1", "c1", "2024-01-10 00:00:00+00"), ("e2", "c1", "2024-02-01 00:00:00+00")]
    )
    return project


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """One store synced with `sync --all`, shared by the tests that only read it."""
    project = seeded(Project(root=tmp_path_factory.mktemp("synced")))
    project.cli("sync", "--all")
    return project


def assert_user_error(
    result: subprocess.CompletedProcess[str], *fragments: str, status: int = 1
) -> None:
    """Exit `status`, a `pitsync: error:` message holding the fragments, and no traceback."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert "pitsync: error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# --- sync and runs -------------------------------------------------------------------------


def test_sync_one_table_stores_its_intervals_and_nothing_else(project: Project) -> None:
    seeded(project)

    result = project.cli("sync", "--table", "company_plan_history")

    assert result.returncode == 0
    assert query_json(project, INTERVALS_SQL.format(table="company_plan_history")) == INTERVALS
    # The events table was configured but not named, so no event is stored.
    assert query_json(project, "SELECT count(*) AS n FROM events") == [{"n": 0}]


def test_sync_all_records_one_run_per_table_with_iso_times(synced: Project) -> None:
    runs = cli_json(synced, "runs", "--format", "json")

    # Three history rows give three intervals; two logins give two events.
    assert [(r["table_name"], r["mode"], r["status"]) for r in runs] == [
        ("company_plan_history", "full", "succeeded"),
        ("product_events", "full", "succeeded"),
    ]
    assert [(r["rows_read"], r["inserted"], r["quarantined"], r["conflicts"]) for r in runs] == [
        (3, 3, 0, 0),
        (2, 2, 0, 0),
    ]
    assert [r["error"] for r in runs] == [None, None]
    for run in runs:
        started = dt.datetime.fromisoformat(run["started_at"])
        finished = dt.datetime.fromisoformat(run["finished_at"])
        assert started.utcoffset() == dt.timedelta(0) and finished.utcoffset() == dt.timedelta(0)
        assert started <= finished


def test_bad_row_is_quarantined_and_counted_without_strict(project: Project) -> None:
    company_history(project, [*ROWS, (None, "ghost", 9, "2024-03-01 00:00:00+00", None)])

    project.cli("sync", "--table", "company_plan_history")

    # Four rows read, the one without an id set aside, the other three stored.
    (run,) = cli_json(project, "runs", "--format", "json")
    assert (run["rows_read"], run["inserted"], run["quarantined"]) == (4, 3, 1)
    assert query_json(project, "SELECT table_name, reason FROM quarantine") == [
        {"table_name": "company_plan_history", "reason": "missing id"}
    ]


def test_a_store_whose_folder_cannot_be_made_is_a_user_error(project: Project) -> None:
    # The store's folder would be `afile`, which is a file.
    company_history(project, ROWS)
    (project.root / "afile").write_text("not a folder", encoding="utf-8")
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        config.replace('path = "store.duckdb"', 'path = "afile/store.duckdb"'), encoding="utf-8"
    )

    result = project.cli("sync", "--all", check=False)

    folder = project.root / "afile"
    assert_user_error(
        result,
        f"cannot make the folder {folder} for the store {folder / 'store.duckdb'}: "
        f"{folder} is a file, not a folder; set [store] path to a file in a folder pitsync "
        "may write in, or make that folder first",
    )


def test_strict_run_with_a_null_id_fails_applies_nothing_and_is_recorded(
    project: Project,
) -> None:
    company_history(project, ROWS)
    project.cli("sync", "--table", "company_plan_history")
    sql = INTERVALS_SQL.format(table="company_plan_history")
    before = query_json(project, sql)

    # The source changes a good row and gains a row without an id.
    project.source_sql(
        "UPDATE company_plan_history SET plan = 'enterprise' WHERE company_id = 'c2'",
        "INSERT INTO company_plan_history VALUES (NULL, 'ghost', 9, '2024-03-01', NULL)",
    )
    result = project.cli("sync", "--table", "company_plan_history", "--strict", check=False)

    assert_user_error(result, "--strict")
    assert before == INTERVALS
    assert query_json(project, sql) == before
    assert query_json(project, "SELECT count(*) AS n FROM quarantine") == [{"n": 0}]
    last = cli_json(project, "runs", "--format", "json")[-1]
    assert (last["table_name"], last["status"]) == ("company_plan_history", "failed")
    assert "bad row" in last["error"] and "--strict" in last["error"]
    assert last["finished_at"] is not None
    # 4 rows were read; none was stored or quarantined, since nothing was applied.
    assert (last["rows_read"], last["inserted"], last["quarantined"]) == (4, 0, 0)
    assert "sync report" not in result.stdout


# --- query ---------------------------------------------------------------------------------


def test_runs_of_one_table_are_found_by_its_name_in_any_case(synced: Project) -> None:
    # Table names are compared without case everywhere else in the configuration.
    runs = cli_json(synced, "runs", "--table", "Company_Plan_HISTORY", "--format", "json")

    assert [(r["table_name"], r["rows_read"]) for r in runs] == [("company_plan_history", 3)]


@pytest.mark.parametrize("command", ["profile", "history", "feed"])
def test_an_empty_id_is_a_usage_error(synced: Project, command: str) -> None:
    # No user or group has an empty id; most often it is a variable left unset.
    result = synced.cli(command, "", check=False)

    assert result.returncode == 2 and "the id is empty" in result.stderr


def test_runs_of_a_table_never_run_are_said_to_be_none(synced: Project) -> None:
    shown = synced.cli("runs", "--table", "nosuch", env={"COLUMNS": "40"})

    assert shown.stdout == "no runs of table nosuch are recorded\n"
    assert cli_json(synced, "runs", "--table", "nosuch", "--format", "json") == []


def test_query_json_is_an_array_of_objects_with_iso_instants(synced: Project) -> None:

    assert query_json(synced, INTERVALS_SQL.format(table="company_plan_history")) == INTERVALS


def test_query_json_converts_an_offset_literal_to_utc(synced: Project) -> None:

    # 1 March midnight at +05:00 is 29 February 19:00 UTC (2024 is a leap year).
    rows = query_json(synced, "SELECT TIMESTAMPTZ '2024-03-01 00:00:00+05' AS moment")

    assert rows == [{"moment": "2024-02-29T19:00:00+00:00"}]


def test_query_as_of_a_literal_moment_picks_the_interval_holding_it(synced: Project) -> None:

    # At exactly 1 Feb the pro row has started (start inclusive) and free has ended.
    rows = query_json(
        synced,
        "SELECT company_id, plan FROM company_plan_history "
        "FOR SYSTEM_TIME AS OF TIMESTAMP '2024-02-01 00:00:00+00' ORDER BY company_id",
    )

    assert rows == [{"company_id": "c1", "plan": "pro"}, {"company_id": "c2", "plan": "team"}]


def test_query_as_of_join_gives_each_event_the_plan_at_its_moment(synced: Project) -> None:

    rows = query_json(
        synced,
        "SELECT e.insert_id, h.plan, h.seats FROM events AS e "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id ORDER BY e.insert_id",
    )

    # e1 (10 Jan) falls in free; e2 (1 Feb 00:00) is the first moment of pro.
    assert rows == [
        {"insert_id": "e1", "plan": "free", "seats": 1},
        {"insert_id": "e2", "plan": "pro", "seats": None},
    ]


def test_query_csv_has_a_header_and_empty_fields_for_null(synced: Project) -> None:

    out = synced.cli(
        "query", INTERVALS_SQL.format(table="company_plan_history"), "--format", "csv"
    ).stdout

    expected = [{key: "" if v is None else str(v) for key, v in row.items()} for row in INTERVALS]
    assert list(csv.DictReader(io.StringIO(out))) == expected


def test_query_table_shows_columns_values_and_row_count(synced: Project) -> None:

    out = synced.cli("query", "SELECT plan, seats FROM company_plan_history ORDER BY plan").stdout

    lines = out.splitlines()
    assert "plan" in lines[1] and "seats" in lines[1]
    body = [line.split("│")[1:3] for line in lines if line.startswith("│")]
    assert [[cell.strip() for cell in cells] for cells in body] == [
        ["free", "1"],
        ["pro", "NULL"],
        ["team", "5"],
    ]
    assert "(3 rows)" in out


def test_query_json_writes_a_list_of_instants_as_iso_strings(synced: Project) -> None:

    rows = query_json(
        synced,
        "SELECT company_id, list(start_time ORDER BY start_time) AS starts "
        "FROM company_plan_history GROUP BY company_id ORDER BY company_id",
    )

    assert rows == [
        {"company_id": "c1", "starts": ["2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00"]},
        {"company_id": "c2", "starts": ["2024-01-15T12:00:00+00:00"]},
    ]


def test_query_json_writes_nanoseconds_it_cannot_round_in_full(synced: Project) -> None:
    # Rounded to microseconds, the last moment of 2024 would be written as 2025.
    rows = query_json(
        synced,
        "SELECT TIMESTAMP_NS '2024-12-31 23:59:59.9999999' AS naive, "
        "TIMESTAMP_NS '1969-12-31 23:59:59.999999999' AS before_1970, "
        "TIMESTAMP_NS '2024-03-01 10:00:00.123456' AS whole_microseconds, "
        "[TIMESTAMP_NS '2024-12-31 23:59:59.9999999'] AS listed",
    )

    assert rows == [
        {
            "naive": "2024-12-31T23:59:59.999999900",
            "before_1970": "1969-12-31T23:59:59.999999999",
            "whole_microseconds": "2024-03-01T10:00:00.123456",
            "listed": ["2024-12-31T23:59:59.999999900"],
        }
    ]


@pytest.mark.parametrize("output", ["json", "csv"])
def test_query_output_keeps_every_digit_of_a_json_number(synced: Project, output: str) -> None:
    # Read through DuckDB's JSON functions, the first would be 12345678901234568.0.
    stored = '{"amount": 12345678901234567.89, "rate": 0.10}'
    sql = f"SELECT CAST('{stored}' AS JSON) AS p, 1 AS n, CAST(NULL AS JSON) AS q"
    out = synced.cli("query", sql, "--format", output).stdout

    if output == "json":
        assert out == f'[\n{{"p":{stored},"n":1,"q":null}}\n]\n'
    else:
        assert list(csv.reader(io.StringIO(out))) == [["p", "n", "q"], [stored, "1", ""]]


def test_query_json_writes_a_result_of_many_columns(synced: Project) -> None:
    columns = ", ".join(f"{n} AS c{n}" for n in range(600))

    rows = query_json(synced, f"SELECT {columns}")

    assert rows == [{f"c{n}": n for n in range(600)}]


def test_query_csv_keeps_each_value_when_two_columns_share_a_name(synced: Project) -> None:

    out = synced.cli("query", "SELECT 'a' AS x, 'b' AS x", "--format", "csv").stdout

    assert list(csv.reader(io.StringIO(out))) == [["x", "x"], ["a", "b"]]


def test_query_table_keeps_each_value_when_two_columns_share_a_name(synced: Project) -> None:

    out = synced.cli("query", "SELECT 'a' AS x, 'b' AS x").stdout

    (row,) = [line for line in out.splitlines() if line.startswith("│")]
    assert [cell.strip() for cell in row.split("│")[1:3]] == ["a", "b"]


@pytest.mark.parametrize("second", ["x", "X"])
def test_query_json_with_two_columns_of_one_name_asks_for_aliases(
    synced: Project, second: str
) -> None:
    result = synced.cli(
        "query", f"SELECT 'a' AS x, 'b' AS \"{second}\"", "--format", "json", check=False
    )

    assert_user_error(result, "two result columns", "distinct aliases")


def test_query_csv_writes_types_without_a_csv_form_as_text(synced: Project) -> None:
    sql = "SELECT INTERVAL 1 DAY AS gap, TIMETZ '10:00:00+02' AS local_time"

    out = synced.cli("query", sql, "--format", "csv").stdout

    assert list(csv.reader(io.StringIO(out))) == [["gap", "local_time"], ["1 day", "10:00:00+02"]]


def test_the_largest_unsigned_integers_are_written_as_they_are(synced: Project) -> None:
    # 2^128 - 1 passed through as a signed number would print as -1.
    top = "340282366920938463463374607431768211455"
    sql = f"SELECT {top}::UHUGEINT AS top, 5::UHUGEINT AS small"

    out = synced.cli("query", sql, "--format", "csv").stdout
    table = synced.cli("query", sql).stdout

    assert list(csv.reader(io.StringIO(out))) == [["top", "small"], [top, "5"]]
    assert top in table and "-1" not in table


def test_a_decimal_of_only_a_fraction_is_written_with_its_zero(synced: Project) -> None:
    # DuckDB's own text of a DECIMAL whose scale is its width drops the 0: `.5000`.
    sql = (
        "SELECT 0.5::DECIMAL(18,18) AS half, -0.000000000000000001::DECIMAL(18,18) AS least, "
        "0::DECIMAL(16,16) AS zero, 1.5::DECIMAL(19,18) AS whole"
    )
    digits = [
        "0.500000000000000000",
        "-0.000000000000000001",
        "0.0000000000000000",
        "1.500000000000000000",
    ]

    out = synced.cli("query", sql, "--format", "csv").stdout
    table = synced.cli("query", sql).stdout

    assert list(csv.reader(io.StringIO(out))) == [["half", "least", "zero", "whole"], digits]
    [row] = [line for line in table.splitlines() if "│" in line]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == digits


def test_decimals_are_written_in_full_in_every_format(synced: Project) -> None:
    # Arrow and Python write these as 0E-18 and 1E-18; DuckDB as the digits below.
    # DuckDB's JSON holds a DECIMAL of 15 digits or fewer as a double: 1e-8, 100.0.
    sql = (
        "SELECT 0::DECIMAL(38,18) AS zero, 0.000000000000000001::DECIMAL(38,18) AS tiny, "
        "12.5::DECIMAL(10,2) AS price, 0.00000001::DECIMAL(15,8) AS narrow, "
        "100::DECIMAL(5,0) AS whole, [0.00000001::DECIMAL(15,8)] AS listed, "
        "{'a b': 1.10::DECIMAL(3,2)} AS nested"
    )
    names = ["zero", "tiny", "price", "narrow", "whole", "listed", "nested"]
    digits = [
        *("0.000000000000000000", "0.000000000000000001", "12.50", "0.00000001", "100"),
        *("[0.00000001]", '{"a b":1.10}'),
    ]

    out = synced.cli("query", sql, "--format", "csv").stdout
    table = synced.cli("query", sql).stdout
    text = synced.cli("query", sql, "--format", "json").stdout

    assert list(csv.reader(io.StringIO(out))) == [names, digits]
    [row] = [line for line in table.splitlines() if "│" in line]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == digits
    assert (
        '{"zero":0.000000000000000000,"tiny":0.000000000000000001,"price":12.50,'
        '"narrow":0.00000001,"whole":100,"listed":[0.00000001],"nested":{"a b":1.10}}'
    ) in text


def test_an_enum_label_that_reads_like_a_type_leaves_decimals_as_they_are(
    synced: Project,
) -> None:
    # A label `DECIMAL(5,2)` is no DECIMAL to widen; a `"` in a label starts no name, so
    # the DECIMAL after it is still written in full.
    sql = (
        "SELECT 'DECIMAL(5,2)'::ENUM('DECIMAL(5,2)', 'b') AS e, "
        "{'e': 'x\"'::ENUM('x\"'), 'd': 0.00000001::DECIMAL(10,8)} AS s"
    )

    out = synced.cli("query", sql, "--format", "csv").stdout
    text = synced.cli("query", sql, "--format", "json").stdout

    assert list(csv.reader(io.StringIO(out))) == [
        ["e", "s"],
        ["DECIMAL(5,2)", '{"e":"x\\"","d":0.00000001}'],
    ]
    assert '{"e":"DECIMAL(5,2)","s":{"e":"x\\"","d":0.00000001}}' in text


def test_the_table_writes_booleans_and_floats_as_csv_does(synced: Project) -> None:
    # In Python a FLOAT 0.1 is the double 0.10000000149011612, and true is True.
    sql = "SELECT 0.1::FLOAT AS f, true AS b, false AS n, 2.5::DOUBLE AS d"

    table = synced.cli("query", sql).stdout
    out = synced.cli("query", sql, "--format", "csv").stdout

    [row] = [line for line in table.splitlines() if "│" in line]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["0.1", "true", "false", "2.5"]
    assert list(csv.reader(io.StringIO(out)))[1] == ["0.1", "true", "false", "2.5"]


CALENDAR_SQL = (
    "SELECT DATE 'infinity' AS d, DATE '10000-01-01' AS late, DATE '0044-03-15 (BC)' AS bc, "
    "TIME '24:00:00' AS t, DATE '2024-02-29' AS leap, "
    "TIMESTAMP '0044-03-15 (BC) 10:00:00' AS naive_bc, "
    "TIMESTAMPTZ '0044-03-15 (BC) 10:00:00+00' AS zoned_bc, "
    "TIMESTAMP '0001-01-01 00:00:00' AS first_ad"
)
CALENDAR_TEXT = [
    *("infinity", "10000-01-01", "0044-03-15 (BC)", "24:00:00", "2024-02-29"),
    *("0044-03-15 (BC) 10:00:00", "0044-03-15 (BC) 10:00:00+00", "0001-01-01T00:00:00"),
]


def test_dates_and_times_python_cannot_hold_are_written_as_duckdb_writes_them(
    synced: Project,
) -> None:
    table = synced.cli("query", CALENDAR_SQL).stdout
    csv_out = synced.cli("query", CALENDAR_SQL, "--format", "csv").stdout

    [row] = [line for line in table.splitlines() if "│" in line]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == CALENDAR_TEXT
    assert list(csv.reader(io.StringIO(csv_out)))[1] == CALENDAR_TEXT


def test_csv_header_of_no_rows_doubles_a_quote_in_a_name(synced: Project) -> None:
    out = synced.cli("query", 'SELECT 1 AS "a""b", 2 AS c WHERE false', "--format", "csv")

    assert list(csv.reader(io.StringIO(out.stdout))) == [['a"b', "c"]]


def test_a_failed_query_says_why_without_duckdbs_lists_or_the_rewritten_sql(
    synced: Project,
) -> None:
    mistyped = synced.cli("query", "SELECT plan + 1 FROM company_plan_history", check=False)
    unknown = synced.cli(
        "query", "SELECT nosuch FROM company_plan_history FOR SYSTEM_TIME AS OF now()", check=False
    )

    assert_user_error(mistyped, "No function matches", "'+(VARCHAR, INTEGER_LITERAL)'")
    assert len(mistyped.stderr.strip().splitlines()) == 1
    assert_user_error(unknown, 'column "nosuch" not found', "Candidate bindings")
    assert "LINE 1" not in unknown.stderr and "start_time <=" not in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1  # the hint joins the reason's line


# Rows past the first batches fail their cast: DuckDB meets the error while they are fetched.
FAILS_LATE = (
    "SELECT CAST(CASE WHEN r.i < 300000 THEN '1' ELSE 'a' END AS INTEGER) AS v "
    "FROM range(400000) AS r(i)"
)


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_a_query_that_fails_while_its_rows_are_fetched_is_a_user_error(
    synced: Project, output: str
) -> None:
    result = synced.cli("query", FAILS_LATE, "--format", output, check=False)

    assert_user_error(result, "Could not convert string 'a' to INT32")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_json_query_that_fails_before_its_first_row_writes_nothing(synced: Project) -> None:
    sql = "SELECT CAST(x AS INTEGER) AS v FROM (VALUES ('a')) AS t(x)"
    result = synced.cli("query", sql, "--format", "json", check=False)

    assert_user_error(result, "Could not convert string 'a' to INT32")
    assert result.stdout == ""


def test_a_json_query_of_no_rows_is_an_empty_array(synced: Project) -> None:
    assert query_json(synced, "SELECT 1 AS x WHERE false") == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        # The alias goes after the clause; sqlglot quotes the query on further lines.
        "SELECT plan FROM company_plan_history AS h FOR SYSTEM_TIME AS OF '2024-01-01'",
    ],
)
def test_a_query_that_does_not_parse_is_refused_in_one_plain_line(
    synced: Project, sql: str
) -> None:
    result = synced.cli("query", sql, check=False)

    assert_user_error(result, "cannot parse the query")
    assert "\x1b[" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def nested(depth: int, opening: str, inner: str, closing: str) -> str:
    return opening * depth + inner + closing * depth


@pytest.mark.parametrize(
    "value",
    [
        nested(60, "(", "7", ")"),
        nested(60, "abs(", "-7", ")"),
        nested(30, "(SELECT x FROM (SELECT ", "7", " AS x) AS t)"),
    ],
    ids=["parentheses", "calls", "subqueries"],
)
def test_deeply_nested_sql_is_answered(synced: Project, value: str) -> None:
    assert query_json(synced, f"SELECT {value} AS x") == [{"x": 7}]


def test_a_deeply_nested_where_is_answered(synced: Project) -> None:
    where = nested(60, "(", "company_id = 'c1'", ")")

    rows = query_json(synced, f"SELECT DISTINCT company_id FROM company_plan_history WHERE {where}")

    assert rows == [{"company_id": "c1"}]
    assert synced.cli("users", "--where", nested(60, "(", "true", ")")).returncode == 0


def test_sql_nested_past_duckdbs_depth_is_refused_without_its_advice_to_set_it(
    synced: Project,
) -> None:
    result = synced.cli("query", f"SELECT {nested(1200, '(', '1', ')')} AS x", check=False)

    assert_user_error(result, "nests deeper than DuckDB reads (1000 levels)")
    assert "SET" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["query", "users"])
def test_sql_nested_past_what_can_be_read_is_refused_in_words(
    synced: Project, command: str
) -> None:
    deep = nested(5000, "(", "1 = 1", ")")
    args = (
        ["query", f"SELECT 1 AS x WHERE {deep}"]
        if command == "query"
        else ["users", "--where", deep]
    )

    result = synced.cli(*args, check=False)

    assert_user_error(result, "the SQL nests too deeply to be read")
    assert len(result.stderr.strip().splitlines()) == 1


def test_table_output_shows_values_as_they_are(synced: Project) -> None:
    # Square brackets are no markup, `:smile:` no emoji, and an escape sequence or a
    # direction override is shown, not sent.
    sql = (
        "SELECT '[vip] customer' AS \"[b]x\", '[/]' AS b, chr(27) || '[31mred' AS c, "
        "':smile:' AS \":red_heart:\", 'a' || chr(8238) || 'bc' AS r"
    )

    result = synced.cli("query", sql)

    header, row = (line for line in result.stdout.splitlines() if "│" in line or "┃" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "[b]x",
        "b",
        "c",
        ":red_heart:",
        "r",
    ]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "[vip] customer",
        "[/]",
        "\\x1b[31mred",
        ":smile:",
        "a\\u202ebc",
    ]
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout


def test_profile_table_shows_a_bracketed_value_as_it_is(project: Project) -> None:
    updates = project.root / "updates.jsonl"
    updates.write_text('{"$distinct_id": "[/]", "$set": {"tag": "[/]", "[b]": "x"}}\n')
    project.write_config()
    project.cli("engage", str(updates))

    result = project.cli("profile", "[/]")

    cells = [line.split("│")[1:3] for line in result.stdout.splitlines() if "│" in line]
    shown = {name.strip(): value.strip() for name, value in cells}
    assert (shown["[b]"], shown["tag"]) == ("x", "[/]")
    assert "user [/]" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["query", "SELECT 'abc"],
        ["query", "SELECT 1 /* a comment"],
        ["query", 'SELECT "x'],
        ["users", "--where", "plan = 'pro"],
        ["delete-profiles", "--where", "plan = 'pro"],
    ],
)
def test_an_open_quote_or_comment_is_one_line_not_a_traceback(
    synced: Project, args: list[str]
) -> None:
    result = synced.cli(*args, check=False)

    assert_user_error(result)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "limit",
    ["0", "9223372036854775808", "99999999999999999999999", "abc", "1.5", "", "+-5", "1²"],
)
def test_a_limit_that_is_no_64_bit_count_is_a_usage_error(synced: Project, limit: str) -> None:
    # Text that is no number was refused in argparse's words, naming a function of pitsync's.
    result = synced.cli("users", f"--limit={limit}", check=False)

    assert result.returncode == 2, result.stderr
    expected = f"--limit: give a count from 1 to 9223372036854775807, not {limit!r}"
    assert expected in result.stderr


def test_the_largest_limit_lists_every_profile(synced: Project) -> None:
    result = synced.cli("users", "--limit", "9223372036854775807", "--format", "json")

    assert json.loads(result.stdout) == json.loads(synced.cli("users", "--format", "json").stdout)


# --- profile and history -------------------------------------------------------------------


def test_latest_profile_leaves_out_undefined_properties(synced: Project) -> None:

    # The latest c1 row is pro with seats NULL: seats is undefined, not the earlier 1.
    assert cli_json(synced, *PROFILE_ARGS) == {"plan": "pro"}


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2023-12-31T23:59:59.999999Z", {}),
        ("2024-01-01T00:00:00Z", {"plan": "free", "seats": 1}),
        ("2024-01-31T23:59:59.999999Z", {"plan": "free", "seats": 1}),
        ("2024-02-01T01:00:00+01:00", {"plan": "pro"}),
        # 05:20 at UTC+05:30 is 23:50 UTC on 31 January; DuckDB alone would read 00:20.
        ("2024-02-01 05:20:00 UTC+05:30", {"plan": "free", "seats": 1}),
    ],
    ids=[
        *("before-first-row", "at-first-start", "last-microsecond-of-free"),
        *("offset-at-pro-start", "offset-minutes-after-utc"),
    ],
)
def test_profile_at_a_moment_takes_the_row_holding_it(
    synced: Project, moment: str, expected: dict[str, Any]
) -> None:
    assert cli_json(synced, *PROFILE_ARGS, "--at", moment) == expected


def test_profile_at_a_moment_nothing_was_known_says_so(synced: Project) -> None:
    result = synced.cli(*PROFILE_ARGS, "--at", "2023-12-31T23:59:59.999999Z")

    assert json.loads(result.stdout) == {}
    assert "no history property of company_id c1 is defined at 2023-12-31" in result.stderr
    told = synced.cli(*PROFILE_ARGS, "--at", "2024-01-01T00:00:00Z").stderr
    assert "no history property" not in told


@pytest.mark.parametrize(
    ("moment", "said"),
    [("24-02-01T00:00:00Z", "four digits"), ("2024-02-01T00:00:00+14:30", "14 hours")],
)
def test_profile_at_text_rule_6_would_not_read_is_refused(
    synced: Project, moment: str, said: str
) -> None:
    result = synced.cli(*PROFILE_ARGS, "--at", moment, check=False)
    assert_user_error(result, said, status=2)


@pytest.mark.parametrize("company", ["c9", "x; y"])
def test_profile_at_a_moment_of_an_entity_with_updates_only_says_what_at_reads(
    project: Project, company: str
) -> None:
    synced = seeded(project)
    synced.cli("sync", "--all")
    updates = synced.root / "updates.jsonl"
    record = {"$group_key": "company_id", "$group_id": company, "$set": {"tier": "gold"}}
    updates.write_text(json.dumps(record) + "\n")
    synced.cli("engage", str(updates))

    result = synced.cli(
        "profile", company, "--group-key", "company_id", "--at", "2024-03-01", check=False
    )

    assert_user_error(
        result,
        f"company_id {company} has a profile, but --at reads history tables only",
        "it has no rows in company_plan_history",
        "leave --at out for its profile now",
    )
    now = cli_json(synced, "profile", company, "--group-key", "company_id", "--format", "json")
    assert now["tier"] == "gold"


def test_history_lists_intervals_oldest_first(synced: Project) -> None:

    timelines = cli_json(synced, "history", "c1", "--group-key", "company_id", "--format", "json")

    # Every other column is a property: updated_at is one too, NULL in each row.
    assert timelines == {
        "company_plan_history": [
            {
                "start_time": "2024-01-01T00:00:00+00:00",
                "end_time": "2024-02-01T00:00:00+00:00",
                "plan": "free",
                "seats": 1,
                "updated_at": None,
            },
            {
                "start_time": "2024-02-01T00:00:00+00:00",
                "end_time": None,
                "plan": "pro",
                "seats": None,
                "updated_at": None,
            },
        ]
    }


def test_history_table_format_names_open_interval(synced: Project) -> None:

    out = synced.cli("history", "c2", "--group-key", "company_id").stdout

    assert "2024-01-15T12:00:00+00:00" in out and "(open)" in out and "plan=team" in out


def synced_team(project: Project, columns: str, values: str) -> None:
    """A group history of team t1 from 1 January 2024, with these columns and values."""
    project.source_sql(
        f"CREATE TABLE team_history (team VARCHAR, valid_from TIMESTAMPTZ, {columns})",
        f"INSERT INTO team_history VALUES ('t1', '2024-01-01 00:00:00+00', {values})",
    )
    project.configure(
        "team_history",
        kind="group_history",
        id_column="team",
        group_key="team",
        start_time="valid_from",
    )
    project.cli("sync", "--all")


def test_history_and_profile_tables_show_nested_values_as_json(project: Project) -> None:
    # Python's repr (`{'a': 2}`, `None`, `True`) is no notation of the product's.
    synced_team(
        project,
        "meta STRUCT(a INTEGER, b VARCHAR), tags VARCHAR[], paid BOOLEAN",
        "{'a': 2, 'b': 'Zürich'}, ['x', NULL], true",
    )

    history = project.cli("history", "t1", "--group-key", "team").stdout
    profile = project.cli("profile", "t1", "--group-key", "team", "--at", "2024-06-01").stdout

    flat = " ".join(history.split())
    assert 'meta={"a": 2, "b": "Zürich"}' in flat and 'tags=["x", null]' in flat
    assert "paid=true" in flat
    assert '["x", null]' in profile and "None" not in history + profile


def test_a_profile_table_keeps_its_title_on_one_line_over_narrow_columns(
    project: Project,
) -> None:
    synced_team(project, "paid BOOLEAN", "true")

    profile = project.cli("profile", "t1", "--group-key", "team", "--at", "2024-06-01").stdout

    assert profile.splitlines()[0].strip() == "team t1 at 2024-06-01T00:00:00+00:00"


def terminal_page(
    monkeypatch: pytest.MonkeyPatch, module: Any, *, width: int, piped: bool = False
) -> io.StringIO:
    """What the module's commands print to a terminal `width` columns wide (`piped`: to a
    file or pipe laid out that wide)."""
    page = io.StringIO()
    console = Console(
        file=page,
        width=width,
        markup=False,
        emoji=False,
        force_terminal=not piped,
        color_system=None,
    )
    monkeypatch.setattr(module, "terminal", lambda: console)
    return page


def parsed(project: Project, *args: str) -> argparse.Namespace:
    """A command line of the project, read as `pitsync` reads it."""
    return build_parser().parse_args(["--config", str(project.config_path), *args])


def test_history_on_an_80_column_terminal_cuts_no_moment_and_no_value(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_team(project, "note VARCHAR", "'short'")
    long_note = "n" * 100
    project.source_sql(
        f"INSERT INTO team_history VALUES ('t1', '2024-02-01 00:00+00', '{long_note}')"
    )
    project.cli("sync", "--all")
    page = terminal_page(monkeypatch, reading, width=80)

    assert reading.command_history(parsed(project, "history", "t1", "--group-key", "team")) == 0

    text = page.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    words = text.split()
    assert words.count("2024-02-01T00:00:00+00:00") == 2  # the end of one, the start of the next
    assert f"note={long_note}" in "".join(word for word in words if word != "│")


def test_a_profile_on_a_narrow_terminal_folds_a_long_value_whole(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_note = "n" * 100
    synced_team(project, "note VARCHAR", f"'{long_note}'")
    page = terminal_page(monkeypatch, reading, width=60)

    assert reading.command_profile(parsed(project, "profile", "t1", "--group-key", "team")) == 0

    text = page.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 60 and "…" not in text
    assert long_note in "".join(word for word in text.split() if word != "│")


def test_history_and_profile_write_a_decimal_with_every_digit(project: Project) -> None:
    # 123456789012345.125 has 18 digits; a double keeps 17, 123456789012345.12.
    synced_team(
        project,
        "amount DECIMAL(18, 3), rates DECIMAL(38, 18)[], fee DECIMAL(9, 7)",
        "123456789012345.125, [0.000000000000000001], 0.0000001",
    )
    at = ("profile", "t1", "--group-key", "team", "--at", "2024-06-01")

    as_json = project.cli(*at, "--format", "json").stdout
    as_table = " ".join(project.cli(*at).stdout.split())
    history = " ".join(project.cli("history", "t1", "--group-key", "team").stdout.split())

    assert '"amount": 123456789012345.125' in as_json
    assert '"rates": [\n    0.000000000000000001\n  ]' in as_json
    assert "123456789012345.125" in as_table and "[0.000000000000000001]" in as_table
    assert "amount=123456789012345.125" in history and "fee=0.0000001" in history
    assert '"fee": 0.0000001' in as_json and "0.0000001" in as_table
    assert "rates=[0.000000000000000001]" in history


# --- exit status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("sync",), ("query", "SELECT 1", "--format", "xml"), ("frobnicate",), ("profile",)],
    ids=["sync-without-target", "unknown-format", "unknown-command", "profile-without-id"],
)
def test_usage_error_exits_two_with_usage_text(synced: Project, args: tuple[str, ...]) -> None:
    result = synced.cli(*args, check=False)

    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_every_command_of_the_parser_has_a_handler_and_no_handler_is_left_over() -> None:
    [commands] = [
        action for action in build_parser()._actions if action.dest == "command"
    ]  # argparse keeps its subcommands only among its private actions

    assert set(commands.choices) == set(HANDLERS)


@pytest.mark.parametrize(
    "args",
    [
        ("delete-profiles", "--where", "distinct_id = 'nobody'", "--where", "true"),
        ("users", "--where", "plan = 'x'", "--where", "true"),
        ("profile", "c1", "--group-key", "company_id", "--group-key", "other"),
        ("query", "SELECT 1", "--format", "csv", "--format", "json"),
    ],
    ids=["delete-where", "users-where", "group-key", "format"],
)
def test_an_option_of_one_value_given_twice_is_a_usage_error(
    project: Project, args: tuple[str, ...]
) -> None:
    # argparse kept the last: `delete-profiles` deleted every profile by the second --where.
    synced = seeded(project)
    synced.cli("sync", "--all")
    engage_line = {"$distinct_id": "u1", "$set": {"plan": "pro"}}
    (synced.root / "one.jsonl").write_text(json.dumps(engage_line) + "\n")
    synced.cli("engage", "one.jsonl")

    result = synced.cli(*args, check=False)

    assert result.returncode == 2
    assert f"{args[-2]} was given twice; give it once" in result.stderr
    assert synced.query("SELECT count(*) FROM user_profiles") == [(1,)]


def test_an_error_naming_control_characters_is_one_line_that_shows_them(
    synced: Project,
) -> None:
    # An escape code would recolour the terminal; a newline would split the one line.
    result = synced.cli("sync", "--table", "x\x1b[31my\nz", check=False)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr
    assert "table `x\\x1b[31my\\nz` is not configured" in result.stderr


def test_a_warning_naming_a_warehouse_value_with_control_characters_is_one_line(
    project: Project,
) -> None:
    company = "c\x1b[2J\n1"
    company_history(
        project,
        [
            (company, "free", 1, "2024-01-01 00:00:00+00", None),
            (company, "pro", 1, "2024-01-01 00:00:00+00", None),
        ],
    )

    result = project.cli("sync", "--all")

    [warning] = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert "c\\x1b[2J\\n1 has 2 conflicting rows" in warning
    assert "\x1b" not in result.stderr


def test_query_before_any_sync_is_a_user_error(project: Project) -> None:
    seeded(project)

    result = project.cli("query", "SELECT 1", check=False)

    assert_user_error(result, "does not exist yet", "pitsync sync")


STORE_COMMANDS = [
    ("sync", "--all"),
    ("engage", "updates.jsonl"),
    ("delete-profiles", "--id", "u1"),
    ("drop-table", "company_plan_history"),
    ("query", "SELECT 1"),
    ("runs",),
]


def sqlite_file(project: Project) -> None:
    con = sqlite3.connect(project.store)
    con.execute("CREATE TABLE mine (a INTEGER)")
    con.commit()
    con.close()


def foreign_duckdb_file(project: Project) -> None:
    con = duckdb.connect(str(project.store))
    con.execute("CREATE TABLE events (a INTEGER)")
    con.close()


def foreign_tables_beside_an_empty_pitsync_schema(project: Project) -> None:
    con = duckdb.connect(str(project.store))
    con.execute("CREATE SCHEMA _pitsync")
    con.execute("CREATE TABLE customers (a INTEGER)")
    con.close()


def foreign_duckdb_sequence(project: Project) -> None:
    # No table at all: neither a store a killed first sync left, nor one to write into.
    con = duckdb.connect(str(project.store))
    con.execute("CREATE SEQUENCE invoice_numbers")
    con.close()


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=[c[0] for c in STORE_COMMANDS])
@pytest.mark.parametrize(
    ("make", "said"),
    [
        (sqlite_file, "is an SQLite database, not a pitsync store"),
        (foreign_duckdb_file, "pitsync did not make"),
        (foreign_duckdb_sequence, "pitsync did not make"),
        (foreign_tables_beside_an_empty_pitsync_schema, "pitsync did not make"),
    ],
    ids=["sqlite", "duckdb", "duckdb-sequence", "duckdb-pitsync-schema"],
)
def test_a_store_path_naming_someone_elses_database_is_refused_and_left_as_it_is(
    project: Project, command: tuple[str, ...], make: Any, said: str
) -> None:
    # Neither written to nor read with an extension DuckDB would fetch over the network.
    seeded(project)
    (project.root / "updates.jsonl").write_text('{"$distinct_id": "u1", "$set": {"a": 1}}\n')
    make(project)
    before = project.store.read_bytes()

    result = project.cli(*command, check=False)

    message = said if command[0] not in ("query", "runs") else "not a pitsync store"
    assert_user_error(result, message)
    assert "extension" not in result.stderr
    assert project.store.read_bytes() == before


@pytest.mark.parametrize("command", [("sync", "--all"), ("query", "SELECT 1")])
def test_a_store_path_that_is_a_folder_is_said_to_be_one(
    project: Project, command: tuple[str, ...]
) -> None:
    seeded(project)
    project.store.mkdir()

    result = project.cli(*command, check=False)

    assert_user_error(result, "is a folder; set [store] path to a file")


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=[c[0] for c in STORE_COMMANDS])
def test_a_damaged_store_is_one_line_for_every_command(
    project: Project, command: tuple[str, ...]
) -> None:
    seeded(project).cli("sync", "--all")
    (project.root / "updates.jsonl").write_text('{"$distinct_id": "u1", "$set": {"a": 1}}\n')
    with project.store.open("r+b") as store:  # a byte of the database header, flipped
        store.seek(4200)
        byte = store.read(1)[0]
        store.seek(4200)
        store.write(bytes([byte ^ 0xFF]))

    result = project.cli(*command, check=False)

    assert_user_error(result, "cannot open the store", "Corrupt database file")


@pytest.mark.parametrize("command", [("query", "SELECT 1"), ("runs",), ("engage", "none.jsonl")])
def test_a_store_lacking_a_column_no_pitsync_left_out_is_said_to_be_changed(
    project: Project, command: tuple[str, ...]
) -> None:
    # runs.error was in the runs table from its start: no earlier pitsync wrote a store
    # without it, and writing the store again would not add it.
    seeded(project).cli("sync", "--all")
    (project.root / "none.jsonl").write_text("")
    con = duckdb.connect(str(project.store))
    con.execute("ALTER TABLE _pitsync.runs DROP COLUMN error")
    con.close()

    refused = project.cli(*command, check=False)

    assert_user_error(
        refused,
        "lacks _pitsync.runs.error, which every pitsync store has had: it was changed by "
        "another program; restore it from a copy, or move it aside and sync every table again",
    )
    assert "earlier pitsync" not in refused.stderr


@pytest.mark.parametrize(
    "command",
    [("history", "c1", "--group-key", "company_id"), ("engage", "updates.jsonl"), ("runs",)],
)
def test_a_store_damaged_past_its_opening_is_one_line_with_what_to_do(
    project: Project, command: tuple[str, ...]
) -> None:
    seeded(project).cli("sync", "--all")
    (project.root / "updates.jsonl").write_text(
        '{"$group_key": "company_id", "$group_id": "c1", "$set": {"a": 1}}\n'
    )
    con = duckdb.connect(str(project.store))
    con.execute("DROP VIEW main.company_plan_history")
    con.close()

    result = project.cli(*command, check=False)

    if command[0] == "runs":  # runs reads no history table
        assert result.returncode == 0, result.stderr
        return
    assert_user_error(
        result,
        "DuckDB stopped the command: Catalog Error:",
        "if the store was changed by another program or its file is damaged, restore it "
        "from a copy, or move it aside and sync every table again",
    )
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command", [("query", "SELECT count(*) FROM events"), ("runs",), ("history", "c1")]
)
def test_a_store_of_an_earlier_layout_asks_for_one_sync_before_it_is_read(
    project: Project, command: tuple[str, ...]
) -> None:
    # Columns pitsync added later are added when a store is written, not when it is read.
    seeded(project).cli("sync", "--all")
    con = duckdb.connect(str(project.store))
    con.execute("ALTER TABLE _pitsync.catalog DROP COLUMN keyed_by")
    con.close()
    if command[0] == "history":
        command = (*command, "--group-key", "company_id")

    refused = project.cli(*command, check=False)
    assert_user_error(
        refused,
        "was written by an earlier pitsync (it has no _pitsync.catalog.keyed_by); bring it "
        "up to date by writing it once, with `pitsync sync --all` (where no table is "
        "configured, `pitsync engage` of an empty file), then run this command",
    )
    project.cli("sync", "--all")
    assert project.cli(*command).returncode == 0


def test_query_naming_an_unknown_column_is_a_user_error(synced: Project) -> None:

    result = synced.cli("query", "SELECT no_such_column FROM events", check=False)

    assert_user_error(result, "no_such_column")


def test_profile_of_an_unknown_id_is_a_user_error_naming_the_tables(synced: Project) -> None:
    result = synced.cli("profile", "c9", "--group-key", "company_id", check=False)

    assert_user_error(result, "company_id c9", "no rows in company_plan_history", "check the id")


def seeded_user_plans(project: Project) -> None:
    """The seeded company history, also read as a user history `user_plans`."""
    seeded(project)
    project.configure(
        "user_plans",
        kind="user_history",
        id_column="company_id",
        start_time="start_timestamp",
        **{"from": "company_plan_history"},
    )


def test_history_of_an_unknown_user_points_to_the_group_keys(project: Project) -> None:
    seeded_user_plans(project)
    project.cli("sync", "--all")

    result = project.cli("history", "nobody", check=False)

    assert_user_error(result, "user nobody", "no rows in user_plans", "--group-key `company_id`")


def test_a_group_key_of_profiles_alone_is_no_synced_history_key(project: Project) -> None:
    seeded(project)
    project.configure(
        "company_crm",
        kind="group_profiles",
        id_column="company_id",
        group_key="company_id",
        **{"from": "company_plan_history"},
    )
    project.cli("sync", "--table", "company_crm")

    result = project.cli("history", "c1", "--group-key", "company_id", check=False)

    assert_user_error(
        result, "no history table for group key `company_id` has been synced", "sync a history"
    )
    assert "the synced group keys are" not in result.stderr


def test_history_of_an_unknown_user_without_group_histories_asks_only_to_check_the_id(
    project: Project,
) -> None:
    seeded_user_plans(project)
    project.cli("sync", "--table", "user_plans")

    result = project.cli("history", "nobody", check=False)

    assert_user_error(result, "user nobody has no rows in user_plans; check the id")
    assert "sync a history table first" not in result.stderr
    assert "--group-key" not in result.stderr


@pytest.mark.parametrize("now", ["NOW", "Now"])
def test_profile_at_now_may_be_written_in_any_case(synced: Project, now: str) -> None:
    assert cli_json(synced, *PROFILE_ARGS, "--at", now) == cli_json(synced, *PROFILE_ARGS)


@pytest.mark.parametrize(
    "args",
    [
        (*PROFILE_ARGS, "--at", "2024-03-01T00:00:00+15:00"),
        ("feed", "c1", "--group-key", "company_id", "--from", "2024-03-01T00:00:00-15:00"),
    ],
)
def test_a_moment_offset_beyond_fourteen_hours_is_a_usage_error(
    synced: Project, args: tuple[str, ...]
) -> None:
    result = synced.cli(*args, check=False)

    # A bad option value exits 2, as argparse's own refusals do.
    assert_user_error(result, args[-1], "14 hours", status=2)


# DuckDB's cast reads each of these as a time; rule 6 reads none of them in a source.
NO_MOMENTS = ["next tuesday", "epoch", "infinity", "-infinity", "2024-02-01 (BC)", ""]


@pytest.mark.parametrize("text", NO_MOMENTS)
@pytest.mark.parametrize(
    "args",
    [
        (*PROFILE_ARGS, "--at"),
        ("feed", "c1", "--group-key", "company_id", "--from"),
        ("feed", "c1", "--from", "2024-03-01", "--to"),
    ],
)
def test_text_that_is_no_moment_is_a_usage_error(
    synced: Project, args: tuple[str, ...], text: str
) -> None:

    result = synced.cli(*args[:-1], f"{args[-1]}={text}", check=False)

    assert_user_error(result, repr(text), "ISO 8601", status=2)


def test_profile_at_a_zone_abbreviation_is_a_usage_error(synced: Project) -> None:
    # DuckDB reads BST as Bangladesh time; a British reader means another moment.
    result = synced.cli(*PROFILE_ARGS, "--at", "2024-06-01T05:30:00 BST", check=False)

    assert_user_error(result, "BST", "abbreviation", "Area/City", status=2)


# --- file sources and epochs ---------------------------------------------------------------


def test_csv_source_gives_the_same_intervals_as_the_duckdb_file(project: Project) -> None:
    company_history(project, ROWS)
    project.source_sql(f"COPY company_plan_history TO '{project.root / 'plans.csv'}' (HEADER)")
    add_file_table(project, "csv_plans", source_type="csv", path="plans.csv")

    project.cli("sync", "--all")

    assert query_json(project, INTERVALS_SQL.format(table="company_plan_history")) == INTERVALS
    assert query_json(project, INTERVALS_SQL.format(table="csv_plans")) == INTERVALS


def test_parquet_files_matched_by_a_glob_give_the_same_intervals(project: Project) -> None:
    company_history(project, ROWS)
    (project.root / "parts").mkdir()
    for company in ("c1", "c2"):
        target = project.root / "parts" / f"{company}.parquet"
        project.source_sql(
            f"COPY (SELECT * FROM company_plan_history WHERE company_id = '{company}') "
            f"TO '{target}' (FORMAT parquet)"
        )
    add_file_table(project, "parquet_plans", source_type="parquet", path="parts/*.parquet")

    project.cli("sync", "--all")

    assert query_json(project, INTERVALS_SQL.format(table="company_plan_history")) == INTERVALS
    assert query_json(project, INTERVALS_SQL.format(table="parquet_plans")) == INTERVALS


def add_file_table(project: Project, name: str, *, source_type: str, path: str) -> None:
    """A second history table over the same rows, read from files; own group key (rule 11)."""
    project.configure(
        name,
        source="files",
        kind="group_history",
        id_column="company_id",
        group_key=f"{name}_company",
        start_time="start_timestamp",
    )
    project.write_config(f'[sources.files]\ntype = "{source_type}"\npath = "{path}"\n')


def epoch_history(project: Project, **settings: Any) -> None:
    """Two rows whose start is milliseconds since 1970: 1 Jan 2024 and 1 Mar 2024 + 123 ms."""
    # 2024-01-01 is 19723 days after 1970-01-01 (54 years, 13 leap days): 1704067200 s.
    # 2024-03-01 is 60 days later (31 + 29): 1709251200 s.
    project.source_sql(
        "CREATE TABLE plan_epochs (company_id VARCHAR, plan VARCHAR, started_ms BIGINT)",
        "INSERT INTO plan_epochs VALUES ('c1', 'free', 1704067200000), "
        "('c1', 'pro', 1709251200123)",
    )
    project.configure(
        "plan_epochs",
        kind="group_history",
        id_column="company_id",
        group_key="company_id",
        start_time="started_ms",
        **settings,
    )


def test_integer_epoch_with_time_unit_ms_reads_as_that_instant(project: Project) -> None:
    epoch_history(project, time_unit="ms")

    project.cli("sync", "--all")

    assert query_json(
        project, "SELECT plan, start_time, end_time FROM plan_epochs ORDER BY start_time"
    ) == [
        {
            "plan": "free",
            "start_time": "2024-01-01T00:00:00+00:00",
            "end_time": "2024-03-01T00:00:00.123000+00:00",
        },
        {"plan": "pro", "start_time": "2024-03-01T00:00:00.123000+00:00", "end_time": None},
    ]


def test_integer_epoch_without_time_unit_is_a_config_error_naming_it(project: Project) -> None:
    epoch_history(project)

    result = project.cli("sync", "--all", check=False)

    assert_user_error(result, "time_unit", "started_ms", "plan_epochs")
    assert not project.store.exists()


@pytest.mark.parametrize(("kind", "held"), [("TIMESTAMP", "timestamps"), ("DATE", "dates")])
def test_time_unit_on_a_column_of_times_is_a_config_error_naming_it(
    project: Project, kind: str, held: str
) -> None:
    # A setting that would change nothing is refused, as an unknown key is.
    epoch_history(project, time_unit="ms")
    project.source_sql(
        f"ALTER TABLE plan_epochs ALTER started_ms TYPE {kind} USING DATE '2024-01-01'"
    )

    result = project.cli("sync", "--all", check=False)

    assert_user_error(result, "started_ms", held, "remove time_unit")
    assert not project.store.exists()


def test_a_source_that_fails_as_it_is_read_is_a_failed_run_and_the_others_go_on(
    project: Project,
) -> None:
    seeded(project)
    project.source_sql(
        "CREATE TABLE raw_plans (company_id VARCHAR, plan VARCHAR, start_timestamp TIMESTAMPTZ)",
        "INSERT INTO raw_plans VALUES ('c1', 'x', '2024-01-01 00:00:00+00')",
        # The view cannot cast 'x' to a number: it fails only when its rows are read.
        "CREATE VIEW broken_plans AS SELECT company_id, CAST(plan AS INTEGER) AS seats_too, "
        "start_timestamp FROM raw_plans",
    )
    project.configure(
        "broken_plans",
        kind="user_history",
        id_column="company_id",
        start_time="start_timestamp",
    )

    result = project.cli("sync", "--all", check=False)

    assert result.returncode == 1
    assert "broken_plans" in result.stderr and "Traceback" not in result.stderr
    runs = {
        run["table_name"]: run["status"] for run in cli_json(project, "runs", "--format", "json")
    }
    assert runs == {
        "company_plan_history": "succeeded",
        "product_events": "succeeded",
        "broken_plans": "failed",
    }


@pytest.mark.parametrize("output", ["table", "csv", "json"])
@pytest.mark.parametrize("rows", [200_000, 5_000], ids=["many-batches", "one-batch"])
def test_a_reader_that_goes_away_ends_every_format_as_sigpipe_would(
    synced: Project, output: str, rows: int
) -> None:
    # `pitsync query ... | head -1`: rich's table ended with exit 1, which means an error,
    # and CSV of one batch (one write) ended with 0, what it did not write lost unsaid.
    # More than a pipe holds, even of a table, which shows the first 1000 rows.
    wide_rows = f"SELECT range AS n, repeat('x', 300) AS filler FROM range({rows})"

    status, stderr = read_one_line_of(synced, "query", wide_rows, "--format", output)

    assert status == 141, stderr
    assert stderr == ""


def read_one_line_of(project: Project, *args: str) -> tuple[int, str]:
    """Run the command, read one line of its output, and close the pipe, as `| head -1`
    does; its exit status and standard error."""
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    job = subprocess.Popen(
        [*command, *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None and job.stderr is not None
    job.stdout.readline()
    job.stdout.close()
    with job.stderr:
        stderr = job.stderr.read()
    job.wait(timeout=60)
    return job.returncode, stderr


@pytest.mark.parametrize("output", ["table", "json"])
def test_a_reader_gone_during_one_large_profile_ends_it_as_sigpipe_would(
    project: Project, output: str
) -> None:
    # One table written in one call: the buffered stream dropped what the pipe did not take.
    record = {"$distinct_id": "u1", "$set": {f"p{i}": "v" * 200 for i in range(1500)}}
    (project.root / "wide.jsonl").write_text(json.dumps(record) + "\n")
    project.write_config()
    project.cli("engage", "wide.jsonl")

    status, stderr = read_one_line_of(project, "profile", "u1", "--format", output)

    assert status == 141, stderr
    assert stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["sync", "--help"]])
def test_help_and_version_to_a_reader_gone_end_as_sigpipe_would(
    project: Project, args: list[str]
) -> None:
    # argparse takes no notice of a write that fails: these ended with 0, the text lost.
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as no_reader:
        result = subprocess.run(
            [sys.executable, "-m", "pitsync.cli", *args],
            cwd=project.root,
            stdout=no_reader,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )

    assert result.returncode == 141, result.stderr
    assert result.stderr == ""


def written_to_a_full_disk(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """The command run with its standard output on /dev/full, where every write fails."""
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(project.config_path)]
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [*command, *args],
            cwd=project.root,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_output_to_a_full_disk_is_one_line_saying_so(synced: Project, output: str) -> None:
    result = written_to_a_full_disk(synced, "query", "SELECT 1 AS n", "--format", output)

    assert result.returncode == 1
    assert result.stderr == "pitsync: error: cannot write the output: no space left on device\n"


def test_a_sync_whose_report_cannot_be_written_still_says_which_runs_failed(
    project: Project,
) -> None:
    seeded(project)
    project.source_sql(
        "INSERT INTO company_plan_history VALUES (NULL, 'ghost', 9, '2024-03-01', NULL)"
    )
    result = written_to_a_full_disk(project, "sync", "--all", "--strict")

    assert result.returncode == 1
    assert "pitsync: error: cannot write the output: no space left on device" in result.stderr
    assert "table `company_plan_history`" in result.stderr and "--strict" in result.stderr


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("query", "--help")])
def test_help_to_a_full_disk_is_one_line_saying_so(synced: Project, args: tuple[str, ...]) -> None:
    # Help is written as the command line is read, before any command runs.
    result = written_to_a_full_disk(synced, *args)

    assert result.returncode == 1
    assert result.stderr == "pitsync: error: cannot write the output: no space left on device\n"


@pytest.mark.parametrize("output", ["table", "json"])
def test_output_to_a_closed_standard_output_is_one_line_saying_so(
    synced: Project, output: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pitsync.cli", "--config", str(synced.config_path)]
        + ["runs", "--format", output],
        cwd=synced.root,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        preexec_fn=lambda: os.close(1),  # as a shell's `>&-` starts it
    )

    assert result.returncode == 1
    assert result.stderr == "pitsync: error: cannot write the output: standard output is closed\n"


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_output_in_an_encoding_short_of_a_character_is_one_line_saying_what_to_do(
    synced: Project, output: str
) -> None:
    result = synced.cli(
        "query",
        "SELECT 'price in €' AS s",
        "--format",
        output,
        check=False,
        env={"PYTHONIOENCODING": "latin-1"},
    )

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the output's encoding (iso8859-1) cannot write" in result.stderr
    assert "set PYTHONIOENCODING=utf-8" in result.stderr


def test_a_long_history_is_written_whole_as_json_and_its_first_intervals_as_a_table(
    project: Project,
) -> None:
    # 1500 daily plans of one company: JSON holds each, in order; the table shows 1000.
    project.source_sql(
        "CREATE TABLE company_plan_history AS SELECT 'c1' AS company_id, "
        "'plan' || range AS plan, CAST(range AS INTEGER) AS seats, "
        "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_days(range) AS start_timestamp, "
        "CAST(NULL AS TIMESTAMPTZ) AS updated_at FROM range(1500)"
    )
    configure_company_history(project)
    project.cli("sync", "--all")

    history = ("history", "c1", "--group-key", "company_id")
    timelines = json.loads(project.cli(*history, "--format", "json").stdout)
    table = project.cli(*history).stdout

    intervals = timelines["company_plan_history"]
    assert [interval["seats"] for interval in intervals] == list(range(1500))
    assert intervals[-1]["end_time"] is None
    assert intervals[0]["end_time"] == intervals[1]["start_time"] == "2024-01-02T00:00:00+00:00"
    assert "seats=999" in table and "seats=1000" not in table
    assert "500 more intervals not shown; use --format json for all" in table


def test_a_table_cell_past_ten_thousand_characters_is_cut_saying_how_much_more() -> None:
    # Folding a cell of megabytes into a terminal table took over a minute, to show
    # nothing anyone reads; CSV and JSON keep every character.
    assert cell("ab" * 5000) == "ab" * 5000
    assert cell("ab" * 6000) == (
        "ab" * 5000 + "... (2000 more characters; use --format csv or json)"
    )
    assert cell("\x1b" * 10_001) == "\\x1b" * 10_000 + (
        "... (1 more character; use --format csv or json)"
    )


def test_a_store_of_profiles_alone_is_brought_up_to_date_by_an_empty_engage(
    tmp_path: Path,
) -> None:
    # With no table configured, `sync --all` has nothing to run: the refusal's other way.
    project = Project(root=tmp_path)
    project.write_config()
    (tmp_path / "updates.jsonl").write_text('{"$distinct_id": "u1", "$set": {"plan": "pro"}}\n')
    (tmp_path / "empty.jsonl").write_text("")
    project.cli("engage", "updates.jsonl")
    con = duckdb.connect(str(project.store))
    con.execute("ALTER TABLE _pitsync.catalog DROP COLUMN keyed_by")
    con.close()

    assert_user_error(project.cli("users", check=False), "`pitsync engage` of an empty file")
    project.cli("engage", "empty.jsonl")
    assert "u1" in project.cli("users").stdout


def test_a_query_out_of_memory_says_what_to_do(project: Project) -> None:
    # string_agg holds its whole result in memory: 200 MB, past a limit of 64 MB.
    seeded(project)
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        text.replace('path = "store.duckdb"', 'path = "store.duckdb"\nmemory_limit = "64MB"', 1),
        encoding="utf-8",
    )
    project.cli("sync", "--all")

    huge = "SELECT length(string_agg(repeat('x', 1000), ',')) FROM range(200000)"
    result = project.cli("query", huge, "--format", "csv", check=False)

    assert_user_error(result, "the query failed: Out of Memory Error")
    assert result.stderr.rstrip().endswith("or give the command less at a time")


def test_profiles_are_listed_within_a_small_memory_limit(project: Project) -> None:
    # 200,000 profiles, listed in id order within 64 MB: aggregating each profile's
    # properties, joining them to the profiles and sorting the result held them all.
    # They are filed without the limit; only the listing is held to it.
    store = '[store]\npath = "store.duckdb"\n'
    project.config_path.write_text(store, encoding="utf-8")
    records = (
        json.dumps({"$distinct_id": f"u{i:06d}", "$set": {"plan": "pro", "n": i}})
        for i in range(200_000)
    )
    (project.root / "many.jsonl").write_text("\n".join(records), encoding="utf-8")
    project.cli("engage", "many.jsonl")
    project.config_path.write_text(store + 'memory_limit = "64MB"\n', encoding="utf-8")

    rows = list(csv.reader(io.StringIO(project.cli("users", "--format", "csv").stdout)))

    assert len(rows) == 1 + 200_000
    # Ids in order, and each profile's names in code point order: `n` before `plan`.
    assert rows[1][:2] == ["u000000", '{"n":0,"plan":"pro"}']
    assert rows[-1][:2] == ["u199999", '{"n":199999,"plan":"pro"}']


def test_a_sync_run_out_of_memory_says_what_to_do() -> None:
    table = TableConfig(
        name="plans", source="warehouse", kind="user_history", id_column="id", source_table="p"
    )
    error = duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    message = str(as_run_error(table, error))

    assert message == (
        "table `plans`: the run failed and nothing was applied: Out of Memory Error: could "
        "not allocate block; raise `memory_limit` in [store] (or remove it, to let DuckDB "
        "take most of the machine's memory), or give the command less at a time"
    )


def test_a_result_column_name_past_ten_thousand_characters_is_cut_too(synced: Project) -> None:
    # A column named by a value (PIVOT) can be as long as the value.
    pivot = "PIVOT (SELECT repeat('k', 20000) AS k, 1 AS v) ON k USING first(v)"

    out = synced.cli("query", pivot).stdout

    assert out.count("k") == 10_000


def test_the_store_layout_read_from_its_text_is_the_one_duckdb_makes() -> None:
    # Refusing a store of an earlier layout compares its columns with this reading.
    con = duckdb.connect()
    con.execute(SCHEMA_DDL)
    made = con.execute(
        "SELECT schema_name || '.' || table_name, column_name FROM duckdb_columns() "
        "WHERE schema_name = '_pitsync'"
    ).fetchall()
    con.close()

    assert sorted(layout_columns()) == sorted(made)


@pytest.mark.parametrize("width", [40, 80, 160, 400])
def test_runs_fit_their_terminal_and_cut_no_figure_short(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    started = dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.UTC)
    records = [
        RunRecord(7, "company_plan_history", "append", status="succeeded", rows_read=12_345_678,
                  inserted=1_234_566, started_at=started),
        RunRecord(8, "users", "mirror", status="failed", started_at=started,
                  error="table users: column `plan` changed type from VARCHAR to INTEGER"),
    ]  # fmt: skip
    page = terminal_page(monkeypatch, syncing, width=width)

    syncing.print_runs(records)

    lines = page.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    words = set(page.getvalue().split())
    assert {"12345678", "1234566", "company_plan_history", "failed", "09:30:00"} <= words
    # The error is whole: on a wide terminal in its column, else on its run's line.
    assert "changed type from VARCHAR to INTEGER" in " ".join(page.getvalue().split())


def test_runs_piped_narrower_than_their_table_are_a_line_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = RunRecord(8, "users", "mirror", error="table users: column `plan` " + "x" * 200)
    page = terminal_page(monkeypatch, syncing, width=80, piped=True)

    syncing.print_runs([RunRecord(7, "plans", "full", status="succeeded"), failed])

    lines = page.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["run 7", "run 8"]
    assert lines[1].endswith("x" * 200)


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_sync_report_fits_its_terminal_and_cuts_no_figure_short(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    records = [
        RunRecord(1, "company_plan_history", "full", rows_read=12_345_678, inserted=1_234_566),
        RunRecord(2, "users", "full", rows_read=90_817, entities_changed=654_321),
    ]
    page = terminal_page(monkeypatch, syncing, width=width)

    syncing.print_sync_report(records)

    lines = page.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    words = set(page.getvalue().split())
    assert {"12345678", "1234566", "90817", "654321"} <= words
