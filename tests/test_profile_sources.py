"""Profiles from warehouse tables and history tables, and reading them back.

Warehouse profile tables run on every source type; the reading commands (`users`,
`feed`, `profile`, `delete-profiles`) run as real subprocesses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Project, company_history, configure_companies, insert_rows, sql_row

ALL_BACKENDS = ("duckdb", "parquet", "postgres", "sqlite")

CRM_DDL = (
    "CREATE OR REPLACE TABLE crm_users (user_id VARCHAR, name VARCHAR, seats INTEGER, "
    "email VARCHAR, updated_at TIMESTAMPTZ)"
)


def crm_users(project: Project, rows: list[tuple], **settings: Any) -> None:
    project.source_sql(
        CRM_DDL,
        *(["INSERT INTO crm_users VALUES " + ", ".join(map(sql_row, rows))] if rows else []),
    )
    project.configure("crm_users", kind="user_profiles", id_column="user_id", **settings)


def ann_synced_in_append_mode(project: Project) -> None:
    """One CRM user, u1 (Ann), synced by an append run with the `updated_at` cursor."""
    crm_users(
        project,
        [("u1", "Ann", 3, "ann@example.com", "2024-01-01 00:00:00+00")],
        mode="append",
        cursor="updated_at",
    )
    project.sync("crm_users")


def users(project: Project) -> dict[str, dict[str, Any]]:
    rows = project.query("SELECT distinct_id, properties FROM user_profiles ORDER BY 1")
    return {distinct_id: json.loads(properties) for distinct_id, properties in rows}


@pytest.mark.backends(*ALL_BACKENDS)
def test_profile_table_rows_set_properties(project: Project) -> None:
    crm_users(
        project,
        [
            ("u1", "Ann", 3, "ann@example.com", "2024-01-01 00:00:00+00"),
            ("u2", "Bob", None, None, "2024-01-02 00:00:00+00"),
            (None, "Nobody", 1, None, "2024-01-03 00:00:00+00"),
        ],
    )
    record = project.sync("crm_users")
    assert (record.rows_read, record.quarantined, record.entities_changed) == (3, 1, 2)
    profiles = users(project)
    # Without a cursor, updated_at is a property like any other (its text varies by source).
    assert {name: set(properties) for name, properties in profiles.items()} == {
        "u1": {"name", "seats", "email", "updated_at"},
        "u2": {"name", "updated_at"},  # NULL columns set nothing
    }
    assert {k: v for k, v in profiles["u1"].items() if k != "updated_at"} == {
        "name": "Ann",
        "seats": 3,
        "email": "ann@example.com",
    }
    assert profiles["u2"]["name"] == "Bob"


@pytest.mark.backends(*ALL_BACKENDS)
def test_profile_table_in_append_mode_sets_only_new_rows(project: Project) -> None:
    ann_synced_in_append_mode(project)
    # A later row for u1 changes seats and clears email; u2 is new.
    insert_rows(
        project,
        "crm_users",
        [
            ("u1", "Ann", 5, None, "2024-02-01 00:00:00+00"),
            ("u2", "Bob", 1, "bob@example.com", "2024-02-01 00:00:00+00"),
        ],
    )
    record = project.sync("crm_users")
    assert record.entities_changed == 2
    assert users(project) == {
        "u1": {"name": "Ann", "seats": 5},
        "u2": {"name": "Bob", "seats": 1, "email": "bob@example.com"},
    }


def test_rows_of_one_id_apply_in_cursor_order(project: Project) -> None:
    crm_users(
        project,
        [
            ("u1", "Later", 2, None, "2024-03-01 00:00:00+00"),
            ("u1", "Earlier", 1, "a@b.c", "2024-01-01 00:00:00+00"),
        ],
        mode="append",
        cursor="updated_at",
    )
    record = project.sync("crm_users")
    assert record.conflicts == 1
    assert users(project) == {"u1": {"name": "Later", "seats": 2}}


def test_profile_tables_refuse_mirror_and_history_keys(project: Project) -> None:
    from pitsync.errors import ConfigError

    crm_users(project, [], mode="mirror")
    with pytest.raises(ConfigError, match="profile tables sync in mode"):
        project.config()
    crm_users(project, [], start_time="updated_at")
    with pytest.raises(ConfigError, match="`start_time` does not apply"):
        project.config()


def test_a_profile_table_column_named_last_seen_is_refused_before_anything_changes(
    project: Project,
) -> None:
    from pitsync.errors import ConfigError

    project.source_sql(
        'CREATE TABLE crm_users (user_id VARCHAR, "$last_seen" DATE)',
        "INSERT INTO crm_users VALUES ('u1', DATE '1999-01-01')",
    )
    project.configure("crm_users", kind="user_profiles", id_column="user_id")
    with pytest.raises(ConfigError, match=r"source column `\$last_seen` would be a property"):
        project.sync("crm_users")
    assert not project.store.exists()


def test_a_history_column_named_last_seen_is_refused_before_anything_changes(
    project: Project,
) -> None:
    """A history's latest values are profile properties too: its `$last_seen` column would
    show in `profile` as the time of a last update that never was."""
    from pitsync.errors import ConfigError

    project.source_sql(
        'CREATE TABLE user_plans (user_id VARCHAR, valid_from TIMESTAMPTZ, "$last_seen" DATE)',
        "INSERT INTO user_plans VALUES ('u1', TIMESTAMPTZ '2024-01-01 00:00:00+00', "
        "DATE '1999-01-01')",
    )
    project.configure(
        "user_plans", kind="user_history", id_column="user_id", start_time="valid_from"
    )
    with pytest.raises(ConfigError, match=r"source column `\$last_seen` would be a property"):
        project.sync("user_plans")
    assert not project.store.exists()


HISTORY_ROWS = [
    ("c1", "free", 3, "2024-01-01 00:00:00+00", None),
    ("c1", "pro", 10, "2024-06-01 00:00:00+00", None),
    ("c1", None, 12, "2099-01-01 00:00:00+00", None),  # a future row applies from its moment
    ("c2", "team", None, "2024-02-01 00:00:00+00", None),
]


def group_profiles(project: Project) -> dict[str, dict[str, Any]]:
    rows = project.query(
        "SELECT group_id, properties FROM group_profiles WHERE group_key = 'company_id' ORDER BY 1"
    )
    return {group_id: json.loads(properties) for group_id, properties in rows}


def test_history_tables_feed_the_profile_with_their_value_now(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.sync("company_plan_history")
    company = {"$group_key": "company_id"}
    engage(
        project,
        {**company, "$group_id": "c1", "$set": {"name": "Acme", "plan": "ignored"}},
        {**company, "$group_id": "c3", "$set": {"name": "Solo"}},
    )
    # History owns plan and seats: its value now wins; NULL (seats of c2) is undefined.
    assert group_profiles(project) == {
        "c1": {"name": "Acme", "plan": "pro", "seats": 10},
        "c2": {"plan": "team"},
        "c3": {"name": "Solo"},
    }


def test_latest_and_point_in_time_side_by_side(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.source_sql(
        "CREATE OR REPLACE TABLE events (event VARCHAR, distinct_id VARCHAR, "
        "company_id VARCHAR, time TIMESTAMPTZ)",
        "INSERT INTO events VALUES ('login', 'ann', 'c1', '2024-03-01 00:00:00+00'), "
        "('login', 'ann', 'c1', '2024-07-01 00:00:00+00')",
    )
    project.configure("product_events", kind="events", **{"from": "events"})
    project.sync("company_plan_history")
    project.sync("product_events")
    rows = project.query(
        "SELECT e.time::DATE::VARCHAR, h.plan AS plan_then, g.properties->>'plan' AS plan_now "
        "FROM events e "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id "
        "LEFT JOIN group_profiles g ON g.group_key = 'company_id' AND g.group_id = e.company_id "
        "ORDER BY e.time"
    )
    assert rows == [("2024-03-01", "free", "pro"), ("2024-07-01", "pro", "pro")]


def engage(project: Project, *records: dict[str, Any]) -> None:
    path = project.root / "updates.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    project.cli("engage", str(path))


def people(project: Project) -> None:
    project.write_config()
    engage(
        project,
        {"$distinct_id": "ann", "$set": {"plan": "pro", "seats": 12, "$email": "a@x.io"}},
        {"$distinct_id": "bob", "$set": {"plan": "free", "seats": 3}},
        {"$distinct_id": "cy", "$set": {"plan": "pro", "seats": 2}},
    )


def test_users_lists_profiles_filtered_on_any_property(project: Project) -> None:
    people(project)
    listed = json.loads(project.cli("users", "--where", "plan = 'pro'", "--format", "json").stdout)
    assert [row["distinct_id"] for row in listed] == ["ann", "cy"]
    assert listed[0]["properties"] == {"$email": "a@x.io", "plan": "pro", "seats": 12}

    big = project.cli(
        "users",
        "--where",
        "CAST(seats AS INTEGER) > 2 AND plan <> 'x'",
        "--limit",
        "1",
        "--format",
        "csv",
    ).stdout.splitlines()
    assert big[0] == '"distinct_id","properties","last_seen"'
    assert len(big) == 2 and big[1].startswith('"ann"')

    refused = project.cli("users", "--where", "1; DROP TABLE x", check=False)
    assert refused.returncode == 1 and "error" in refused.stderr


def test_delete_profiles_keeps_events(project: Project) -> None:
    events_table(
        project,
        "('login', 'bob', now() - INTERVAL 1 DAY)",
    )
    people(project)

    deleted = project.cli("delete-profiles", "--id", "bob", "--id", "nobody")
    assert "1 deleted" in deleted.stdout
    assert [r[0] for r in project.query("SELECT distinct_id FROM user_profiles ORDER BY 1")] == [
        "ann",
        "cy",
    ]
    joined = project.query(
        "SELECT e.distinct_id, p.properties FROM events e "
        "LEFT JOIN user_profiles p ON p.distinct_id = e.distinct_id"
    )
    assert joined == [("bob", None)]  # the event stays, joining as anonymous

    project.cli("delete-profiles", "--where", "plan = 'pro'")
    assert project.query("SELECT count(*) FROM user_profiles") == [(0,)]


@pytest.mark.parametrize("command", ["delete-profiles", "users"])
@pytest.mark.parametrize("condition", ["", "  "])
def test_an_empty_where_is_refused_and_deletes_nothing(
    project: Project, command: str, condition: str
) -> None:
    # `--where "$FILTER"` with the variable unset matched every profile, and deleted them.
    people(project)

    refused = project.cli(command, "--where", condition, check=False)

    assert refused.returncode == 2
    assert "argument --where: the condition is empty" in refused.stderr
    assert project.query("SELECT count(*) FROM user_profiles") == [(3,)]


def test_an_empty_id_to_delete_is_a_usage_error(project: Project) -> None:
    # It was rejected as an update record's would be, and the command exited 0.
    people(project)

    refused = project.cli("delete-profiles", "--id", "bob", "--id", "", check=False)

    assert refused.returncode == 2
    assert "argument --id: the id is empty; give the id of a profile" in refused.stderr
    assert project.query("SELECT count(*) FROM user_profiles") == [(3,)]


@pytest.mark.parametrize("chosen", [["--id", "bob"], ["--where", "true", "--group-key", "team"]])
def test_delete_profiles_without_a_store_says_so_and_makes_none(
    project: Project, chosen: list[str]
) -> None:
    project.write_config()

    refused = project.cli("delete-profiles", *chosen, check=False)

    assert refused.returncode == 1
    assert f"the store {project.store} does not exist, so it holds no profiles" in refused.stderr
    assert not project.store.exists()


def test_delete_profiles_where_sees_no_relation_of_the_run_itself(project: Project) -> None:
    people(project)

    internal = "distinct_id IN (SELECT profile_id FROM __pitsync_run_deleted)"
    refused = project.cli("delete-profiles", "--where", internal, check=False)

    assert refused.returncode == 1
    assert "unknown relation `__pitsync_run_deleted`" in refused.stderr
    assert "__pitsync_run" not in refused.stderr.split("the store has:")[-1]


def test_delete_profiles_where_that_duckdb_cannot_bind_is_one_line(project: Project) -> None:
    people(project)

    refused = project.cli("delete-profiles", "--where", "distinct_id IN (SELECT 1, 2)", check=False)

    assert refused.returncode == 1
    assert refused.stderr.startswith("pitsync: error: the query failed: Binder Error: Subquery")
    assert "Traceback" not in refused.stderr
    assert project.query("SELECT count(*) FROM user_profiles") == [(3,)]


def test_users_of_a_group_key_no_group_has_is_an_error_naming_the_keys(project: Project) -> None:
    # A typo listed no group, as if there were none.
    people(project)

    before_any_group = project.cli("users", "--group-key", "company", check=False)
    engage(project, {"$group_key": "company_id", "$group_id": "c1", "$set": {"tier": "gold"}})
    mistyped = project.cli("users", "--group-key", "company", check=False)
    listed = project.cli("users", "--group-key", "company_id", "--format", "json").stdout

    assert before_any_group.returncode == 1
    assert "no group of key `company` is in the store; it holds no group yet" in (
        before_any_group.stderr
    )
    assert mistyped.returncode == 1
    assert "the group keys are `company_id`" in mistyped.stderr
    assert [row["group_id"] for row in json.loads(listed)] == ["c1"]


@pytest.mark.parametrize("command", ["users", "delete-profiles"])
def test_a_where_comparing_a_property_with_a_number_says_properties_are_text(
    project: Project, command: str
) -> None:
    people(project)

    refused = project.cli(command, "--where", "seats > 2", check=False)
    cast = project.cli(command, "--where", "plan = 1", check=False)

    assert refused.returncode == 1
    assert "Cannot compare values of type VARCHAR" in refused.stderr
    assert "Could not convert string" in cast.stderr and "properties are text" in cast.stderr
    assert "properties are text in --where" in refused.stderr
    assert "CAST(seats AS INTEGER) > 3" in refused.stderr
    assert project.query("SELECT count(*) FROM user_profiles") == [(3,)]


def test_a_where_failing_on_no_text_gets_no_word_about_text(project: Project) -> None:
    people(project)

    refused = project.cli("users", "--where", "distinct_id IN (SELECT 1, 2)", check=False)

    assert refused.returncode == 1
    assert "Subquery" in refused.stderr and "properties are text" not in refused.stderr


@pytest.mark.parametrize("command", ["delete-profiles", "users", "profile", "feed"])
def test_an_empty_group_key_is_a_usage_error_not_a_user(project: Project, command: str) -> None:
    # `--group-key "$KEY"` with KEY unset must not quietly act on the user of that id.
    people(project)
    entity = ["--id", "bob"] if command == "delete-profiles" else ["bob"]
    entity = [] if command == "users" else entity
    refused = project.cli(command, *entity, "--group-key", "", check=False)
    assert refused.returncode == 2 and "a group key cannot be empty" in refused.stderr
    assert project.query("SELECT count(*) FROM user_profiles WHERE distinct_id = 'bob'") == [(1,)]


def test_feed_lists_events_newest_first_within_the_window(project: Project) -> None:
    events_table(
        project,
        "('login', 'ann', now() - INTERVAL 1 DAY), "
        "('purchase', 'ann', now() - INTERVAL 10 DAY), "
        "('login', 'ann', now() - INTERVAL 45 DAY), "
        "('login', 'ann', now() - INTERVAL 100 DAY), "
        "('login', 'bob', now() - INTERVAL 2 DAY), "
        "('login', 'ann', TIMESTAMPTZ '2020-05-05 00:00:00+00')",
    )

    def feed(*options: str) -> list[str]:
        rows = json.loads(project.cli("feed", "ann", *options, "--format", "json").stdout)
        return [row["event"] for row in rows]

    assert feed() == ["login", "purchase"]  # 30 days by default, newest first
    assert feed("--days", "60") == ["login", "purchase", "login"]
    assert feed("--days", "90", "--hide", "login") == ["purchase"]
    assert feed("--from", "2020-05-01T00:00:00Z", "--to", "2020-06-01T00:00:00Z") == ["login"]
    # Read as --at reads text: a zone name, UTC with an offset, a one-digit month.
    assert feed("--from", "2020-05-04 20:00 America/New_York", "--to", "2020-5-6 0:00") == ["login"]
    # 05:29 at UTC+05:30 is 23:59 UTC the day before the login; read as UTC+05, it is after.
    assert feed("--from", "2020-05-05 05:29:00 UTC+05:30", "--to", "2020-05-06") == ["login"]
    assert project.cli("feed", "ann", "--days", "7", check=False).returncode == 2


def test_an_empty_feed_says_only_where_else_to_look(project: Project) -> None:
    events_table(
        project,
        "('login', 'ann', now() - INTERVAL 100 DAY), ('purchase', 'ann', now() - INTERVAL 5 DAY)",
    )

    def told(*options: str) -> str:
        return project.cli("feed", "ann", *options).stderr

    assert told("--hide", "purchase").endswith(
        "in the last 30 days; --hide left out 1 of its events here; "
        "a longer --days, or --from/--to looks further back\n"
    )
    # 90 days is the longest --days; a window of --from/--to is looked in already, and
    # --hide left nothing of it out.
    assert told("--days", "90", "--hide", "purchase").endswith(
        "in the last 90 days; --hide left out 1 of its events here; "
        "--from/--to looks further back\n"
    )
    window = ("--from", "2020-01-01", "--to", "2020-02-01", "--hide", "login", "--hide", "x")
    assert told(*window).endswith("2020-02-01T00:00:00+00:00)\n")


def test_feed_matches_a_numeric_group_key_column_as_text(project: Project) -> None:
    # Ids are text (rule 7): `010` and `10.0` are other groups than `10`, whatever type
    # the events table gives the column.
    project.source_sql(
        "CREATE OR REPLACE TABLE events (event VARCHAR, distinct_id VARCHAR, "
        "time TIMESTAMPTZ, org_id INTEGER)",
        "INSERT INTO events VALUES ('signup', 'u1', now() - INTERVAL 1 DAY, 10), "
        "('signup', 'u2', now() - INTERVAL 1 DAY, 11)",
    )
    project.configure("product_events", kind="events", **{"from": "events"})
    project.sync("product_events")

    def feed(group_id: str) -> list[str]:
        shown = project.cli("feed", group_id, "--group-key", "org_id", "--format", "json")
        return [row["distinct_id"] for row in json.loads(shown.stdout)]

    assert [feed(group_id) for group_id in ("10", "010", "10.0", " 10")] == [["u1"], [], [], []]

    # The key is a name: ASCII letters in another case name the column, as DuckDB reads
    # names; `É` is not `é` there.
    shown = project.cli("feed", "10", "--group-key", "ORG_ID", "--format", "json").stdout
    assert [row["distinct_id"] for row in json.loads(shown)] == ["u1"]
    project.source_sql('ALTER TABLE events ADD COLUMN "Équipe" VARCHAR')
    project.sync("product_events")
    refused = project.cli("feed", "10", "--group-key", "équipe", check=False)
    assert refused.returncode == 1 and "has a `équipe` column" in refused.stderr


def test_profile_shows_updates_and_history_merged(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.sync("company_plan_history")
    engage(
        project,
        {
            "$group_key": "company_id",
            "$group_id": "c1",
            "$set": {"name": "Acme"},
            "$time": "2024-09-01T00:00:00Z",
        },
    )
    shown = json.loads(
        project.cli("profile", "c1", "--group-key", "company_id", "--format", "json").stdout
    )
    assert shown == {
        "name": "Acme",
        "plan": "pro",
        "seats": 10,
        "$last_seen": "2024-09-01T00:00:00+00:00",
    }
    then = project.cli(
        "profile", "c1", "--group-key", "company_id", "--at", "2024-02-01", "--format", "json"
    ).stdout
    assert json.loads(then) == {"plan": "free", "seats": 3}  # history only, at that moment


def test_an_update_shows_until_a_history_starting_later_holds_the_property(
    project: Project,
) -> None:
    # c3's only history row starts in 2099: nothing is known of it before (rule 2), so
    # the plan an update set shows now; from 2099 the history's plan decides.
    company_history(project, [("c3", "future", 1, "2099-01-01 00:00:00+00", None)])
    project.sync("company_plan_history")
    engage(
        project,
        {
            "$group_key": "company_id",
            "$group_id": "c3",
            "$set": {"plan": "now", "name": "Acme"},
            "$time": "2024-09-01T00:00:00Z",
        },
    )

    def shown(*at: str) -> dict[str, Any]:
        command = ("profile", "c3", "--group-key", "company_id", *at, "--format", "json")
        return json.loads(project.cli(*command).stdout)

    assert {name: shown()[name] for name in ("plan", "name")} == {"plan": "now", "name": "Acme"}
    assert "seats" not in shown()
    assert shown("--at", "2099-06-01") == {"plan": "future", "seats": 1}


def test_a_json_null_is_a_defined_value_at_any_moment_as_now(project: Project) -> None:
    # `meta` holds the JSON value null (defined); `note` is NULL (undefined, rule 5).
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id VARCHAR, meta JSON, note VARCHAR, "
        "start_timestamp TIMESTAMPTZ)",
        "INSERT INTO company_plan_history VALUES ('c1', 'null', NULL, '2024-01-01 00:00+00')",
    )
    configure_companies(project, "company_plan_history", "start_timestamp")
    project.sync("company_plan_history")

    for at in ((), ("--at", "2024-06-01")):
        command = ("profile", "c1", "--group-key", "company_id", *at, "--format", "json")
        assert json.loads(project.cli(*command).stdout) == {"meta": None}


def test_a_group_key_in_another_case_is_the_key_the_store_knows(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.sync("company_plan_history")

    # Names compare without case: each spelling below is the synced key company_id, and a
    # key new to the store is spelled as its first record spells it.
    engage(
        project,
        {"$group_key": "Company_ID", "$group_id": "c1", "$set": {"name": "Acme"}},
        {"$group_key": "Team", "$group_id": "t1", "$set": {"a": 1}},
        {"$group_key": "TEAM", "$group_id": "t1", "$set": {"b": 2}},
    )
    keys = project.query("SELECT DISTINCT group_key FROM _pitsync.profiles ORDER BY 1")
    assert keys == [("Team",), ("company_id",)]
    (project.root / "teams.csv").write_text("t1,blue\n", encoding="utf-8")
    project.cli("import-csv", "teams.csv", "--id-column", "1", "--column", "2=color",
                "--group-key", "team")  # fmt: skip

    profile = ("profile", "c1", "--group-key", "COMPANY_ID", "--format", "json")
    shown = json.loads(project.cli(*profile).stdout)
    assert {name: shown[name] for name in ("name", "plan", "seats")} == {
        "name": "Acme",
        "plan": "pro",
        "seats": 10,
    }
    history = project.cli("history", "c1", "--group-key", "COMPANY_ID", "--format", "json")
    assert [row["plan"] for row in json.loads(history.stdout)["company_plan_history"]] == [
        "free",
        "pro",
        None,
    ]
    listed = project.cli("users", "--group-key", "team", "--format", "json").stdout
    assert [row["properties"] for row in json.loads(listed)] == [{"a": 1, "b": 2, "color": "blue"}]

    project.cli("delete-profiles", "--group-key", "TEAM", "--where", "color = 'blue'")
    assert project.query("SELECT count(*) FROM group_profiles WHERE group_id = 't1'") == [(0,)]


def test_profiles_filed_under_a_spelling_before_a_table_spelled_it_otherwise_are_kept(
    project: Project,
) -> None:
    company_history(project, HISTORY_ROWS)
    engage(project, {"$group_key": "Company_ID", "$group_id": "c1", "$set": {"name": "Acme"}})
    project.sync("company_plan_history")  # configured as company_id

    # Each spelling the store holds reaches its own profiles; another one, the table's.
    engage(project, {"$group_key": "COMPANY_ID", "$group_id": "c1", "$set": {"tier": "gold"}})
    filed = project.query(
        "SELECT group_key, properties FROM group_profiles WHERE group_id = 'c1' ORDER BY 1"
    )
    assert [(key, json.loads(properties)) for key, properties in filed] == [
        ("Company_ID", {"name": "Acme"}),
        ("company_id", {"plan": "pro", "seats": 10, "tier": "gold"}),
    ]
    for key, expected in (("Company_ID", {"name"}), ("company_ID", {"plan", "seats", "tier"})):
        shown = json.loads(
            project.cli("profile", "c1", "--group-key", key, "--format", "json").stdout
        )
        assert set(shown) - {"$last_seen"} == expected


def test_of_two_tables_spelling_a_key_the_one_synced_last_spells_it(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.tables["company_plan_history"]["group_key"] = "COMPANY_ID"
    project.write_config()
    project.sync("company_plan_history")
    # The configuration now keys another table by company_id; the old one stays stored.
    project.tables.clear()
    project.source_sql("CREATE TABLE orgs AS SELECT 'c2' AS id, 'retail' AS industry")
    project.configure("orgs", kind="group_profiles", group_key="company_id", id_column="id")
    project.sync("orgs")

    listed = project.cli("users", "--group-key", "Company_Id", "--format", "json").stdout
    assert [(row["group_key"], row["group_id"]) for row in json.loads(listed)] == [
        ("company_id", "c2")
    ]
    # Each spelling a table keeps reaches its own groups.
    listed = project.cli("users", "--group-key", "COMPANY_ID", "--format", "json").stdout
    assert sorted(row["group_id"] for row in json.loads(listed)) == ["c1", "c2"]


def test_group_keys_differ_where_duckdb_tells_names_apart(project: Project) -> None:
    # DuckDB folds the case of ASCII letters alone: `COMPANY_İD` is no spelling of
    # company_id, as Python's lower() would make it (`company_i̇d` with a dot).
    company_history(project, HISTORY_ROWS)
    project.sync("company_plan_history")
    engage(
        project,
        {"$group_key": "COMPANY_İD", "$group_id": "c1", "$set": {"a": 1}},
        {"$group_key": "COMPANY_ID", "$group_id": "c1", "$set": {"b": 2}},
    )
    keys = project.query("SELECT DISTINCT group_key FROM _pitsync.profiles ORDER BY 1")
    assert keys == [("COMPANY_İD",), ("company_id",)]


def test_a_delete_spells_no_group_key(project: Project) -> None:
    # The delete files nothing, so the key is spelled by the first record that files a
    # profile, whether the two come in one file or in two.
    delete = {"$group_key": "company_id", "$group_id": "x", "$delete": ""}
    put = {"$group_key": "Company_ID", "$group_id": "c1", "$set": {"a": 1}}
    project.write_config()
    engage(project, delete, put)
    engage(project, {**put, "$group_id": "c2"})

    keys = project.query("SELECT group_key, profile_id FROM _pitsync.profiles ORDER BY 2")
    assert keys == [("Company_ID", "c1"), ("Company_ID", "c2")]


def test_deleting_ids_without_a_profile_says_how_many(project: Project) -> None:
    people(project)

    result = project.cli("delete-profiles", "--id", "ann", "--id", "nobody", "--id", "ann")

    assert "(1 deleted)" in result.stdout
    assert "1 of the ids given had no profile to delete" in result.stderr
    quiet = project.cli("delete-profiles", "--id", "bob")
    assert "no profile" not in quiet.stderr


def test_deleting_profiles_of_an_unknown_group_key_names_the_known_ones(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.sync("company_plan_history")

    result = project.cli("delete-profiles", "--group-key", "nokey", "--id", "c1", check=False)

    assert result.returncode == 1
    assert "no group of key `nokey` is in the store; the group keys are `company_id`" in (
        result.stderr
    )


def test_a_row_read_again_unchanged_leaves_later_updates(project: Project) -> None:
    ann_synced_in_append_mode(project)
    engage(project, {"$distinct_id": "u1", "$set": {"seats": 100, "vip": True}})

    # The append run reads the boundary row again: no change, so seats stays 100.
    record = project.sync("crm_users")
    assert record.rows_read == 1 and record.entities_changed == 0
    assert users(project)["u1"]["seats"] == 100

    # The warehouse row itself changes: its columns are set again; vip, not a column, stays.
    insert_rows(project, "crm_users", [("u1", "Ann", 4, None, "2024-02-01 00:00:00+00")])
    project.sync("crm_users")
    assert users(project) == {"u1": {"name": "Ann", "seats": 4, "vip": True}}


def test_full_runs_set_only_rows_that_changed(project: Project) -> None:
    project.source_sql(
        "CREATE OR REPLACE TABLE crm (user_id VARCHAR, line VARCHAR, name VARCHAR)",
        "INSERT INTO crm VALUES ('u1', 'a', 'Ann'), ('u2', 'b', 'Bob')",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    assert project.sync("crm").entities_changed == 2
    engage(project, {"$distinct_id": "u1", "$set": {"name": "Annie"}})

    assert project.sync("crm").entities_changed == 0  # the same rows again
    project.source_sql("UPDATE crm SET line = 'c' WHERE user_id = 'u2'")
    assert project.sync("crm").entities_changed == 1
    assert users(project) == {
        "u1": {"line": "a", "name": "Annie"},  # a column named like pitsync's own is fine
        "u2": {"line": "c", "name": "Bob"},
    }


def test_names_inside_a_where_subquery_are_its_own_columns(project: Project) -> None:
    events_table(
        project,
        "('login', 'ann', now() - INTERVAL 1 DAY), ('view', 'bob', now() - INTERVAL 1 DAY)",
    )
    people(project)
    logged_in = "distinct_id IN (SELECT distinct_id FROM events WHERE event = 'login')"
    listed = json.loads(project.cli("users", "--where", logged_in, "--format", "json").stdout)
    assert [row["distinct_id"] for row in listed] == ["ann"]

    project.cli("delete-profiles", "--where", f"NOT ({logged_in}) AND plan = 'free'")
    remaining = project.query("SELECT distinct_id FROM user_profiles ORDER BY 1")
    assert remaining == [("ann",), ("cy",)]  # only bob: free and never logged in


def test_delete_profiles_where_reads_history_at_a_moment_as_users_does(project: Project) -> None:
    company_history(
        project,
        [
            ("ann", "pro", 1, "2024-01-01 00:00:00+00", None),
            ("ann", "free", 1, "2024-03-01 00:00:00+00", None),
            ("bob", "free", 1, "2024-01-01 00:00:00+00", None),
            ("bob", "pro", 1, "2024-03-01 00:00:00+00", None),
            ("cy", "pro", 1, "2024-01-01 00:00:00+00", None),
        ],
    )
    people(project)
    project.sync("company_plan_history")
    # On 1 February ann and cy are on pro, bob on free.
    pro_then = (
        "distinct_id IN (SELECT company_id FROM company_plan_history FOR SYSTEM_TIME AS OF "
        "TIMESTAMPTZ '2024-02-01 00:00:00+00' WHERE plan = 'pro')"
    )
    listed = json.loads(project.cli("users", "--where", pro_then, "--format", "json").stdout)
    assert [row["distinct_id"] for row in listed] == ["ann", "cy"]

    project.cli("delete-profiles", "--where", pro_then)

    assert project.query("SELECT distinct_id FROM user_profiles") == [("bob",)]


def test_same_id_rows_keep_the_greatest_values_as_history_ties_do(project: Project) -> None:
    project.source_sql(
        "CREATE OR REPLACE TABLE crm (user_id VARCHAR, score INTEGER, tag VARCHAR)",
        "INSERT INTO crm VALUES ('u1', 9, 'a'), ('u1', 10, 'a'), ('u2', 2, 'b'), ('u2', NULL, 'b')",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    project.sync("crm")
    assert users(project) == {"u1": {"score": 10, "tag": "a"}, "u2": {"score": 2, "tag": "b"}}


def test_a_row_refused_for_the_limit_is_quarantined_and_tried_again(project: Project) -> None:
    project.source_sql(
        "CREATE OR REPLACE TABLE crm (user_id VARCHAR, c0 INTEGER)",
        "INSERT INTO crm VALUES ('u1', 1)",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    engage(project, {"$distinct_id": "u1", "$set": {f"e{i}": i for i in range(2000)}})

    record = project.sync("crm")
    assert record.quarantined == 1
    reasons = project.query("SELECT reason FROM quarantine WHERE table_name = 'crm'")
    assert reasons == [("update refused: user u1 would have 2001 properties, more than 2000",)]
    [(row,)] = project.query("SELECT row_data FROM quarantine WHERE table_name = 'crm'")
    assert json.loads(row) == {"user_id": "u1", "c0": 1}

    engage(project, {"$distinct_id": "u1", "$unset": ["e0"]})
    project.sync("crm")
    assert users(project)["u1"]["c0"] == 1


def test_a_row_refused_for_the_limit_is_quarantined_as_the_source_had_it(project: Project) -> None:
    long = "é" * 200  # 400 bytes: set, it would be cut to 255
    exact = '{"big":12345678901234567890.5,"d":2.50}'  # no double holds these digits
    project.source_sql(
        "CREATE OR REPLACE TABLE crm (user_id VARCHAR, note VARCHAR, js JSON)",
        f"INSERT INTO crm VALUES ('u1', '{long}', '{exact}'), ('u2', '{long}', NULL)",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    engage(project, {"$distinct_id": "u1", "$set": {f"e{i}": i for i in range(2000)}})

    project.sync("crm")

    [(row,)] = project.query("SELECT row_data FROM quarantine WHERE table_name = 'crm'")
    assert json.loads(row) == {"user_id": "u1", "note": long, "js": json.loads(exact)}
    assert f'"js":{exact}' in row
    assert users(project)["u2"] == {"note": "é" * 127}  # 254 bytes: a 128th would pass 255


def test_a_row_returning_to_the_values_applied_before_a_refused_one_sets_nothing(
    project: Project,
) -> None:
    # u1's row is applied (plan pro), an update sets plan custom, then a wide row is
    # refused for the limit, then the row is back to the values applied first: it sets
    # nothing, so the update stays.
    wide = ", ".join(f"c{i} INTEGER" for i in range(5))
    project.source_sql(
        f"CREATE OR REPLACE TABLE crm (user_id VARCHAR, plan VARCHAR, {wide})",
        "INSERT INTO crm VALUES ('u1', 'pro', NULL, NULL, NULL, NULL, NULL)",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    engage(project, {"$distinct_id": "u1", "$set": {f"e{i}": i for i in range(1995)}})
    project.sync("crm")
    engage(project, {"$distinct_id": "u1", "$set": {"plan": "custom"}})

    project.source_sql("UPDATE crm SET c0 = 0, c1 = 1, c2 = 2, c3 = 3, c4 = 4")
    assert project.sync("crm").quarantined == 1
    project.source_sql("UPDATE crm SET c0 = NULL, c1 = NULL, c2 = NULL, c3 = NULL, c4 = NULL")
    record = project.sync("crm")

    assert record.inserted == 0
    assert users(project)["u1"]["plan"] == "custom"


@pytest.mark.parametrize("change", ["group_key", "kind"])
def test_a_profile_table_under_another_key_sets_its_rows_again(
    project: Project, change: str
) -> None:
    # Applied under company_id, the rows have never been applied under org_id (or to
    # users): they are new profiles there.
    project.source_sql(
        "CREATE OR REPLACE TABLE orgs (id INTEGER, name VARCHAR)",
        "INSERT INTO orgs VALUES (7, 'seven'), (8, 'eight')",
    )
    project.configure("orgs", kind="group_profiles", group_key="company_id", id_column="id")
    project.sync("orgs")
    if change == "group_key":
        project.configure("orgs", kind="group_profiles", group_key="org_id", id_column="id")
        relation, key = "group_profiles WHERE group_key = 'org_id'", "group_id"
    else:
        project.configure("orgs", kind="user_profiles", id_column="id")
        relation, key = "user_profiles", "distinct_id"

    assert project.sync("orgs").inserted == 2
    shown = project.query(f"SELECT {key}, properties ->> 'name' FROM {relation} ORDER BY 1")
    assert shown == [("7", "seven"), ("8", "eight")]


def test_feed_refuses_a_window_that_ends_before_it_starts(project: Project) -> None:
    login_events_now(project)
    result = project.cli("feed", "ann", "--from", "2025-02-01", "--to", "2025-01-01", check=False)
    assert result.returncode == 2 and "is not before --to" in result.stderr
    # --to alone is a usage error, as argparse's are.
    for options in (["--to", "2025-01-01"], ["--days", "30", "--to", "2025-01-01"]):
        result = project.cli("feed", "ann", *options, check=False)
        assert result.returncode == 2 and "--to goes with --from" in result.stderr
    # A date followed by an offset is no moment (Python would read the offset as a time).
    result = project.cli("feed", "ann", "--from", "2025-01-01+05:00", check=False)
    assert result.returncode == 2 and "is no date and time" in result.stderr
    result = project.cli("feed", "ann", "--from", "2025-01-01 09:00:00+15:00", check=False)
    assert result.returncode == 2 and "14 hours" in result.stderr


def login_events_now(project: Project) -> None:
    events_table(project, "('login', 'ann', now() - INTERVAL 1 DAY)")


def test_profile_at_a_moment_is_history_only(project: Project) -> None:
    company_history(project, HISTORY_ROWS)
    project.sync("company_plan_history")
    engage(project, {"$distinct_id": "solo", "$set": {"a": 1}})
    result = project.cli("profile", "solo", "--at", "2024-07-01T00:00:00Z", check=False)
    assert result.returncode == 1
    assert "has no profile" not in result.stderr  # it has one; it has no history
    assert "no history table for users" in result.stderr


def events_table(project: Project, values: str) -> None:
    """A synced events table `product_events` of (event, distinct_id, time) VALUES rows."""
    project.source_sql(
        "CREATE OR REPLACE TABLE events (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ)",
        f"INSERT INTO events VALUES {values}",
    )
    project.configure("product_events", kind="events", **{"from": "events"})
    project.sync("product_events")


def test_profile_table_values_follow_the_update_limits(project: Project) -> None:
    project.source_sql(
        "CREATE OR REPLACE TABLE crm (user_id VARCHAR, ratio DOUBLE, tags VARCHAR[], note VARCHAR)",
        "INSERT INTO crm VALUES ('u1', 'NaN', ['" + "t" * 300 + "', 'b'], '" + "é" * 200 + "'), "
        "('u2', 'inf', [], 'ok')",
    )
    project.configure("crm", kind="user_profiles", id_column="user_id")
    project.sync("crm")
    assert users(project) == {
        "u1": {"tags": ["t" * 255, "b"], "note": "é" * 127},  # NaN is undefined
        "u2": {"tags": [], "note": "ok"},
    }
