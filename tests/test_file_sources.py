"""File sources: a CSV value far down the file is read as it is written, not as the top
suggests; the files of one table are read by column name, each once, whatever its name.

DuckDB guesses CSV column types from a sample of the first rows. pitsync reads ids and
time columns as text and sniffs the other columns from the whole file, so a late `007`
stays its own entity and a late unreadable time is one quarantined row, not a failed run.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pitsync.connectors.sources import reason
from pitsync.errors import ConfigError, SourceError
from pitsync.queries.execute import QuerySession
from pitsync.quoting import quote_string
from tests.conftest import Project

GOOD_ROWS = 30_000  # well past the sniffer's sample


def write_csv(project: Project, late_rows: list[str]) -> None:
    """GOOD_ROWS rows of users 0..GOOD_ROWS-1 on `free` from 2024-01-01, then `late_rows`."""
    path = project.root / "plans.csv"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT range AS user_id, 'free' AS plan, 1 AS seats, "
        f"'2024-01-01 00:00:00' AS valid_from FROM range({GOOD_ROWS})) "
        f"TO '{path}' (HEADER true)"
    )
    con.close()
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in late_rows)


def configure_plans(
    project: Project, path: str = "plans.csv", kind: str = "csv", **settings: str
) -> None:
    project.configure(
        "user_plans",
        source="files",
        kind="user_history",
        id_column="user_id",
        start_time="valid_from",
        **settings,
    )
    project.write_config(f'[sources.files]\ntype = "{kind}"\npath = "{path}"\n')


def test_a_late_id_with_leading_zeros_stays_its_own_entity(project: Project) -> None:
    write_csv(project, ["007,pro,5,2024-02-01 00:00:00"])
    configure_plans(project)

    project.sync("user_plans")

    assert project.query("SELECT plan FROM user_plans WHERE user_id = '007'") == [("pro",)]
    assert project.query("SELECT plan FROM user_plans WHERE user_id = '7'") == [("free",)]


def test_late_unreadable_values_are_quarantined_and_the_rest_applies(project: Project) -> None:
    write_csv(project, ["abc,pro,5,2024-02-01 00:00:00", "8,pro,5,not-a-time"])
    configure_plans(project)

    record = project.sync("user_plans")

    assert (record.rows_read, record.inserted, record.quarantined) == (
        GOOD_ROWS + 2,
        GOOD_ROWS + 1,
        1,
    )
    assert project.query("SELECT plan FROM user_plans WHERE user_id = 'abc'") == [("pro",)]
    assert project.query("SELECT reason FROM quarantine") == [("unreadable start time",)]


def test_naive_and_offset_times_in_one_column_each_keep_their_meaning(project: Project) -> None:
    # Kolkata is UTC+05:30: the naive 2024-06-01 00:00 there is 2024-05-31 18:30 UTC.
    write_csv(project, ["u1,pro,5,2024-06-01T00:00:00+05:00", "u2,pro,5,2024-06-01 00:00:00"])
    configure_plans(project, timezone="Asia/Kolkata")

    project.sync("user_plans")

    starts = project.query(
        "SELECT user_id, strftime(start_time, '%Y-%m-%dT%H:%M') FROM user_plans "
        "WHERE user_id IN ('u1', 'u2') ORDER BY user_id"
    )
    assert starts == [("u1", "2024-05-31T19:00"), ("u2", "2024-05-31T18:30")]


def write_loads(project: Project, kind: str, loads: dict[str, str]) -> None:
    """One file per load under loads/<day>/, each written from a SELECT."""
    con = duckdb.connect()
    for name, select in loads.items():
        folder = project.root / "loads" / name[:7]
        folder.mkdir(parents=True, exist_ok=True)
        options = "FORMAT parquet" if kind == "parquet" else "HEADER true"
        con.execute(f"COPY ({select}) TO '{folder / name}.{kind}' ({options})")
    con.close()


def configure_loads(project: Project, kind: str) -> None:
    # `**`: the loads sit in a folder a month.
    configure_plans(project, path=f"loads/**/*.{kind}", kind=kind)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_files_of_one_table_are_read_by_column_name(project: Project, kind: str) -> None:
    # The second load brings a column the first lacks; the third lacks `plan`, so its row
    # leaves plan undefined from its start (rule 2), and its region is read.
    write_loads(
        project,
        kind,
        {
            "2024-01-a": "SELECT 'u1' AS user_id, 'free' AS plan, '2024-01-01' AS valid_from",
            "2024-02-b": "SELECT 'u1' AS user_id, '2024-02-01' AS valid_from, 'pro' AS plan, "
            "'eu' AS region",
            "2024-03-c": "SELECT 'u1' AS user_id, '2024-03-01' AS valid_from, 'us' AS region",
        },
    )
    # An empty file, as an export that failed leaves, holds no rows and no columns.
    (project.root / "loads" / "2024-04" / f"2024-04-d.{kind}").parent.mkdir()
    (project.root / "loads" / "2024-04" / f"2024-04-d.{kind}").write_bytes(b"")
    configure_loads(project, kind)

    project.sync("user_plans")

    assert project.query(
        "SELECT strftime(start_time, '%m-%d'), plan, region FROM user_plans ORDER BY 1"
    ) == [("01-01", "free", None), ("02-01", "pro", "eu"), ("03-01", None, "us")]
    assert stored_columns(project, "user_plans") == [
        *("user_id", "start_time", "end_time", "plan", "region")
    ]


def stored_columns(project: Project, relation: str) -> list[str]:
    with QuerySession(project.store) as session:
        return list(session.query(f"SELECT * FROM {relation}").columns)


def write_file(path: Path, select: str) -> None:
    """A CSV or Parquet file, as its name ends, holding the rows of a SELECT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = "FORMAT parquet" if path.suffix == ".parquet" else "HEADER true"
    con = duckdb.connect()
    con.execute(f"COPY ({select}) TO {quote_string(str(path))} ({options})")
    con.close()


def a_plan(user: str, plan: str) -> str:
    return f"SELECT '{user}' AS user_id, '{plan}' AS plan, '2024-01-01' AS valid_from"


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_file_names_with_glob_characters_are_read_once_each(project: Project, kind: str) -> None:
    # As globs, `plans[1]` names plans1 and `plans-*` names every plans- file; here they
    # are only names, and each of the four files is read once.
    loads = project.root / "loads"
    write_file(loads / f"plans[1].{kind}", a_plan("u1", "free"))
    write_file(loads / f"plans1.{kind}", a_plan("u2", "pro"))
    write_file(loads / f"plans-*.{kind}", a_plan("u3", "team"))
    write_file(loads / f"plans-2.{kind}", a_plan("u4", "basic"))
    configure_plans(project, path=f"loads/*.{kind}", kind=kind)

    assert project.sync("user_plans").rows_read == 4
    assert project.query("SELECT user_id, plan FROM user_plans ORDER BY 1") == [
        *(("u1", "free"), ("u2", "pro"), ("u3", "team"), ("u4", "basic"))
    ]


def test_a_path_naming_a_file_with_brackets_reads_that_file(project: Project) -> None:
    # `plans[1].csv` exists as written, so the path is that file, not a glob for plans1.csv.
    write_file(project.root / "plans[1].csv", a_plan("u1", "free"))
    write_file(project.root / "plans1.csv", a_plan("u2", "pro"))
    configure_plans(project, path="plans[1].csv")

    project.sync("user_plans")

    assert project.query("SELECT user_id, plan FROM user_plans") == [("u1", "free")]


def test_a_file_name_duckdb_cannot_read_is_refused_by_name(project: Project) -> None:
    # A name holding `[` goes to DuckDB as a glob, and its globs never match a backslash.
    write_file(project.root / "loads" / "plans\\[1].csv", a_plan("u1", "free"))
    configure_plans(project, path="loads/*.csv")

    refusal = re.escape("plans\\[1].csv, whose path holds both a backslash and")
    with pytest.raises(SourceError, match=refusal):
        project.sync("user_plans")


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_folder_named_like_a_column_leaves_the_files_columns_alone(
    project: Project, kind: str
) -> None:
    # Hive-style folder names (`plan=free`) are only folders: each file's plan is its own,
    # and `batch` is no column.
    loads = project.root / "loads"
    write_file(loads / "plan=free" / "batch=1" / f"a.{kind}", a_plan("u1", "pro"))
    write_file(loads / "plan=free" / "batch=2" / f"b.{kind}", a_plan("u2", "team"))
    write_file(loads / "plan=basic" / "batch=1" / f"c.{kind}", a_plan("u3", "free"))
    configure_plans(project, path=f"loads/**/*.{kind}", kind=kind)

    project.sync("user_plans")

    assert project.query("SELECT user_id, plan FROM user_plans ORDER BY 1") == [
        *(("u1", "pro"), ("u2", "team"), ("u3", "free"))
    ]
    assert stored_columns(project, "user_plans") == ["user_id", "start_time", "end_time", "plan"]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_path_matching_only_empty_files_says_they_are_empty(project: Project, kind: str) -> None:
    # Two exports that failed, each leaving an empty file.
    (project.root / "loads").mkdir()
    for name in ("a", "b"):
        (project.root / "loads" / f"{name}.{kind}").write_bytes(b"")
    configure_plans(project, path=f"loads/*.{kind}", kind=kind)

    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")

    assert str(raised.value) == (
        f"source `files`: table `user_plans`: {project.root}/loads/*.{kind} matches only "
        "empty files (2), so there are no rows and no columns to read; check `path` in "
        "[sources.files], or sync once the files are written"
    )


def two_parquet_files(project: Project, rows: int, row_group_size: int | None = None) -> Path:
    """loads/a.parquet and loads/b.parquet, alike, configured as the plans; the folder."""
    loads = project.root / "loads"
    loads.mkdir()
    plans = pa.table(
        {
            "user_id": [f"u{number}" for number in range(rows)],
            "plan": ["free"] * rows,
            "valid_from": ["2024-01-01"] * rows,
        }
    )
    for name in ("a", "b"):
        pq.write_table(
            plans, loads / f"{name}.parquet", compression="none", row_group_size=row_group_size
        )
    configure_plans(project, path="loads/*.parquet", kind="parquet")
    return loads


def test_a_parquet_file_damaged_partway_is_named(project: Project) -> None:
    # Zeros over the middle of b.parquet: its footer reads, its pages do not.
    loads = two_parquet_files(project, rows=300_000, row_group_size=50_000)
    damaged = bytearray((loads / "b.parquet").read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 5000] = bytes(5000)
    (loads / "b.parquet").write_bytes(bytes(damaged))

    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")

    # Between the two is DuckDB's reason, which does not name the file.
    message = str(raised.value)
    assert message.startswith(
        f"source `files`: reading table `user_plans` from Parquet files {loads}/*.parquet "
        "failed partway: "
    )
    assert message.endswith(
        f"; the file {loads}/b.parquet is damaged: write it again, or move it out of the "
        "files `path` in [sources.files] matches"
    )


def test_a_csv_that_is_not_utf8_is_a_one_line_error(project: Project) -> None:
    (project.root / "plans.csv").write_bytes(
        "user_id,plan,valid_from\nü1,café,2024-01-01\n".encode("latin-1")
    )
    configure_plans(project)

    result = project.cli("sync", "--all", check=False)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    plans = project.root / "plans.csv"
    assert result.stderr.strip() == (
        f"pitsync: error: source `files`: cannot read the header of table `user_plans` from "
        f"CSV files {plans}: line 2 of {plans}: Invalid unicode (byte sequence mismatch) "
        "detected. This file is not utf-8 encoded; save the file as UTF-8"
    )


def test_a_late_row_with_a_field_too_many_is_named_by_its_line(project: Project) -> None:
    # The header is line 1, so the rows after it end at line GOOD_ROWS + 1.
    write_csv(project, ["8,pro,5,2024-02-01 00:00:00,eu"])
    configure_plans(project)

    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")

    plans = project.root / "plans.csv"
    assert str(raised.value) == (
        f"source `files`: cannot read table `user_plans` from CSV files {plans}: line "
        f"{GOOD_ROWS + 2} of {plans}: Expected Number of Columns: 4 Found: 5; correct or "
        "remove that row"
    )


def refusal_of_csv(project: Project, text: str) -> tuple[Path, str]:
    """The refusal of a sync of plans.csv holding `text`: the file, and the message."""
    plans = project.root / "plans.csv"
    plans.write_text(text, encoding="utf-8")
    configure_plans(project)
    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")
    return plans, str(raised.value)


@pytest.mark.parametrize(
    ("rows", "line", "found"),
    [
        (["u1,free,2024-01-01", "u2,pro", "u3,pro,2024-02-01"], 3, 2),
        (["u1,free,2024-01-01", "u2,pro,2024-02-01,eu"], 3, 4),
    ],
    ids=["field-too-few", "field-too-many"],
)
def test_a_small_csv_with_a_row_of_another_width_names_that_row(
    project: Project, rows: list[str], line: int, found: int
) -> None:
    # DuckDB's sniffer read the file as one column named `user_id,plan,valid_from`, and
    # the message said `user_id` was missing and to change `id_column`.
    plans, refusal = refusal_of_csv(project, "user_id,plan,valid_from\n" + "\n".join(rows) + "\n")

    assert refusal == (
        f"source `files`: {plans} {MISREAD}: line {line} of {plans}: "
        f"Expected Number of Columns: 3 Found: {found}; correct or remove that row"
    )


MISREAD = (
    "is not read as the columns its first line names, as no delimiter splits all its lines "
    "alike: its header must be its first line, and each row must have as many fields"
)


def test_a_row_of_another_width_in_one_file_of_many_is_named_not_taken_for_its_header(
    project: Project,
) -> None:
    # DuckDB took b.csv's wide last row for its header: u2 and u3 were lost without a
    # word, and u3's values became properties.
    loads = project.root / "loads"
    loads.mkdir()
    (loads / "a.csv").write_text("user_id,plan,valid_from\nu1,pro,2024-01-01\n")
    (loads / "b.csv").write_text("user_id,plan,valid_from\nu2,free,2024-02-01\nu3,x,2024-02-01,y\n")
    configure_plans(project, path="loads/*.csv")

    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")

    b = loads / "b.csv"
    assert str(raised.value).startswith(f"source `files`: {b} {MISREAD}: line 3 of {b}: ")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Plans, exported 2024\nuser_id,plan,valid_from\nu1,pro,2024-01-01\n", MISREAD),
        ("\nuser_id,plan,valid_from\nu1,pro,2024-01-01\n", "starts with a blank line"),
    ],
    ids=["title-line", "blank-line"],
)
def test_a_line_above_the_header_is_refused_not_skipped(
    project: Project, text: str, said: str
) -> None:
    # DuckDB skips lines it finds odd, and would skip rows so too: the header is line 1.
    plans, refusal = refusal_of_csv(project, text)

    assert refusal.startswith(f"source `files`: {plans} {said}")


def test_a_comment_line_above_the_header_is_refused_not_read_as_a_comment(
    project: Project,
) -> None:
    # DuckDB's sniffer, meeting one, took `#` for a comment all through the file: the
    # row `#u2` and the end of `a #b` were lost, and `"#x"` became `"`.
    plans, refusal = refusal_of_csv(
        project, '# exported\nuser_id,plan,valid_from\nu1,"#x",2024-01-01\n#u2,pro,2024-01-01\n'
    )

    assert refusal == (
        f"source `files`: {plans} starts with a comment line ('# exported'); its header "
        "must be its first line: remove the comment"
    )


def test_values_holding_a_hash_are_values_as_written(project: Project) -> None:
    (project.root / "plans.csv").write_text(
        "user_id,plan,valid_from\nu1,#gold,2024-01-01\n#u2,pro,2024-01-01\n"
        'u3,"#x",2024-01-01\nu4,a #b,2024-01-01\n',
        encoding="utf-8",
    )
    configure_plans(project)

    project.sync("user_plans")

    assert project.query("SELECT user_id, plan FROM user_plans ORDER BY 1") == [
        ("#u2", "pro"),
        ("u1", "#gold"),
        ("u3", "#x"),
        ("u4", "a #b"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '"user_id","valid_from","Revenue, USD"\n"u1","2024-01-01","1,234"\n',
        'user_id,valid_from," plan "\nu1,2024-01-01,free\n',
        "'user_id','valid_from','plan'\n'u1','2024-01-01','free'\n",
        'user_id\tvalid_from\t"a\tb"\nu1\t2024-01-01\tx\n',
        'user_id;valid_from;"say ""hi"""\nu1;2024-01-01;x\n',
    ],
    ids=["quoted-delimiter", "quoted-blanks", "single-quotes", "quoted-tab", "escaped-quote"],
)
def test_a_csv_header_of_quoted_names_is_no_row_of_another_width(
    project: Project, text: str
) -> None:
    # Split at every delimiter, `"Revenue, USD"` was two names, and every row one too few.
    (project.root / "plans.csv").write_text(text, encoding="utf-8")
    configure_plans(project)

    project.sync("user_plans")

    assert project.query("SELECT user_id, start_time::VARCHAR FROM user_plans") == [
        ("u1", "2024-01-01 00:00:00+00")
    ]


def test_a_row_of_another_width_is_named_below_a_header_of_quoted_names(
    project: Project,
) -> None:
    plans, refusal = refusal_of_csv(
        project,
        '"user_id","valid_from","Revenue, USD"\nu1,2024-01-01,"1,234"\nu2,2024-01-01,5,x\n',
    )

    assert f"line 3 of {plans}: Expected Number of Columns: 3 Found: 4" in refusal


def test_a_parquet_column_named_by_a_blank_is_a_name_like_any_other(project: Project) -> None:
    # DuckDB keeps it as written: it names a property, unlike an empty name.
    path = project.root / "plans.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "valid_from": ["2024-01-01"], " ": ["x"]}), path)
    configure_plans(project, path=path.name, kind="parquet")

    project.sync("user_plans")

    assert project.query('SELECT " " FROM user_plans') == [("x",)]


def write_csv_without_a_name(path: Path) -> None:
    path.write_text("user_id,valid_from,,column2\nu1,2024-01-01,x,real\n", encoding="utf-8")


def write_parquet_without_a_name(path: Path) -> None:
    names = {"user_id": ["u1"], "valid_from": ["2024-01-01"], "": ["x"], "C2": ["y"]}
    pq.write_table(pa.table(names), path)


@pytest.mark.parametrize(
    ("kind", "write"),
    [("csv", write_csv_without_a_name), ("parquet", write_parquet_without_a_name)],
)
def test_a_column_without_a_name_is_refused_by_its_number(
    project: Project, kind: str, write: Callable[[Path], None]
) -> None:
    # DuckDB would call it `column2` (or `C2`), and the file's own column of that name would
    # become `column2_1` (or fail as a duplicate).
    path = project.root / f"plans.{kind}"
    write(path)
    configure_plans(project, path=path.name, kind=kind)

    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")

    assert str(raised.value) == (
        f"source `files`: {path} has a column without a name (column 3); name it in the file"
    )


def test_a_parquet_file_damaged_at_its_start_is_named_too(project: Project) -> None:
    # The first read fails, before any row: DuckDB's reason names no file there either.
    loads = two_parquet_files(project, rows=1000)
    damaged = bytearray((loads / "b.parquet").read_bytes())
    damaged[20:200] = b"\xaa" * 180
    (loads / "b.parquet").write_bytes(bytes(damaged))

    with pytest.raises(SourceError) as raised:
        project.sync("user_plans")

    # Whether a.parquet gave its rows first (the read then fails partway) is the threads'.
    message = str(raised.value)
    assert message.startswith(
        f"source `files`: reading table `user_plans` from Parquet files {loads}/*.parquet failed"
    )
    assert message.endswith(
        f"; the file {loads}/b.parquet is damaged: write it again, or move "
        "it out of the files `path` in [sources.files] matches"
    )


def test_a_csv_column_left_empty_keeps_its_type_in_a_mirror_run(project: Project) -> None:
    # An empty column is sniffed as text; it holds no value, so it tells nothing of a type:
    # seats stays an integer, and the run makes every seats undefined.
    plans = project.root / "plans.csv"
    plans.write_text("user_id,plan,seats,valid_from\nu1,free,1,2024-01-01\nu2,pro,3,2024-01-01\n")
    configure_plans(project, mode="mirror")
    project.sync("user_plans")

    plans.write_text("user_id,plan,seats,valid_from\nu1,free,,2024-01-01\nu2,pro,,2024-01-01\n")
    emptied = project.sync("user_plans")
    plans.write_text("user_id,plan,seats,valid_from\nu1,free,4,2024-01-01\n")
    refilled = project.sync("user_plans")

    assert (emptied.updated, refilled.updated, refilled.deleted) == (2, 1, 1)
    assert project.query("SELECT user_id, seats FROM user_plans") == [("u1", 4)]


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("folder", "is a folder"),
        ("/dev/null", "is not a regular file"),
        ("nowhere", "not found"),
        ("plans.csv", 'is not a DuckDB file (CSV or Parquet files are read with type = "csv"'),
        ("empty.duckdb", "is an empty file"),
        ("crm.sqlite", 'is an SQLite database: read it with type = "sqlite"'),
    ],
)
def test_a_duckdb_source_path_that_is_no_file_says_what_it_is(
    project: Project, path: str, said: str
) -> None:
    (project.root / "folder").mkdir()
    (project.root / "plans.csv").write_text("user_id,valid_from\nu1,2024-01-01\n")
    (project.root / "empty.duckdb").write_bytes(b"")
    sqlite3.connect(project.root / "crm.sqlite").execute("CREATE TABLE plans (user_id TEXT)")
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        config.replace('path = "warehouse.duckdb"', f'path = "{path}"'), encoding="utf-8"
    )

    with pytest.raises(SourceError) as raised:
        project.sync("plans")

    assert f"DuckDB file {project.root / path} {said}" in str(raised.value)


@pytest.mark.backends("duckdb")
def test_a_duckdb_source_with_a_schema_looks_for_tables_there(project: Project) -> None:
    project.source_sql(
        "CREATE SCHEMA crm",
        "CREATE TABLE crm.accounts (user_id VARCHAR, valid_from DATE, plan VARCHAR)",
        "CREATE TABLE plans (user_id VARCHAR, valid_from DATE, plan VARCHAR)",
    )
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        config.replace('path = "warehouse.duckdb"', 'path = "warehouse.duckdb"\nschema = "crm"')
    )

    with pytest.raises(SourceError) as raised:
        project.sync("plans")

    assert str(raised.value).startswith(
        "source `warehouse`: table `plans` not found in schema `crm` of "
    )
    assert "tables are: accounts;" in str(raised.value)


@pytest.mark.backends("duckdb")
def test_a_duckdb_source_finds_its_schema_and_table_without_regard_to_case(
    project: Project,
) -> None:
    project.source_sql(
        "CREATE SCHEMA crm",
        'CREATE TABLE crm."Accounts" (user_id VARCHAR, valid_from DATE, plan VARCHAR)',
        "INSERT INTO crm.accounts VALUES ('u1', '2024-01-01', 'pro')",
    )
    project.configure(
        "accounts",
        kind="user_history",
        id_column="user_id",
        start_time="valid_from",
        **{"from": "ACCOUNTS"},
    )
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        config.replace('path = "warehouse.duckdb"', 'path = "warehouse.duckdb"\nschema = "CRM"')
    )

    assert project.sync("accounts").inserted == 1
    assert project.query("SELECT user_id, plan FROM accounts") == [("u1", "pro")]


def test_a_quoted_empty_csv_value_is_empty_text_and_an_empty_field_undefined(
    project: Project,
) -> None:
    # As PostgreSQL's COPY reads CSV: `""` is a value, the empty string; nothing between
    # the commas is NULL, which makes the property undefined (rule 5).
    plans = project.root / "plans.csv"
    plans.write_text(
        'user_id,plan,seats,valid_from\nu1,"",1,2024-01-01\nu1,,2,2024-02-01\n'
        'u2,"",3,2024-01-01\nu2,"",4,2024-01-01\n'
    )
    configure_plans(project)

    project.sync("user_plans")

    assert project.query("SELECT user_id, plan, seats FROM user_plans ORDER BY ALL") == [
        ("u1", "", 1),
        ("u1", None, 2),  # DuckDB orders NULL last
        ("u2", "", 4),  # the tie: both plans are "", a value, so seats decides
    ]


def test_a_csv_row_longer_than_duckdbs_default_limit_is_read_whole(project: Project) -> None:
    # DuckDB refuses a row past 2 MB unless told otherwise: a long note stopped the run.
    note = "n" * 5_000_000
    (project.root / "plans.csv").write_text(
        f"user_id,plan,seats,valid_from\nu1,{note},1,2024-01-01\nu2,pro,2,2024-01-01\n"
    )
    configure_plans(project)

    project.sync("user_plans")

    rows = project.query("SELECT user_id, length(plan) FROM user_plans ORDER BY ALL")
    assert rows == [("u1", 5_000_000), ("u2", 3)]


def write_header_and_row(path: Path, names: list[str], values: list[str]) -> None:
    """A CSV or Parquet file, as its name ends, of one row under these column names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        path.write_text(",".join(names) + "\n" + ",".join(values) + "\n", encoding="utf-8")
    else:
        pq.write_table(pa.table([pa.array([value]) for value in values], names=names), path)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
@pytest.mark.parametrize(("first", "second"), [("plan", "plan"), ("plan", "PLAN"), ("p", "p")])
def test_a_file_with_two_columns_of_one_name_is_refused_as_a_database_table_is(
    project: Project, kind: str, first: str, second: str
) -> None:
    # DuckDB's readers would call the second one `PLAN_1`, a property nobody named; a
    # PostgreSQL table with `plan` and `PLAN` is refused, and so is the file.
    write_file(project.root / "loads" / f"a.{kind}", a_plan("u1", "free"))
    names, values = ["user_id", first, second, "valid_from"], ["u2", "pro", "x", "2024-02-01"]
    write_header_and_row(project.root / "loads" / f"b.{kind}", names, values)
    configure_plans(project, path=f"loads/*.{kind}", kind=kind)

    result = project.cli("sync", "--all", check=False)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"pitsync: error: source `files`: {project.root / 'loads' / f'b.{kind}'} has the "
        f"columns `{first}` and `{second}`, which the store cannot tell apart (it compares "
        "names without case); rename one"
    )
    assert not project.store.exists()


@pytest.mark.backends("duckdb")
@pytest.mark.parametrize(
    ("declared", "value"),
    [
        ("UHUGEINT", "340282366920938463463374607431768211455"),  # would wrap to -1
        ("TIMETZ", "TIMETZ '12:00:00+05'"),  # would lose its offset
        ("BIT", "BIT '101'"),  # would be DuckDB's bytes, not the bits
        ("TIMETZ[]", "[TIMETZ '12:00:00+05']"),
        ("STRUCT(flags BIT)", "{'flags': BIT '1'}"),
        ("BIGNUM", "12345678901234567890123456789012345678901234567890"),
        ("UNION(n INTEGER, s VARCHAR)", "12"),
    ],
)
def test_a_duckdb_column_of_a_type_the_store_cannot_keep_is_refused_by_name(
    project: Project, declared: str, value: str
) -> None:
    # A PostgreSQL timetz or bit column is refused too: no source changes a value silently.
    project.source_sql(
        f"CREATE TABLE plans (user_id VARCHAR, valid_from DATE, odd {declared})",
        f"INSERT INTO plans VALUES ('u1', DATE '2024-01-01', {value})",
    )
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")

    with pytest.raises(ConfigError) as raised:
        project.sync("plans")

    assert str(raised.value).startswith("source `warehouse`: column `odd` of table `plans` has ")
    assert "which pitsync cannot map; cast it in a view" in str(raised.value)
    assert not project.store.exists()


@pytest.mark.backends("duckdb")
def test_a_duckdb_hugeint_is_kept_to_its_last_digit_or_refused_past_38(project: Project) -> None:
    # A sum() in a DuckDB view is a HUGEINT: 38 digits are a DECIMAL(38, 0) exactly; 39
    # are more than the store's type holds, and the run stops, changing nothing.
    project.source_sql(
        "CREATE TABLE plans (user_id VARCHAR, valid_from DATE, total HUGEINT)",
        "INSERT INTO plans VALUES ('u1', DATE '2024-01-01', -" + "9" * 38 + ")",
    )
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")

    project.sync("plans")

    assert project.query("SELECT CAST(total AS VARCHAR) FROM plans") == [
        ("-99999999999999999999999999999999999999",)
    ]
    project.source_sql("INSERT INTO plans VALUES ('u2', DATE '2024-01-01', 1" + "0" * 38 + ")")
    before = project.query("SELECT * FROM runs")
    with pytest.raises(SourceError, match="100000000000000000000000000000000000000"):
        project.sync("plans")
    assert project.query("SELECT count(*) FROM plans") == [(1,)]
    assert len(project.query("SELECT * FROM runs")) == len(before) + 1


@pytest.mark.backends("duckdb", "parquet")
def test_a_json_column_stays_json_as_from_postgresql(project: Project) -> None:
    # As text, the value would be a JSON string: "{\"k\": 1}" in JSON output and events.
    project.source_sql(
        "CREATE TABLE plans (user_id VARCHAR, valid_from DATE, settings JSON)",
        """INSERT INTO plans VALUES ('u1', DATE '2024-01-01', '{"k": 1}'), """
        "('u2', DATE '2024-01-01', NULL)",
    )
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")

    project.sync("plans")

    assert project.query(
        "SELECT user_id, typeof(settings), settings->>'k' FROM plans ORDER BY 1"
    ) == [
        ("u1", "JSON", "1"),
        ("u2", "JSON", None),
    ]
    shown = json.loads(
        project.cli(
            "query", "SELECT settings FROM plans ORDER BY user_id", "--format", "json"
        ).stdout
    )
    assert shown == [{"settings": {"k": 1}}, {"settings": None}]


def test_csv_header_names_alike_but_for_blanks_are_refused(project: Project) -> None:
    # DuckDB trims the names of a header written `plan, plan`, then calls the second plan_1.
    (project.root / "plans.csv").write_text(
        "user_id,valid_from,plan, plan\nu1,2024-01-01,free,pro\n", encoding="utf-8"
    )
    configure_plans(project)

    result = project.cli("sync", "--all", check=False)

    assert result.returncode == 1
    assert "has the columns `plan` and ` plan`, which the store cannot tell apart" in (
        result.stderr
    )


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_folder_is_read_by_column_name_and_its_files_checked(project: Project, kind: str) -> None:
    # Read as a glob is: a column only a later file has is a property, not left out.
    write_file(project.root / "loads" / f"a.{kind}", a_plan("u1", "free"))
    write_file(
        project.root / "loads" / "2024" / f"b.{kind}",
        "SELECT 'u2' AS user_id, 'pro' AS plan, '2024-01-01' AS valid_from, 5 AS seats",
    )
    configure_plans(project, path="loads", kind=kind)

    project.sync("user_plans")

    assert project.query("SELECT user_id, plan, seats FROM user_plans ORDER BY 1") == [
        ("u1", "free", None),
        ("u2", "pro", 5),
    ]
    names, values = ["user_id", "plan", "Plan", "valid_from"], ["u3", "pro", "x", "2024-02-01"]
    write_header_and_row(project.root / "loads" / f"c.{kind}", names, values)
    result = project.cli("sync", "--all", check=False)
    assert result.returncode == 1
    assert "has the columns `plan` and `Plan`" in result.stderr


def test_a_parquet_time_kept_in_utc_is_read_as_its_time(project: Project) -> None:
    # Parquet marks such a TIME as adjusted to UTC and DuckDB reads it with an offset,
    # always +00: nothing is lost in reading it as a time, as a DuckDB TIMETZ would lose.
    write_file(
        project.root / "loads" / "a.parquet",
        "SELECT 'u1' AS user_id, '2024-01-01' AS valid_from, TIMETZ '09:30:00+00' AS opens",
    )
    configure_plans(project, path="loads/*.parquet", kind="parquet")

    project.sync("user_plans")

    assert project.query("SELECT CAST(opens AS VARCHAR) FROM user_plans") == [("09:30:00",)]


@pytest.mark.backends("duckdb")
@pytest.mark.parametrize(
    ("declared", "kept", "too_long"),
    [
        ("HUGEINT[]", "[{}]", "[{}]"),
        ("STRUCT(total HUGEINT)", "{{'total': {}}}", "{{'total': {}}}"),
    ],
)
def test_a_hugeint_inside_a_list_or_struct_is_kept_or_refused_as_one_alone(
    project: Project, declared: str, kept: str, too_long: str
) -> None:
    thirty_eight, thirty_nine = "-" + "9" * 38, "1" + "0" * 38
    project.source_sql(
        f"CREATE TABLE plans (user_id VARCHAR, valid_from DATE, total {declared})",
        f"INSERT INTO plans VALUES ('u1', DATE '2024-01-01', {kept.format(thirty_eight)})",
    )
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")

    project.sync("plans")

    assert thirty_eight in project.query("SELECT CAST(total AS VARCHAR) FROM plans")[0][0]
    project.source_sql(
        f"INSERT INTO plans VALUES ('u2', DATE '2024-01-01', {too_long.format(thirty_nine)})"
    )
    with pytest.raises(SourceError, match=thirty_nine):
        project.sync("plans")
    assert project.query("SELECT count(*) FROM plans") == [(1,)]


def test_a_csv_column_of_whole_numbers_past_38_digits_stops_the_run(project: Project) -> None:
    # DuckDB's CSV reader takes whole numbers past 64 bits as HUGEINT.
    thirty_eight, thirty_nine = "-" + "9" * 38, "1" + "0" * 38
    path = project.root / "plans.csv"
    path.write_text(f"user_id,valid_from,total\nu1,2024-01-01,{thirty_eight}\n", encoding="utf-8")
    configure_plans(project)

    project.sync("user_plans")

    assert project.query("SELECT CAST(total AS VARCHAR) FROM user_plans") == [(thirty_eight,)]
    path.write_text(path.read_text(encoding="utf-8") + f"u2,2024-01-01,{thirty_nine}\n")
    with pytest.raises(SourceError, match=thirty_nine):
        project.sync("user_plans")
    assert project.query("SELECT count(*) FROM user_plans") == [(1,)]


@pytest.mark.backends("duckdb")
def test_a_struct_field_named_like_a_type_keeps_its_name_and_value(project: Project) -> None:
    # Only a HUGEINT type becomes a DECIMAL(38, 0); text inside a field's name is a name.
    project.source_sql(
        "CREATE TABLE plans AS SELECT 'u1' AS user_id, DATE '2024-01-01' AS valid_from, "
        "{'amount (HUGEINT)': 5, 'n': 1::HUGEINT, 'flag (BIT)': 2} AS totals"
    )
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")

    project.sync("plans")

    assert project.query(
        "SELECT totals['amount (HUGEINT)'], CAST(totals.n AS VARCHAR), totals['flag (BIT)'] "
        "FROM plans"
    ) == [(5, "1", 2)]


def test_a_file_a_linked_folder_reaches_again_is_read_once(project: Project) -> None:
    write_file(project.root / "loads" / "2024-01" / "a.csv", a_plan("u1", "free"))
    write_file(project.root / "loads" / "2024-02" / "b.csv", a_plan("u2", "pro"))
    (project.root / "loads" / "latest").symlink_to("2024-02")
    configure_plans(project, path="loads", kind="csv")

    assert project.sync("user_plans").rows_read == 2
    configure_plans(project, path="loads/**/*.csv", kind="csv")
    assert project.sync("user_plans").rows_read == 2


@pytest.mark.backends("duckdb")
def test_a_json_property_keeps_every_digit_in_properties_and_hidden_events(
    project: Project,
) -> None:
    # DuckDB's JSON functions would read 12345678901234567890.5 as a double (…567000.0).
    value = '{"m": 12345678901234567890.5, "p": 1.10}'
    project.source_sql(
        "CREATE TABLE ev (distinct_id VARCHAR, time TIMESTAMPTZ, event VARCHAR, j JSON)",
        f"INSERT INTO ev VALUES ('u1', '2024-01-01 00:00:00+00', 'e', '{value}')",
        "CREATE TABLE plans (user_id VARCHAR, valid_from DATE, meta JSON, plan VARCHAR)",
        f"INSERT INTO plans VALUES ('u1', DATE '2024-01-01', '{value}', 'free')",
    )
    project.configure("ev", kind="events")
    project.configure("plans", kind="user_history", id_column="user_id", start_time="valid_from")

    project.sync("ev")
    project.sync("plans")

    expected = {"m": Decimal("12345678901234567890.5"), "p": Decimal("1.10")}
    [(event,)] = project.query("SELECT CAST(properties AS VARCHAR) FROM events")
    assert json.loads(event, parse_float=Decimal) == {"j": expected}
    [(hidden,)] = project.query(
        "SELECT CAST(properties AS VARCHAR) FROM all_events WHERE event = 'plans'"
    )
    assert json.loads(hidden, parse_float=Decimal) == {"meta": expected, "plan": "free"}


def test_a_csv_row_too_long_is_named_by_its_file_not_by_a_wrong_line(tmp_path: Path) -> None:
    # DuckDB says `Line: 1` of a row too long wherever it is (here line 4); the limit is
    # made small to meet it with a short file.
    path = tmp_path / "long.csv"
    path.write_text("a,b\n1,2\n3,4\n5," + "x" * 3000 + "\n", encoding="utf-8")
    with pytest.raises(duckdb.Error) as raised:
        duckdb.sql(
            f"SELECT * FROM read_csv('{path}', header = true, max_line_size = 2100)"
        ).fetchall()

    assert reason(raised.value) == (
        f"a row of {path} is longer than 64 MB, the longest CSV row pitsync reads; shorten "
        "its values, or keep the table as Parquet"
    )
