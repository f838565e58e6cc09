"""CSV imports of profiles: real files without a header row, each rule with hand-worked
profiles read back through the public relations.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitsync.config import Config, load_config
from pitsync.connectors import csv_import
from pitsync.connectors.csv_import import MAX_ROWS, import_csv, preview_csv
from pitsync.connectors.profile_updates import UpdateReport, apply_file
from pitsync.errors import ConfigError, SourceError
from pitsync.queries.execute import QuerySession
from tests.conftest import arrow_held_per_batch, growth_per_batch


class Store:
    """A store with nothing but profiles; CSV files written next to it and imported."""

    def __init__(self, root: Path):
        self.root = root
        self.config_path = root / "pitsync.toml"
        self.config_path.write_text(f'[store]\npath = "{root / "store.duckdb"}"\n')
        self.files = 0

    @property
    def config(self) -> Config:
        return load_config(str(self.config_path))

    def csv(self, text: str) -> Path:
        """The file exactly as given: no header row, the line endings as written."""
        self.files += 1
        path = self.root / f"profiles-{self.files}.csv"
        path.write_bytes(text.encode("utf-8"))
        return path

    def import_text(self, text: str, columns: dict[int, str], **options: Any) -> UpdateReport:
        options.setdefault("id_column", 1)
        return import_csv(self.config, self.csv(text), columns=columns, **options)

    def engage(self, *records: dict[str, Any]) -> None:
        path = self.root / "engage.jsonl"
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        apply_file(self.config, str(path))

    def rows(self, sql: str) -> list[tuple]:
        with QuerySession(self.config.store_path) as session:
            return session.query(sql).fetchall()

    def users(self) -> dict[str, dict[str, Any]]:
        rows = self.rows("SELECT distinct_id, properties FROM user_profiles")
        return {distinct_id: json.loads(properties) for distinct_id, properties in rows}

    def last_seen(self) -> dict[str, str | None]:
        rows = self.rows(
            "SELECT distinct_id, strftime(last_seen, '%Y-%m-%dT%H:%M:%S') FROM user_profiles"
        )
        return dict(rows)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_mapped_columns_of_a_headerless_file_are_imported(store: Store) -> None:
    report = store.import_text(
        "u1,Ann,internal note,ann@example.com\nu2,Bob,other note,bob@example.com\n",
        {2: "name", 4: "email"},
    )
    assert store.users() == {
        "u1": {"name": "Ann", "email": "ann@example.com"},
        "u2": {"name": "Bob", "email": "bob@example.com"},
    }
    # An import is no sign of activity: new profiles have not been seen.
    assert store.last_seen() == {"u1": None, "u2": None}
    assert (report.records, report.outcome.applied, report.rejected) == (2, 2, 0)
    assert store.rows("SELECT mode, rows_read, quarantined FROM runs") == [("import-csv", 2, 0)]


def test_existing_profiles_are_updated_and_keep_what_the_file_leaves_out(store: Store) -> None:
    store.engage(
        {
            "$distinct_id": "u1",
            "$time": "2024-05-01T10:00:00Z",
            "$set": {"name": "Old", "plan": "free", "city": "Paris"},
        }
    )
    # Column 3 is empty, so plan keeps its value; seats is new; city is not in the file.
    store.import_text("u1,New,,3\n", {2: "name", 3: "plan", 4: "seats"})
    assert store.users() == {"u1": {"name": "New", "plan": "free", "city": "Paris", "seats": 3}}
    assert store.last_seen() == {"u1": "2024-05-01T10:00:00"}


def test_a_row_refused_for_the_property_limit_is_quarantined_with_its_text(
    store: Store,
) -> None:
    store.engage({"$distinct_id": "u1", "$set": {f"p{i}": i for i in range(1999)}})

    report = store.import_text("u2,Bob,x\nu1,Ann,x\n", {2: "name", 3: "tag"})

    assert report.refused_for_limit == 1
    assert store.users()["u2"] == {"name": "Bob", "tag": "x"}
    assert store.rows("SELECT reason, row_data FROM quarantine") == [
        ("line 2: update refused: user u1 would have 2001 properties, more than 2000", '"u1,Ann,x"')
    ]


def test_rows_apply_in_file_order(store: Store) -> None:
    store.import_text("u1,first,a\nu2,other,b\nu1,second,\n", {2: "name", 3: "tag"})
    assert store.users() == {
        "u1": {"name": "second", "tag": "a"},
        "u2": {"name": "other", "tag": "b"},
    }


def test_the_email_column_is_the_id_without_an_id_column(store: Store) -> None:
    report = store.import_text(
        "Ann,ann@example.com\nNo mail,\n", {1: "name", 2: "$email"}, id_column=None
    )
    assert store.users() == {"ann@example.com": {"name": "Ann", "$email": "ann@example.com"}}
    assert report.rejections == ["line 2: the id column 2 ($email) is empty"]


def test_without_an_id_each_row_is_a_new_profile_and_a_warning_says_so(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pitsync.connectors.csv_import"):
        store.import_text("Ann,Paris\nAnn,Paris\nBob,\n", {1: "name", 2: "city"}, id_column=None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "each of its 3 rows gets a generated id" in warnings[0]
    users = store.users()
    assert sorted(users.values(), key=json.dumps) == [
        {"name": "Ann", "city": "Paris"},
        {"name": "Ann", "city": "Paris"},
        {"name": "Bob"},
    ]
    assert len({uuid.UUID(distinct_id) for distinct_id in users}) == 3


def test_a_group_key_imports_group_profiles(store: Store) -> None:
    store.import_text("c1,Acme,50\nc2,Initech,\n", {2: "name", 3: "seats"}, group_key="company")
    rows = store.rows("SELECT group_key, group_id, properties, last_seen FROM group_profiles")
    assert sorted((k, i, json.loads(p), seen) for k, i, p, seen in rows) == [
        ("company", "c1", {"name": "Acme", "seats": 50}, None),
        ("company", "c2", {"name": "Initech"}, None),
    ]
    assert store.users() == {}


def test_a_row_with_an_empty_id_is_rejected_and_the_others_apply(store: Store) -> None:
    report = store.import_text("u1,Ann\n,Nobody\nu3,Cy\n", {2: "name"})
    assert store.users() == {"u1": {"name": "Ann"}, "u3": {"name": "Cy"}}
    assert (report.records, report.outcome.applied, report.rejected) == (3, 2, 1)
    assert report.rejections == ["line 2: the id column 1 is empty"]
    assert store.rows("SELECT reason, row_data FROM quarantine") == [
        ("line 2: the id column 1 is empty", '",Nobody"')
    ]
    assert store.rows("SELECT rows_read, quarantined FROM runs") == [(3, 1)]


def test_a_rejected_row_keeps_its_cells_as_csv_or_a_ragged_one_its_text(store: Store) -> None:
    text = 'u1,1,2\n,"q",z\n"",  x  ,"a""b"\n,only\n'
    store.import_text(text, {2: "a", 3: "b"})
    # Of the file's width, the cells written back, quoted where one holds a quote (an
    # empty quoted id is an empty cell); line 4 has two cells of three, kept as read.
    assert store.rows("SELECT reason, row_data FROM quarantine") == [
        ("line 2: the id column 1 is empty", '",q,z"'),
        ("line 3: the id column 1 is empty", '",  x  ,\\"a\\"\\"b\\""'),
        ("line 4: the id column 1 is empty", '",only"'),
    ]


def test_a_column_is_numbers_only_when_every_value_is_a_plain_decimal(store: Store) -> None:
    store.import_text(
        "u1,02134,42,7,1e3,10\nu2,10001,-3.5,7a,5,\nu3,,0,8,6,0.25\n",
        {2: "zip", 3: "score", 4: "code", 5: "amount", 6: "ratio"},
    )
    assert store.users() == {
        "u1": {"zip": "02134", "score": 42, "code": "7", "amount": "1e3", "ratio": 10},
        "u2": {"zip": "10001", "score": -3.5, "code": "7a", "amount": "5"},
        "u3": {"score": 0, "code": "8", "amount": "6", "ratio": 0.25},
    }


def test_blank_cells_neither_decide_a_column_nor_set_anything(store: Store) -> None:
    # Column 2: numbers and blanks (spaces, empty, left out), so numbers. Column 3: only
    # blanks, so nothing is set. Column 4: a blank and a word, so text.
    store.import_text("u1,5,  ,\nu2,   ,,x\nu3,\n", {2: "n", 3: "blank", 4: "word"})

    # u3's row sets nothing, and still makes the profile, as any row with an id does.
    assert store.users() == {"u1": {"n": 5}, "u2": {"word": "x"}, "u3": {}}


def test_an_id_of_spaces_is_an_id_as_in_an_engage_file(store: Store) -> None:
    # Rule 7: ids are not trimmed. Line 3 holds only padding, so it is skipped; line 4's
    # id is empty.
    store.engage({"$distinct_id": "  ", "$set": {"from": "engage"}})
    report = store.import_text('" ",one\n  ,two\n , \n,three\n', {2: "word"})

    assert store.users() == {" ": {"word": "one"}, "  ": {"from": "engage", "word": "two"}}
    assert report.records == 3
    assert report.rejections == ["line 4: the id column 1 is empty"]


def test_lines_count_blank_rows_and_a_quoted_value_is_one_row(store: Store) -> None:
    # Line 2 is blank; line 3 holds a comma and a newline in quotes; line 4 has no id;
    # line 5 leaves its last cell out.
    text = 'u1,Ann,x\r\n\r\nu3,"Cy, Jr.\r\nthe second",z\r\n,Nobody,w\r\nu2,Bob\r\n'
    report = store.import_text(text, {2: "name", 3: "tag"})
    assert store.users() == {
        "u1": {"name": "Ann", "tag": "x"},
        "u2": {"name": "Bob"},
        "u3": {"name": "Cy, Jr.\r\nthe second", "tag": "z"},
    }
    assert report.records == 4
    assert report.rejections == ["line 4: the id column 1 is empty"]


def test_rows_keep_their_lines_across_blocks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small blocks, so pyarrow reads ahead past the short rows it hands back. Row i is
    # short when i is a multiple of 7 (padded: no name), else has no id when i is a
    # multiple of 10; u1 comes back on the last line.
    monkeypatch.setattr(csv_import, "BLOCK_BYTES", 256)
    short = {i for i in range(1, 301) if i % 7 == 0}
    no_id = {i for i in range(1, 301) if i % 10 == 0} - short
    rows = [
        f"u{i}" if i in short else f"{'' if i in no_id else f'u{i}'},n{i}" for i in range(1, 301)
    ]
    report = store.import_text("\n".join([*rows, "u1,last"]) + "\n", {2: "name"})
    assert report.rejections == [f"line {i}: the id column 1 is empty" for i in sorted(no_id)]
    expected = {f"u{i}": {} if i in short else {"name": f"n{i}"} for i in range(2, 301)}
    expected = {key: value for key, value in expected.items() if int(key[1:]) not in no_id}
    assert store.users() == {**expected, "u1": {"name": "last"}}


def test_memory_held_between_blocks_does_not_grow_with_the_file(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2000 rows of about 1 kB in blocks of 20 kB, every third row short (they are read
    # apart): some 100 blocks, 2 MB in all. What is held is the block at hand and 32 read
    # ahead, and a few hundred bytes for each block DuckDB has read (its registration); a
    # block kept to the end would add 20 kB each time.
    monkeypatch.setattr(csv_import, "BLOCK_BYTES", 20_000)
    held = arrow_held_per_batch(monkeypatch)
    rows = [f"u{i},{'x' * 1000}" + ("" if i % 3 else ",1") for i in range(2000)]

    report = store.import_text("\n".join(rows) + "\n", {2: "a", 3: "b"})

    assert report.outcome.applied == 2000 and len(held) > 75
    assert growth_per_batch(held) < 10_000


def test_short_rows_are_taken_block_by_block_when_no_row_has_the_files_width(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first row is the widest; every other row leaves its trailing cells out, so
    # pyarrow skips them all. They must go to the store a block at a time, in order,
    # not wait for the end of the file.
    monkeypatch.setattr(csv_import, "BLOCK_BYTES", 20_000)
    path = tmp_path / "short.csv"
    rows = ["u0,n0,1"] + [f"u{i},{'x' * 100}{i}" for i in range(1, 3001)]
    path.write_text("\n".join(rows) + "\n")
    plan = csv_import.plan_import(path, 1, {2: "name", 3: "seats"}, None)

    taken = [len(stager.keywords["ragged"]) for stager in csv_import.row_batches(plan)]

    assert sum(taken) == 3000
    assert max(taken) < 1000, taken  # a block holds some 190 rows; a few read ahead
    report = import_csv(store.config, path, id_column=1, columns={2: "name", 3: "seats"})
    assert report.outcome.applied == 3001
    users = store.users()
    assert users["u0"] == {"name": "n0", "seats": 1}
    assert users["u2999"] == {"name": "x" * 100 + "2999"}


IDS = st.sampled_from(["u1", "u2"])
CELLS = st.sampled_from(["a", "b", ""])
# A row after the first: its id, then up to three cells (the file's width is four).
SHORT_OR_WHOLE = st.tuples(IDS, st.lists(CELLS, min_size=0, max_size=3))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.tuples(IDS, st.lists(CELLS, min_size=3, max_size=3)),
    rest=st.lists(SHORT_OR_WHOLE, min_size=10, max_size=60),
)
def test_rows_short_or_whole_apply_in_file_order_across_blocks(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    first: tuple[str, list[str]],
    rest: list[tuple[str, list[str]]],
) -> None:
    # Blocks of 64 bytes: a few rows each, the short ones read apart by pyarrow and put
    # back in their place. The oracle: each row, in file order, sets its non-empty cells.
    monkeypatch.setattr(csv_import, "BLOCK_BYTES", 64)
    store = Store(tmp_path_factory.mktemp("csv"))
    rows = [first, *rest]
    text = "".join(",".join([user, *cells]) + "\n" for user, cells in rows)

    store.import_text(text, {2: "p2", 3: "p3", 4: "p4"})

    expected: dict[str, dict[str, str]] = {}
    for user, cells in rows:
        properties = expected.setdefault(user, {})
        properties.update({f"p{n}": cell for n, cell in enumerate(cells, start=2) if cell})
    assert store.users() == expected


def test_an_empty_file_imports_nothing(store: Store) -> None:
    report = store.import_text("", {2: "name"})
    assert (report.records, report.outcome.applied) == (0, 0)
    assert store.users() == {}
    assert store.rows("SELECT mode, rows_read FROM runs") == [("import-csv", 0)]


def test_a_row_wider_than_the_file_is_rejected(store: Store, tmp_path: Path) -> None:
    # DuckDB finds the columns from the rows at the start, so the wide row comes after them.
    path = tmp_path / "wide.csv"
    duckdb.sql(
        f"COPY (SELECT 'u' || i, 'n' || i FROM range(1, 30001) t(i)) TO '{path}' (HEADER false)"
    )
    with path.open("a") as file:
        file.write("late,a,b,c\nlast,Z\n")
    report = import_csv(store.config, path, id_column=1, columns={2: "name"})
    assert report.rejections == [
        "line 30001: the row has 4 cells, more than the file's 2 columns: "
        "quote a value that holds a comma"
    ]
    assert (report.records, report.outcome.applied) == (30002, 30001)
    users = store.users()
    assert (users["u30000"], users["last"], "late" in users) == (
        {"name": "n30000"},
        {"name": "Z"},
        False,
    )


def test_strings_are_cut_to_255_bytes_and_names_to_255_characters(store: Store) -> None:
    store.import_text("u1," + "é" * 200 + "\n", {2: "n" * 300})
    assert store.users() == {"u1": {"n" * 255: "é" * 127}}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"columns": {5: "name"}}, r"--column 5: .* has 3 columns"),
        ({"columns": {2: "name"}, "id_column": 4}, r"--id-column 4: .* has 3 columns"),
        ({"columns": {0: "name"}}, r"--column 0: there is no such column"),
        ({"columns": {2: "name", 3: "name"}}, r"columns 2 and 3 are both mapped to name"),
        ({"columns": {}}, r"map at least one column"),
        ({"columns": {2: "name"}, "group_key": ""}, r"the group key is empty"),
        ({"columns": {2: "$last_seen"}}, r"column 2 is mapped to \$last_seen, which pitsync"),
    ],
)
def test_a_wrong_mapping_is_refused_before_the_store_is_opened(
    store: Store, options: dict[str, Any], message: str
) -> None:
    options.setdefault("id_column", 1)
    with pytest.raises(ConfigError, match=message):
        import_csv(store.config, store.csv("u1,Ann,x\n"), **options)
    assert not store.config.store_path.exists()


def test_a_file_of_one_column_is_said_to_need_commas(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"has 1 column .* must be comma-separated"):
        import_csv(store.config, store.csv("u1;Ann;x\n"), id_column=1, columns={2: "name"})


def test_a_file_that_cannot_be_read_is_refused_before_the_store_is_opened(store: Store) -> None:
    not_utf8 = store.root / "latin1.csv"
    not_utf8.write_bytes("u1,Zoë\n".encode("latin-1"))
    with pytest.raises(SourceError, match="cannot read .* not utf-8 encoded"):
        import_csv(store.config, not_utf8, id_column=1, columns={2: "name"})
    with pytest.raises(SourceError, match="no such file"):
        import_csv(store.config, store.root / "missing.csv", id_column=1, columns={2: "name"})
    with pytest.raises(SourceError, match="a folder, not a file"):
        import_csv(store.config, store.root, id_column=1, columns={2: "name"})
    assert not store.config.store_path.exists()


def test_a_dry_run_reports_without_changing_and_the_preview_shows_the_values(
    store: Store,
) -> None:
    path = store.csv("u1,Ann,42\n,Nobody,1\nu2,,7\n")
    columns = {2: "name", 3: "age"}
    report = import_csv(store.config, path, id_column=1, columns=columns, dry_run=True)
    assert (report.records, report.rejected, report.outcome.applied) == (3, 1, 0)
    assert report.rejections == ["line 2: the id column 1 is empty"]
    assert not store.config.store_path.exists()
    assert preview_csv(path, id_column=1, columns=columns) == [
        ("u1", {"name": "Ann", "age": 42}),
        ("u2", {"age": 7}),
    ]
    assert preview_csv(path, id_column=None, columns=columns, limit=1) == [
        (None, {"name": "Ann", "age": 42})
    ]
    # Of a group key's profiles too, before there is a store and once there is one.
    for _ in range(2):
        report = import_csv(
            store.config, path, id_column=1, columns=columns, group_key="Team", dry_run=True
        )
        assert (report.records, report.rejected, report.outcome.applied) == (3, 1, 0)
        store.engage({"$group_key": "team", "$group_id": "t1", "$set": {"a": 1}})


@pytest.mark.slow
def test_more_than_a_million_rows_is_refused_and_nothing_changes(
    store: Store, tmp_path: Path
) -> None:
    store.engage({"$distinct_id": "u1", "$set": {"plan": "free"}})
    before = store.rows("SELECT run_id, mode, rows_read FROM runs")
    path = tmp_path / "big.csv"
    duckdb.sql(
        f"COPY (SELECT 'u' || i, 'pro' FROM range({MAX_ROWS + 1}) t(i)) TO '{path}' (HEADER false)"
    )
    with pytest.raises(SourceError, match="has 1,000,001 rows, more than the 1,000,000"):
        import_csv(store.config, path, id_column=1, columns={2: "plan"})
    assert store.users() == {"u1": {"plan": "free"}}
    assert store.rows("SELECT run_id, mode, rows_read FROM runs") == before
    assert store.rows("SELECT count(*) FROM quarantine") == [(0,)]


def test_import_csv_command_line(tmp_path: Path) -> None:
    """The real command: a preview that changes nothing, then the import."""
    import subprocess
    import sys

    config = tmp_path / "pitsync.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "store.duckdb"}"\n')
    (tmp_path / "people.csv").write_text("u1,Ann,02139\nu2,Bob,10001\n")
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(config), "import-csv"]
    command += [str(tmp_path / "people.csv"), "--id-column", "1", "--column", "2=name"]
    command += ["--column", "3=zip"]

    preview = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, check=True)
    assert '{"name": "Ann", "zip": "02139"}' in preview.stdout
    assert "dry run, nothing applied: 2 of 2 records would be applied; 0 rejected" in (
        preview.stdout
    )
    assert not (tmp_path / "store.duckdb").exists()

    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "2 of 2 records applied to 2 profiles" in done.stdout
    twice = subprocess.run(
        [*command[:-2], "--column", "2=zip"], capture_output=True, text=True, check=False
    )
    assert twice.returncode == 2 and "mapped twice" in twice.stderr
    # Two columns to one name are options that do not go together too: exit 2.
    same_name = subprocess.run(
        [*command[:-2], "--column", "3=name"], capture_output=True, text=True, check=False
    )
    assert same_name.returncode == 2 and "are both mapped to name" in same_name.stderr
