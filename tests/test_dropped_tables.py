"""Tables the configuration no longer names, and `pitsync drop-table`.

Each story seeds a warehouse, syncs it with the real command, changes pitsync.toml as a
user would (a rename, a removal), and checks what the store holds after `drop-table`,
with every expected value worked out by hand from the seeded rows.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pitsync.config import load_config
from pitsync.connectors import stored_tables
from tests.conftest import Project, sql_row

# The user history `a`, read in append mode by its `loaded_at` cursor. u has two rows at
# 1 Jan that differ (a conflict: `pro` wins as the greater value, `basic` is kept as a
# hidden event), then `team` from 1 Mar; v is `free` from 1 Feb; a row without an id is
# quarantined.
A_ROWS = [
    ("u", "2024-01-01 00:00:00+00", "basic", "2024-06-01 00:00:00+00"),
    ("u", "2024-01-01 00:00:00+00", "pro", "2024-06-01 00:00:00+00"),
    ("u", "2024-03-01 00:00:00+00", "team", "2024-06-01 00:00:00+00"),
    ("v", "2024-02-01 00:00:00+00", "free", "2024-06-01 00:00:00+00"),
    (None, "2024-01-05 00:00:00+00", "pro", "2024-06-01 00:00:00+00"),
]
A_SETTINGS = {
    "kind": "user_history",
    "id_column": "uid",
    "start_time": "st",
    "mode": "append",
    "cursor": "loaded_at",
}
# Every event the history gives, under its table's name: three intervals and the loser.
HIDDEN_EVENTS = [
    ("u", "2024-01-01T00:00:00+00:00", {"plan": "basic"}),
    ("u", "2024-01-01T00:00:00+00:00", {"plan": "pro"}),
    ("u", "2024-03-01T00:00:00+00:00", {"plan": "team"}),
    ("v", "2024-02-01T00:00:00+00:00", {"plan": "free"}),
]
ALL_EVENTS_SQL = (
    "SELECT event, distinct_id, time, properties FROM all_events "
    "ORDER BY event, distinct_id, time, CAST(properties AS VARCHAR)"
)
# The internal tables that may keep rows of a table by its name; the runs and the
# quarantine keep theirs on purpose (see pitsync/connectors/stored_tables.py).
KEEP_HISTORY = {"runs", "quarantine"}


def seed_a(project: Project) -> None:
    """The warehouse table `a`, configured under its own name and synced."""
    project.source_sql(
        "CREATE TABLE a (uid VARCHAR, st TIMESTAMPTZ, plan VARCHAR, loaded_at TIMESTAMPTZ)",
        "INSERT INTO a VALUES " + ", ".join(map(sql_row, A_ROWS)),
    )
    project.configure("a", **A_SETTINGS)
    project.cli("sync", "--all")


def engage(project: Project, *records: dict[str, Any]) -> None:
    path = project.root / "updates.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    project.cli("engage", str(path))


def renamed(project: Project) -> Project:
    """`a` synced, a profile set by engage, then `a` renamed to plan_history in the
    configuration, reading the same warehouse table."""
    seed_a(project)
    engage(project, {"$distinct_id": "u", "$set": {"color": "red"}})
    del project.tables["a"]
    project.configure("plan_history", **{"from": "a"}, **A_SETTINGS)
    return project


def query_json(project: Project, sql: str) -> list[dict[str, Any]]:
    return json.loads(project.cli("query", sql, "--format", "json").stdout)


def hidden_events(project: Project) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (row["event"], row["distinct_id"], row["time"], row["properties"])
        for row in query_json(project, ALL_EVENTS_SQL)
    ]


def user_profiles(project: Project) -> dict[str, dict[str, Any]]:
    rows = query_json(project, "SELECT distinct_id, properties FROM user_profiles")
    return {row["distinct_id"]: row["properties"] for row in rows}


def held_of(store: Path, name: str) -> dict[str, int]:
    """How many rows each internal table keyed by table name holds of `name`, and the
    relations named after it, found from the store's own listing of its columns."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        keyed = con.execute(
            "SELECT table_name FROM duckdb_columns() WHERE schema_name = '_pitsync' "
            "AND column_name = 'table_name' ORDER BY table_name"
        ).fetchall()
        held = {
            table: con.execute(
                f"SELECT count(*) FROM _pitsync.{table} WHERE table_name = ?", [name]
            ).fetchone()[0]
            for (table,) in keyed
        }
        relations = con.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
            "UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views() "
            "WHERE NOT internal"
        ).fetchall()
    finally:
        con.close()
    suffixes = (f".{name}", f"__{name}")
    held.update({relation: 1 for (relation,) in relations if relation.endswith(suffixes)})
    return held


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# --- a renamed history table ---------------------------------------------------------------


def test_a_rename_is_refused_naming_the_left_over_table_and_how_to_drop_it(
    project: Project,
) -> None:
    renamed(project)

    result = project.cli("sync", "--all", check=False)

    assert_user_error(
        result,
        "table `plan_history`: property `plan` already modeled by history table `a`",
        "`a` is no longer configured: it is a table left in the store from an earlier "
        "configuration, and `pitsync drop-table a` removes it",
        # The one-line warning of `sync --all` names it too.
        "WARNING: the store holds tables no longer configured: a;",
    )
    assert "drop or rename the column" not in result.stderr


def test_dropping_the_old_table_leaves_nothing_of_it_but_its_runs(project: Project) -> None:
    renamed(project)
    # Before: `a` holds the catalog entry, watermark, conflict loser and quarantined row,
    # its intervals, the latest loads it may read again, its view, and two runs (the
    # engage run is under `profiles`).
    assert held_of(project.store, "a") == {
        "catalog": 1,
        "event_identity": 0,
        "quarantine": 1,
        "runs": 1,
        "superseded": 1,
        "watermarks": 1,
        "_pitsync.intervals__a": 1,
        "_pitsync.loads__a": 1,
        "main.a": 1,
    }

    result = project.cli("drop-table", "a")

    # Three intervals: u pro, u team, v free.
    assert result.stdout.splitlines() == [
        "dropped a (user_history, 3 rows) from the store; its runs stay (run 3 records the drop)"
    ]
    assert held_of(project.store, "a") == {
        "catalog": 0,
        "event_identity": 0,
        "quarantine": 1,
        "runs": 2,  # the sync, and the drop
        "superseded": 0,
        "watermarks": 0,
    }
    assert hidden_events(project) == []
    # u keeps what engage set, and no plan; v was known only from `a`.
    assert user_profiles(project) == {"u": {"color": "red"}}
    runs = json.loads(project.cli("runs", "--table", "a", "--format", "json").stdout)
    assert [(r["mode"], r["status"], r["deleted"]) for r in runs] == [
        ("append", "succeeded", 0),
        ("drop-table", "succeeded", 3),
    ]


def test_the_dropped_name_is_no_relation_for_a_point_in_time_query(project: Project) -> None:
    renamed(project)
    project.cli("drop-table", "a")

    result = project.cli(
        "query",
        "SELECT * FROM a FOR SYSTEM_TIME AS OF TIMESTAMP '2024-02-15 00:00:00+00'",
        check=False,
    )

    assert_user_error(result, "unknown relation `a`")


def test_the_renamed_table_syncs_once_the_old_one_is_dropped(project: Project) -> None:
    renamed(project)
    project.cli("drop-table", "a")

    result = project.cli("sync", "--all")

    assert "no longer configured" not in result.stderr
    at_mid_february = query_json(
        project,
        "SELECT uid, plan FROM plan_history "
        "FOR SYSTEM_TIME AS OF TIMESTAMP '2024-02-15 00:00:00+00' ORDER BY uid",
    )
    assert at_mid_february == [{"uid": "u", "plan": "pro"}, {"uid": "v", "plan": "free"}]
    assert hidden_events(project) == [("plan_history", *event) for event in HIDDEN_EVENTS]
    # Now is past 1 Mar 2024: u is on team, with the colour engage set.
    assert user_profiles(project) == {
        "u": {"color": "red", "plan": "team"},
        "v": {"plan": "free"},
    }


# --- a table still configured, a removed events table, a profile table ---------------------


def test_a_table_still_configured_is_synced_again_from_scratch(project: Project) -> None:
    seed_a(project)

    dropped = project.cli("drop-table", "a")
    project.cli("sync", "--all")

    assert "a is still configured: the next sync loads it again from scratch" in dropped.stdout
    runs = json.loads(project.cli("runs", "--table", "a", "--format", "json").stdout)
    # The watermark went with the table: the third run reads every row, as the first did,
    # and stores the three intervals again.
    assert [(r["mode"], r["watermark_before"], r["inserted"]) for r in runs] == [
        ("append", None, 3),
        ("drop-table", None, 0),
        ("append", None, 3),
    ]
    assert hidden_events(project) == [("a", *event) for event in HIDDEN_EVENTS]


def seed_logins(project: Project, name: str) -> None:
    """An events table `name` of two logins of u, read in append mode by `loaded_at`
    without an insert id, synced twice: the second run keeps the events' identity."""
    project.source_sql(
        f"CREATE TABLE {name} (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ, "
        "device VARCHAR, loaded_at TIMESTAMPTZ)",
        f"INSERT INTO {name} VALUES "
        "('login', 'u', '2024-01-10 00:00:00+00', 'phone', '2024-06-01 00:00:00+00'), "
        "('login', 'u', '2024-02-10 00:00:00+00', 'laptop', '2024-06-01 00:00:00+00')",
    )
    project.configure(name, kind="events", mode="append", cursor="loaded_at")
    project.cli("sync", "--table", name)
    project.cli("sync", "--table", name)


def test_dropping_an_events_table_removes_its_events_and_keeps_the_rest(
    project: Project,
) -> None:
    seed_a(project)
    seed_logins(project, "logins")
    seed_logins(project, "old_logins")
    del project.tables["old_logins"]
    project.write_config()
    assert held_of(project.store, "old_logins")["event_identity"] == 1

    result = project.cli("drop-table", "old_logins")

    assert "dropped old_logins (events, 2 rows)" in result.stdout
    assert "still configured" not in result.stdout
    assert held_of(project.store, "old_logins") == {
        "catalog": 0,
        "event_identity": 0,
        "quarantine": 0,
        "runs": 3,  # two syncs and the drop
        "superseded": 0,
        "watermarks": 0,
    }
    events = query_json(project, "SELECT device FROM events ORDER BY time")
    assert events == [{"device": "phone"}, {"device": "laptop"}]  # those of `logins`
    assert len(hidden_events(project)) == len(HIDDEN_EVENTS) + 2
    assert held_of(project.store, "logins")["event_identity"] == 1


def test_dropping_a_profile_table_keeps_the_properties_it_set(project: Project) -> None:
    project.source_sql(
        "CREATE TABLE crm (user_id VARCHAR, name VARCHAR)",
        "INSERT INTO crm VALUES ('w', 'Wes'), ('x', 'Xia')",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    project.cli("sync", "--all")

    result = project.cli("drop-table", "crm")

    # Its rows were `$set`s like any update's: the profiles keep what they set.
    assert "dropped crm (user_profiles, 2 rows)" in result.stdout
    assert user_profiles(project) == {"w": {"name": "Wes"}, "x": {"name": "Xia"}}
    assert held_of(project.store, "crm") == {
        "catalog": 0,
        "event_identity": 0,
        "quarantine": 0,
        "runs": 2,
        "superseded": 0,
        "watermarks": 0,
    }


# --- what cannot be dropped ---------------------------------------------------------------


def test_dropping_an_unknown_name_lists_the_tables_the_store_holds(project: Project) -> None:
    seed_a(project)
    seed_logins(project, "logins")

    result = project.cli("drop-table", "plan_history", check=False)

    assert_user_error(
        result,
        "the store holds no table `plan_history`; it holds: a (user_history), logins (events)",
    )
    assert held_of(project.store, "a")["catalog"] == 1


def test_dropping_from_a_store_not_yet_made_is_a_user_error(project: Project) -> None:
    project.configure("a", **A_SETTINGS)

    result = project.cli("drop-table", "a", check=False)

    assert_user_error(result, f"the store {project.store} does not exist")
    assert not project.store.exists()


def test_sync_all_warns_in_one_line_of_a_table_removed_from_the_configuration(
    project: Project,
) -> None:
    seed_a(project)
    del project.tables["a"]
    seed_logins(project, "logins")

    result = project.cli("sync", "--all")

    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert warnings == [
        "pitsync: WARNING: the store holds tables no longer configured: a; they answer "
        "queries and own their properties until `pitsync drop-table NAME` removes them"
    ]


def test_sync_all_says_nothing_of_stored_tables_while_all_are_configured(
    project: Project,
) -> None:
    seed_a(project)

    result = project.cli("sync", "--all")

    assert "WARNING" not in result.stderr


def test_a_table_renamed_only_in_case_is_refused_until_the_old_spelling_is_dropped(
    project: Project,
) -> None:
    """The store compares table names without case: `A` is the table it holds as `a`.
    Synced under the new spelling as a table of its own, its rows were read twice."""
    seed_a(project)
    del project.tables["a"]
    project.configure("A", **{"from": "a"}, **A_SETTINGS)

    refused = project.cli("sync", "--all", check=False)

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "table `A`: the store holds it as `a`" in refused.stderr
    assert "pitsync drop-table a" in refused.stderr
    project.cli("drop-table", "a")
    project.cli("sync", "--all")
    # Four hidden events, each once: the three intervals and the loser (the row without
    # an id is quarantined).
    assert [(row["event"], row["distinct_id"]) for row in query_json(project, ALL_EVENTS_SQL)] == [
        ("A", "u"),
        ("A", "u"),
        ("A", "u"),
        ("A", "v"),
    ]


def test_ctrl_c_just_after_the_drop_commits_leaves_it_dropped(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_a(project)

    @contextmanager
    def interrupted_as_it_ends() -> Iterator[None]:
        yield  # the commit has happened
        raise KeyboardInterrupt

    monkeypatch.setattr(stored_tables, "held_while_committing", interrupted_as_it_ends)
    with pytest.raises(KeyboardInterrupt):
        stored_tables.drop_table(load_config(str(project.config_path)), "a", wait=5)
    monkeypatch.undo()

    assert held_of(project.store, "a")["catalog"] == 0
    con = duckdb.connect(str(project.store), read_only=True)
    try:
        runs = con.execute("SELECT mode, status FROM _pitsync.runs ORDER BY run_id").fetchall()
    finally:
        con.close()
    assert runs == [("append", "succeeded"), ("drop-table", "succeeded")]
