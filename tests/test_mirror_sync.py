"""Mirror runs, and the source schema changing between runs, as stories.

Counts are (inserted, updated, deleted, entities changed) of history keys, each worked
out by hand from the rows the test writes.
"""

from __future__ import annotations

import json
import logging

import pytest

from pitsync.errors import ConfigError
from pitsync.queries.execute import QuerySession
from tests.conftest import Project, configure_companies, insert_rows, utc

DDL = (
    "CREATE OR REPLACE TABLE plans (company_id VARCHAR, plan VARCHAR, code VARCHAR, "
    "seats INTEGER, valid_from TIMESTAMPTZ)"
)
INTERVALS = (
    "SELECT company_id, plan, code, seats, start_time, end_time FROM plans "
    "ORDER BY company_id, start_time"
)


def insert(project: Project, rows: list[tuple]) -> None:
    insert_rows(project, "plans", rows)


def configure(project: Project, mode: str = "mirror") -> None:
    configure_companies(project, "plans", "valid_from", mode=mode)


def changes(record) -> tuple[int, int, int, int]:
    return (record.inserted, record.updated, record.deleted, record.entities_changed)


def seeded(project: Project) -> None:
    project.source_sql(DDL)
    insert(
        project,
        [
            ("a", "free", "x", 1, "2024-01-01 00:00+00"),
            ("a", "pro", "x", 2, "2024-02-01 00:00+00"),
            ("a", "team", "x", 3, "2024-03-01 00:00+00"),
            ("b", "free", "x", None, "2024-01-01 00:00+00"),
            ("c", "free", "x", 1, "2024-01-01 00:00+00"),
        ],
    )
    configure(project)


def test_mirror_applies_inserts_updates_and_deletes_of_changed_keys_only(
    project: Project,
) -> None:
    seeded(project)
    assert changes(project.sync("plans"))[:3] == (5, 0, 0)

    project.source_sql(
        "DELETE FROM plans WHERE company_id = 'a' AND plan = 'pro'",  # a's middle row
        "UPDATE plans SET seats = 10 WHERE company_id = 'b'",  # NULL -> 10
    )
    insert(project, [("d", "pro", "x", 4, "2024-01-15 00:00+00")])

    # c is untouched; a loses a key, b's key changes, d is new.
    assert changes(project.sync("plans")) == (1, 1, 1, 3)
    assert project.query(INTERVALS) == [
        # a's January interval now reaches the next remaining start, March (rule 10).
        ("a", "free", "x", 1, utc("2024-01-01T00:00"), utc("2024-03-01T00:00")),
        ("a", "team", "x", 3, utc("2024-03-01T00:00"), None),
        ("b", "free", "x", 10, utc("2024-01-01T00:00"), None),
        ("c", "free", "x", 1, utc("2024-01-01T00:00"), None),
        ("d", "pro", "x", 4, utc("2024-01-15T00:00"), None),
    ]

    # 10 -> NULL is a change again; the deleted row comes back and is restored.
    project.source_sql("UPDATE plans SET seats = NULL WHERE company_id = 'b'")
    insert(project, [("a", "pro", "x", 2, "2024-02-01 00:00+00")])
    assert changes(project.sync("plans")) == (1, 1, 0, 2)
    a_plans = project.query("SELECT plan, end_time FROM plans WHERE company_id = 'a' ORDER BY 2")
    assert a_plans == [
        ("free", utc("2024-02-01T00:00")),
        ("pro", utc("2024-03-01T00:00")),
        ("team", None),
    ]

    # Nothing changed: nothing is touched.
    assert changes(project.sync("plans")) == (0, 0, 0, 0)


def test_a_row_turned_unreadable_is_quarantined_and_its_interval_deleted_until_it_reads(
    project: Project,
) -> None:
    # Starts kept as text: text that names no time is unreadable (rule 6).
    project.source_sql(DDL.replace("valid_from TIMESTAMPTZ", "valid_from VARCHAR"))
    insert(
        project,
        [
            ("a", "free", "x", 1, "2024-01-01 00:00+00"),
            ("a", "pro", "x", 2, "2024-02-01 00:00+00"),
            ("a", "team", "x", 3, "2024-03-01 00:00+00"),
        ],
    )
    configure(project)
    project.sync("plans")

    project.source_sql("UPDATE plans SET valid_from = '2024-02-01 (BC)' WHERE plan = 'pro'")
    record = project.sync("plans")

    # As a full run of this source would store it: the pro row is left out, so a's
    # January interval reaches March (rule 10), and the row waits in quarantine.
    assert changes(record) == (0, 0, 1, 1) and record.quarantined == 1
    assert project.query("SELECT plan, end_time FROM plans ORDER BY start_time") == [
        ("free", utc("2024-03-01T00:00")),
        ("team", None),
    ]
    assert project.query("SELECT count(*) FROM quarantine") == [(1,)]

    project.source_sql("UPDATE plans SET valid_from = '2024-02-01 00:00+00' WHERE plan = 'pro'")
    assert changes(project.sync("plans")) == (1, 0, 0, 1)
    assert project.query("SELECT plan, end_time FROM plans ORDER BY start_time") == [
        ("free", utc("2024-02-01T00:00")),
        ("pro", utc("2024-03-01T00:00")),
        ("team", None),
    ]


def test_values_are_compared_by_column_not_as_joined_text(project: Project) -> None:
    seeded(project)
    project.sync("plans")

    # "free" + "x" and "fre" + "ex" join to the same text; they are different rows.
    project.source_sql("UPDATE plans SET plan = 'fre', code = 'ex' WHERE company_id = 'c'")

    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query("SELECT plan, code FROM plans WHERE company_id = 'c'") == [("fre", "ex")]


def test_a_new_nullable_column_becomes_a_property_without_rewriting_rows(
    project: Project,
) -> None:
    seeded(project)
    project.sync("plans")

    project.source_sql("ALTER TABLE plans ADD COLUMN region VARCHAR")
    record = project.sync("plans")

    assert changes(record) == (0, 0, 0, 0)
    assert project.query("SELECT count(*), count(region) FROM plans") == [(5, 0)]

    project.source_sql("UPDATE plans SET region = 'eu' WHERE company_id = 'c'")
    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query("SELECT region FROM plans WHERE company_id = 'c'") == [("eu",)]


def test_a_widened_type_is_taken_and_a_narrowing_one_stops_the_run(project: Project) -> None:
    seeded(project)
    project.sync("plans")

    project.source_sql("ALTER TABLE plans ALTER COLUMN seats TYPE BIGINT")
    assert changes(project.sync("plans")) == (0, 0, 0, 0)

    project.source_sql("ALTER TABLE plans ALTER COLUMN code TYPE INTEGER USING 1")
    before = project.query(INTERVALS)
    # (SQLite knows one integer type: there it is BIGINT.)
    with pytest.raises(
        ConfigError,
        match="`code` changed type from VARCHAR to (INTEGER|BIGINT), which is not a change "
        "pitsync makes to stored values",
    ):
        project.sync("plans")
    assert project.query(INTERVALS) == before


@pytest.mark.backends("duckdb")
@pytest.mark.parametrize("mode", ["mirror", "full"])
def test_a_widened_type_writes_the_losers_of_untouched_entities_anew(
    project: Project, mode: str
) -> None:
    # `a` has two rows at one start: `pro` wins (the greatest values), `free` is kept as
    # a hidden event. Seats become doubles, and only `b` changes: `a`'s loser was left
    # with 2 where its winner, and a sync from scratch, say 2.0.
    project.source_sql(
        "CREATE TABLE plans (company_id VARCHAR, valid_from TIMESTAMPTZ, plan VARCHAR, "
        "seats INTEGER)",
        "INSERT INTO plans VALUES ('a', '2024-01-01 00:00+00', 'pro', 1), "
        "('a', '2024-01-01 00:00+00', 'free', 2), ('b', '2024-01-01 00:00+00', 'pro', 5)",
    )
    configure_companies(project, "plans", "valid_from", mode=mode)
    project.sync("plans")

    project.source_sql(
        "ALTER TABLE plans ALTER seats TYPE DOUBLE",
        "UPDATE plans SET plan = 'team' WHERE company_id = 'b'",
    )
    project.sync("plans")

    hidden = "SELECT distinct_id, CAST(properties AS VARCHAR) FROM all_events ORDER BY ALL"
    assert project.query(hidden) == [
        ("a", '{"plan":"free","seats":2.0}'),
        ("a", '{"plan":"pro","seats":1.0}'),
        ("b", '{"plan":"team","seats":5.0}'),
    ]


@pytest.mark.backends("duckdb")
@pytest.mark.parametrize(
    ("stored", "too_narrow", "wide_enough"),
    [
        # 1 in DECIMAL(18, 1) would read 1.0: a scale changes the text.
        ("INTEGER", "DECIMAL(18, 1)", "DECIMAL(10, 0)"),
        # A 64-bit integer has up to 19 digits.
        ("BIGINT", "DECIMAL(18, 0)", "DECIMAL(19, 0)"),
    ],
)
def test_integers_widen_to_a_decimal_without_scale_with_room_for_every_digit(
    project: Project, stored: str, too_narrow: str, wide_enough: str
) -> None:
    seeded(project)
    project.source_sql(f"ALTER TABLE plans ALTER COLUMN seats TYPE {stored}")
    project.sync("plans")

    project.source_sql(f"ALTER TABLE plans ALTER COLUMN seats TYPE {too_narrow}")
    with pytest.raises(ConfigError, match=f"`seats` changed type from {stored} to DECIMAL"):
        project.sync("plans")

    project.source_sql(f"ALTER TABLE plans ALTER COLUMN seats TYPE {wide_enough}")
    assert changes(project.sync("plans")) == (0, 0, 0, 0)
    assert project.query(
        "SELECT company_id, CAST(seats AS VARCHAR) FROM plans "
        "WHERE start_time = '2024-01-01 00:00+00' ORDER BY 1"
    ) == [("a", "1"), ("b", None), ("c", "1")]


def test_64_bit_integers_widen_to_doubles_that_keep_every_stored_value(
    project: Project,
) -> None:
    # CSV and SQLite read every integer column as BIGINT; seats then starts to hold a
    # fraction. Every stored seat count is exact as a double, so the column widens.
    seeded(project)
    project.source_sql("ALTER TABLE plans ALTER COLUMN seats TYPE BIGINT")
    project.sync("plans")

    project.source_sql(
        "ALTER TABLE plans ALTER COLUMN seats TYPE DOUBLE",
        "UPDATE plans SET seats = 2.5 WHERE company_id = 'c'",
    )
    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query(
        "SELECT company_id, seats FROM plans WHERE start_time = '2024-01-01 00:00+00' ORDER BY 1"
    ) == [("a", 1.0), ("b", None), ("c", 2.5)]


def test_a_double_column_that_arrives_as_integers_again_keeps_its_type_and_values(
    project: Project,
) -> None:
    # A CSV's seats held 2.5, so it was sniffed DOUBLE; corrected to 3, it is sniffed
    # BIGINT. The stored doubles hold every arriving integer: the run was refused.
    seeded(project)
    project.source_sql(
        "ALTER TABLE plans ALTER COLUMN seats TYPE DOUBLE",
        "UPDATE plans SET seats = 2.5 WHERE company_id = 'c'",
    )
    project.sync("plans")

    project.source_sql(
        "UPDATE plans SET seats = 3 WHERE company_id = 'c'",
        "ALTER TABLE plans ALTER COLUMN seats TYPE BIGINT",
    )
    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query(
        "SELECT company_id, seats FROM plans WHERE start_time = '2024-01-01 00:00+00' ORDER BY 1"
    ) == [("a", 1.0), ("b", None), ("c", 3.0)]

    project.source_sql("UPDATE plans SET seats = 9007199254740993 WHERE company_id = 'c'")
    with pytest.raises(ConfigError, match="from DOUBLE to BIGINT, and an arriving value is not"):
        project.sync("plans")  # 2^53 + 1 is no double


@pytest.mark.backends("duckdb", "parquet", "postgres")
def test_a_list_whose_items_widen_is_widened_as_its_items_would_be(project: Project) -> None:
    # INTEGER[] to BIGINT[] holds every stored list; the run was refused. BIGINT[] to
    # INTEGER[] holds what the store holds too, and VARCHAR[] holds no list of integers.
    project.source_sql(
        "CREATE TABLE seats (company_id VARCHAR, valid_from TIMESTAMPTZ, sizes INTEGER[])",
        "INSERT INTO seats VALUES ('a', '2024-01-01 00:00+00', [1, 2])",
    )
    configure_companies(project, "seats", "valid_from", mode="mirror")
    project.sync("seats")

    project.source_sql(
        "ALTER TABLE seats ALTER COLUMN sizes TYPE BIGINT[]",
        "INSERT INTO seats VALUES ('b', '2024-01-01 00:00+00', [5000000000])",
    )
    assert changes(project.sync("seats")) == (1, 0, 0, 1)
    assert project.query("SELECT company_id, sizes FROM seats ORDER BY 1") == [
        ("a", [1, 2]),
        ("b", [5000000000]),
    ]

    project.source_sql("ALTER TABLE seats ALTER COLUMN sizes TYPE VARCHAR[]")
    with pytest.raises(ConfigError, match=r"changed type from BIGINT\[\] to VARCHAR\[\]"):
        project.sync("seats")


@pytest.mark.backends("duckdb")
def test_text_that_becomes_json_widens_when_every_stored_value_is_json(project: Project) -> None:
    # A JSON column of a DuckDB source was once read as text: its stored text is the same
    # values, and stays; text that is no JSON (`fre`) cannot be.
    seeded(project)
    project.source_sql("ALTER TABLE plans ADD COLUMN settings VARCHAR DEFAULT '{\"k\": 1}'")
    project.sync("plans")

    project.source_sql("ALTER TABLE plans ALTER COLUMN settings TYPE JSON")
    assert changes(project.sync("plans")) == (0, 0, 0, 0)
    assert project.query("SELECT DISTINCT typeof(settings), settings->>'k' FROM plans") == [
        ("JSON", "1")
    ]

    before = project.query(INTERVALS)
    project.source_sql("ALTER TABLE plans ALTER COLUMN plan TYPE JSON USING to_json(plan)")
    with pytest.raises(ConfigError, match="`plan` changed type from VARCHAR to JSON"):
        project.sync("plans")
    assert project.query(INTERVALS) == before


def test_a_64_bit_integer_a_double_cannot_keep_stops_the_widening(project: Project) -> None:
    seeded(project)
    project.source_sql(
        "ALTER TABLE plans ALTER COLUMN seats TYPE BIGINT",
        "UPDATE plans SET seats = 9007199254740993 WHERE company_id = 'c'",
    )
    project.sync("plans")
    before = project.query(INTERVALS)

    # 2^53 + 1 is no double: the nearest one is 2^53.
    project.source_sql("ALTER TABLE plans ALTER COLUMN seats TYPE DOUBLE")
    with pytest.raises(
        ConfigError, match="BIGINT to DOUBLE, and a stored value is not exact as a DOUBLE"
    ):
        project.sync("plans")
    assert project.query(INTERVALS) == before


@pytest.mark.backends("duckdb")
def test_a_column_that_held_only_nulls_takes_the_type_its_values_come_with(
    project: Project,
) -> None:
    # `note` has no type but NULL (as pandas writes an all-None column); `region` is an
    # empty text column. Neither holds a value, so any type can take their place.
    seeded(project)
    project.source_sql(
        "CREATE OR REPLACE TABLE plans AS SELECT *, NULL AS note, "
        "CAST(NULL AS VARCHAR) AS region FROM plans"
    )
    project.sync("plans")

    project.source_sql(
        "CREATE OR REPLACE TABLE plans AS SELECT * EXCLUDE (note, region), "
        "CASE WHEN company_id = 'c' THEN 'vip' END AS note, "
        "CASE WHEN company_id = 'c' THEN 7 END AS region FROM plans"
    )
    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query("SELECT company_id, note, region FROM plans WHERE note IS NOT NULL") == [
        ("c", "vip", 7)
    ]


@pytest.mark.backends("duckdb", "postgres")
@pytest.mark.parametrize("arriving", ["INTEGER", "DOUBLE PRECISION"])
def test_a_text_column_that_arrives_empty_as_numbers_keeps_its_type(
    project: Project, arriving: str
) -> None:
    seeded(project)
    project.sync("plans")

    # Every `code` was "x"; now none holds a value, as numbers. Those NULLs say nothing of
    # a type: the stored text stays, and each of the five rows changed, in a, b and c.
    project.source_sql(f"ALTER TABLE plans ALTER COLUMN code TYPE {arriving} USING NULL")
    assert changes(project.sync("plans")) == (0, 5, 0, 3)
    assert project.query("SELECT DISTINCT typeof(code), code FROM plans") == [("VARCHAR", None)]


@pytest.mark.backends("duckdb")
def test_a_column_spelled_in_another_case_is_the_same_property(project: Project) -> None:
    # DuckDB compares names without case: `PLAN` is `plan`, spelled anew.
    seeded(project)
    project.sync("plans")

    project.source_sql('ALTER TABLE plans RENAME COLUMN plan TO "PLAN"')
    assert changes(project.sync("plans")) == (0, 0, 0, 0)
    assert project.query("SELECT \"PLAN\" FROM plans WHERE company_id = 'c'") == [("free",)]
    with QuerySession(project.store) as session:
        columns = session.query("SELECT * FROM plans").columns
    assert columns == [
        "company_id",
        "start_time",
        "end_time",
        "PLAN",
        "code",
        "seats",
    ]


@pytest.mark.backends("duckdb")
def test_columns_differing_in_a_letter_beyond_ascii_are_two_properties(project: Project) -> None:
    # DuckDB folds the case of ASCII letters alone: `Ä` and `ä` are two columns to it.
    project.source_sql(
        'CREATE TABLE plans (company_id VARCHAR, "Ä" VARCHAR, "ä" VARCHAR, valid_from TIMESTAMPTZ)'
    )
    insert(project, [("a", "x1", "y1", "2024-01-01 00:00+00")])
    configure(project)
    assert changes(project.sync("plans"))[:3] == (1, 0, 0)

    project.source_sql("UPDATE plans SET \"ä\" = 'y2'")
    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query('SELECT "Ä", "ä" FROM plans') == [("x1", "y2")]


def configure_ids(project: Project, id_column: str) -> None:
    """The mirror table keyed by another id column."""
    project.configure(
        "plans",
        kind="group_history",
        id_column=id_column,
        group_key="company_id",
        start_time="valid_from",
        mode="mirror",
    )


@pytest.mark.backends("duckdb")
def test_an_id_column_spelled_in_another_case_is_the_same_column(project: Project) -> None:
    seeded(project)
    project.sync("plans")

    project.source_sql('ALTER TABLE plans RENAME COLUMN company_id TO "Company_Id"')
    configure_ids(project, "Company_Id")
    assert changes(project.sync("plans")) == (0, 0, 0, 0)
    assert project.query('SELECT "Company_Id", plan FROM plans WHERE seats = 2') == [("a", "pro")]


@pytest.mark.backends("duckdb")
def test_another_id_column_is_refused_until_the_table_is_stored_anew(project: Project) -> None:
    seeded(project)
    project.source_sql("ALTER TABLE plans ADD COLUMN account_id VARCHAR DEFAULT 'x'")
    project.sync("plans")

    configure_ids(project, "account_id")
    with pytest.raises(ConfigError, match="stored by id column `company_id`"):
        project.sync("plans")


@pytest.mark.backends("duckdb")
def test_a_tie_loser_takes_a_property_spelled_anew_as_a_full_sync_does(project: Project) -> None:
    # c has two rows at one start: team wins (the greater plan), free is a hidden event.
    seeded(project)
    insert(project, [("c", "team", "x", 1, "2024-01-01 00:00+00")])
    project.sync("plans")

    project.source_sql('ALTER TABLE plans RENAME COLUMN plan TO "PLAN"')
    project.sync("plans")

    losers = project.query(
        "SELECT properties FROM all_events WHERE event = 'plans' AND distinct_id = 'c' "
        "AND properties->>'PLAN' = 'free'"
    )
    assert len(losers) == 1
    assert "plan" not in json.loads(losers[0][0])


@pytest.mark.parametrize("mode", ["mirror", "append"])
def test_a_tie_breaker_set_or_unset_writes_the_losers_events_as_a_fresh_sync_does(
    project: Project, mode: str
) -> None:
    # `version` turns from a property into the tie-breaker and back: ties fall alike, but
    # a loser's hidden event carried its old properties, unlike the winner's and a fresh
    # store's.
    project.source_sql(
        "CREATE TABLE versions (company_id VARCHAR, valid_from TIMESTAMPTZ, version INTEGER, "
        "plan VARCHAR, loaded TIMESTAMPTZ)",
        "INSERT INTO versions VALUES ('a', '2024-01-01 00:00+00', 1, 'free', '2024-05-01'), "
        "('a', '2024-01-01 00:00+00', 2, 'pro', '2024-05-01')",
    )
    if mode == "mirror":  # only an append table reads `loaded` as its cursor, no property
        project.source_sql("ALTER TABLE versions DROP COLUMN loaded")
    cursor = {"cursor": "loaded"} if mode == "append" else {}
    configure_companies(project, "versions", "valid_from", mode=mode, **cursor)
    project.sync("versions")

    configure_companies(
        project, "versions", "valid_from", mode=mode, tie_breaker="version", **cursor
    )
    project.sync("versions")
    as_tie_breaker = hidden_events(project)
    configure_companies(project, "versions", "valid_from", mode=mode, **cursor)
    project.sync("versions")

    assert as_tie_breaker == [{"plan": "free"}, {"plan": "pro"}]
    assert hidden_events(project) == [
        {"version": 1, "plan": "free"},
        {"version": 2, "plan": "pro"},
    ]


def test_a_tie_breaker_gone_from_config_and_source_leaves_no_property_behind(
    project: Project,
) -> None:
    # `upd` decided a's ties; both config and source dropped it. The store kept it as a
    # dropped property, which b owns: b's runs were refused, and profiles failed.
    project.source_sql(
        "CREATE TABLE a (uid VARCHAR, st TIMESTAMPTZ, plan VARCHAR, upd INTEGER)",
        "INSERT INTO a VALUES ('u1', '2024-01-01 00:00+00', 'pro', 5), "
        "('u1', '2024-01-01 00:00+00', 'free', 7)",
        "CREATE TABLE b (uid VARCHAR, st TIMESTAMPTZ, upd INTEGER)",
        "INSERT INTO b VALUES ('u1', '2024-01-01 00:00+00', 99)",
    )
    project.configure(
        "a",
        kind="user_history",
        id_column="uid",
        start_time="st",
        mode="mirror",
        tie_breaker="upd",
    )
    project.configure("b", kind="user_history", id_column="uid", start_time="st", mode="mirror")
    project.sync("a")
    project.sync("b")

    project.source_sql("ALTER TABLE a DROP COLUMN upd")
    project.configure("a", kind="user_history", id_column="uid", start_time="st", mode="mirror")
    project.sync("a")
    project.sync("b")

    # Without a tie-breaker, the greater plan wins: pro, as a fresh sync decides.
    assert project.query("SELECT * FROM a") == [("u1", utc("2024-01-01"), None, "pro")]
    profile = project.cli("profile", "u1", "--format", "json").stdout
    assert json.loads(profile) == {"plan": "pro", "upd": 99}


def hidden_events(project: Project) -> list[dict]:
    rows = project.query(
        "SELECT properties FROM all_events WHERE event = 'versions' ORDER BY properties->>'plan'"
    )
    return [json.loads(properties) for (properties,) in rows]


def test_a_dropped_column_keeps_its_values_and_new_rows_leave_it_undefined(
    project: Project,
) -> None:
    seeded(project)
    project.sync("plans")

    project.source_sql("ALTER TABLE plans DROP COLUMN code")
    insert_without_code = "INSERT INTO plans VALUES ('e', 'pro', 5, '2024-01-01 00:00+00')"
    project.source_sql(insert_without_code)
    record = project.sync("plans")

    assert changes(record) == (1, 0, 0, 1)
    assert project.query("SELECT company_id, code FROM plans ORDER BY 1, start_time") == [
        ("a", "x"),
        ("a", "x"),
        ("a", "x"),
        ("b", "x"),
        ("c", "x"),
        ("e", None),
    ]


def test_a_re_modelled_entity_keeps_a_dropped_column_on_its_unchanged_keys(
    project: Project,
) -> None:
    seeded(project)
    project.sync("plans")

    # After `code` is gone, a's February row changes: a is re-modelled.
    project.source_sql(
        "ALTER TABLE plans DROP COLUMN code",
        "UPDATE plans SET plan = 'max' WHERE company_id = 'a' AND plan = 'pro'",
    )
    assert changes(project.sync("plans")) == (0, 1, 0, 1)

    # a's January and March rows are unchanged and keep `code`; the February row is a
    # row the source wrote without it.
    assert project.query(INTERVALS) == [
        ("a", "free", "x", 1, utc("2024-01-01T00:00"), utc("2024-02-01T00:00")),
        ("a", "max", None, 2, utc("2024-02-01T00:00"), utc("2024-03-01T00:00")),
        ("a", "team", "x", 3, utc("2024-03-01T00:00"), None),
        ("b", "free", "x", None, utc("2024-01-01T00:00"), None),
        ("c", "free", "x", 1, utc("2024-01-01T00:00"), None),
    ]


def test_ids_that_turn_from_integers_to_text_and_back_keep_their_history(
    project: Project,
) -> None:
    project.source_sql(
        "CREATE TABLE accounts (company_id INTEGER, plan VARCHAR, valid_from TIMESTAMPTZ)"
    )
    insert_rows(
        project,
        "accounts",
        [(1, "free", "2024-01-01 00:00+00"), (2, "pro", "2024-01-01 00:00+00")],
    )
    configure_companies(project, "accounts", "valid_from", mode="mirror")
    project.sync("accounts")

    # The source's ids become text: integer 1 and text '1' are one company.
    project.source_sql("ALTER TABLE accounts ALTER COLUMN company_id TYPE VARCHAR")
    insert_rows(
        project,
        "accounts",
        [("1", "pro", "2024-02-01 00:00+00"), ("x7", "team", "2024-02-01 00:00+00")],
    )
    assert changes(project.sync("accounts")) == (2, 0, 0, 2)
    history = "SELECT company_id, plan, start_time, end_time FROM accounts ORDER BY ALL"
    assert project.query(history) == [
        ("1", "free", utc("2024-01-01T00:00"), utc("2024-02-01T00:00")),
        ("1", "pro", utc("2024-02-01T00:00"), None),
        ("2", "pro", utc("2024-01-01T00:00"), None),
        ("x7", "team", utc("2024-02-01T00:00"), None),
    ]

    # And back to integers: the stored text ids still match them.
    project.source_sql(
        "CREATE OR REPLACE TABLE accounts AS SELECT CAST(company_id AS INTEGER) AS company_id, "
        "plan, valid_from FROM accounts WHERE company_id <> 'x7'",
    )
    assert changes(project.sync("accounts")) == (0, 0, 1, 1)
    assert project.query(history) == [
        ("1", "free", utc("2024-01-01T00:00"), utc("2024-02-01T00:00")),
        ("1", "pro", utc("2024-02-01T00:00"), None),
        ("2", "pro", utc("2024-01-01T00:00"), None),
    ]


TIED_DDL = (
    "CREATE OR REPLACE TABLE plans (company_id VARCHAR, plan VARCHAR, seats INTEGER, "
    "region VARCHAR, valid_from TIMESTAMPTZ)"
)
TIED_ROWS = [
    ("a", "pro", 2, "a", "2024-01-01 00:00+00"),
    ("a", "pro", 1, "b", "2024-01-01 00:00+00"),
    ("a", "free", 1, "x", "2024-01-03 00:00+00"),
]
TIED_INTERVALS = "SELECT plan, seats, region, start_time, end_time FROM plans ORDER BY start_time"
LOSERS = (
    "SELECT properties->>'region' FROM all_events WHERE event = 'plans' "
    "AND time = TIMESTAMPTZ '2024-01-01 00:00+00' ORDER BY 1"
)


def test_a_dropped_column_no_longer_decides_ties_and_the_store_agrees_with_itself(
    project: Project,
) -> None:
    project.source_sql(TIED_DDL)
    insert_rows(project, "plans", TIED_ROWS)
    configure(project)
    project.sync("plans")
    # With seats, (pro, 2, a) wins the January tie.
    assert project.query(TIED_INTERVALS)[0][:3] == ("pro", 2, "a")

    project.source_sql(
        "ALTER TABLE plans DROP COLUMN seats",
        "UPDATE plans SET plan = 'team' WHERE valid_from = TIMESTAMPTZ '2024-01-03 00:00+00'",
    )
    # Two keys of a are updated: March by the source, January by its new winner.
    assert changes(project.sync("plans")) == (0, 2, 0, 1)

    # As a full sync of the source now: plan, then region decide, so (pro, b) wins, and
    # keeps the seats it had; the changed March row has none. The loser is (pro, a).
    jan1, jan3 = utc("2024-01-01T00:00"), utc("2024-01-03T00:00")
    assert project.query(TIED_INTERVALS) == [
        ("pro", 1, "b", jan1, jan3),
        ("team", None, "x", jan3, None),
    ]
    # The January hidden events: the interval (b) and the loser (a), each once.
    assert project.query(LOSERS) == [("a",), ("b",)]

    # The column comes back, last, with the values the store holds: nothing changes.
    project.source_sql(
        "CREATE OR REPLACE TABLE plans AS SELECT company_id, plan, region, valid_from, "
        "CASE region WHEN 'a' THEN 2 WHEN 'b' THEN 1 END AS seats FROM plans"
    )
    assert changes(project.sync("plans")) == (0, 0, 0, 0)
    assert project.query(TIED_INTERVALS)[0] == ("pro", 1, "b", jan1, jan3)
    assert project.query(LOSERS) == [("a",), ("b",)]


def test_a_reordered_source_decides_every_tie_again_and_counts_the_new_winners(
    project: Project,
) -> None:
    project.source_sql(TIED_DDL)
    # Two companies, each with a tie that plan decides (pro > free) and seats the other way.
    rows = [
        (company, plan, seats, "x", "2024-01-01 00:00+00")
        for company in ("a", "b")
        for plan, seats in (("pro", 1), ("free", 2))
    ]
    insert_rows(project, "plans", rows)
    configure(project)
    project.sync("plans")
    assert project.query("SELECT DISTINCT plan FROM plans") == [("pro",)]

    # The same rows, seats now first: seats decides, so both keys have a new winner.
    project.source_sql(
        "CREATE OR REPLACE TABLE plans AS SELECT company_id, seats, plan, region, valid_from "
        "FROM plans"
    )
    record = project.sync("plans")
    assert changes(record) == (0, 2, 0, 2)
    # Both re-modelled entities have a conflicting key, so the run counts both.
    assert record.conflicts == 2
    assert project.query("SELECT DISTINCT plan FROM plans") == [("free",)]
    assert changes(project.sync("plans")) == (0, 0, 0, 0)


def test_a_dropped_column_counts_no_update_for_a_key_whose_end_alone_moved(
    project: Project,
) -> None:
    project.source_sql(
        "CREATE OR REPLACE TABLE plans (company_id VARCHAR, valid_from TIMESTAMPTZ, "
        "plan VARCHAR, region VARCHAR, seats INTEGER)"
    )
    insert(
        project,
        [
            ("a", "2024-01-01 00:00+00", "free", "eu", 1),
            ("a", "2024-02-01 00:00+00", "pro", "eu", 2),
        ],
    )
    configure(project)
    project.sync("plans")

    project.source_sql("ALTER TABLE plans DROP COLUMN region")
    insert(project, [("a", "2024-03-01 00:00+00", "team", 3)])

    # March is new; February's end moves to March, but it has no tie, so no new winner.
    assert changes(project.sync("plans")) == (1, 0, 0, 1)
    jan, feb, mar = (utc(f"2024-0{month}-01T00:00") for month in (1, 2, 3))
    assert project.query(
        "SELECT plan, region, seats, start_time, end_time FROM plans ORDER BY start_time"
    ) == [
        ("free", "eu", 1, jan, feb),
        ("pro", "eu", 2, feb, mar),
        ("team", None, 3, mar, None),
    ]


def test_an_unchanged_row_keeps_a_dropped_column_when_its_key_changes(project: Project) -> None:
    project.source_sql(
        "CREATE OR REPLACE TABLE plans (company_id VARCHAR, plan VARCHAR, seats INTEGER, "
        "version INTEGER, valid_from TIMESTAMPTZ)"
    )
    insert_rows(
        project,
        "plans",
        [
            ("a", "pro", 2, 2, "2024-01-01 00:00+00"),
            ("a", "free", 1, 1, "2024-01-01 00:00+00"),
        ],
    )
    configure_companies(project, "plans", "valid_from", mode="mirror", tie_breaker="version")
    project.sync("plans")

    project.source_sql("ALTER TABLE plans DROP COLUMN seats")
    project.sync("plans")
    # Only the losing row changes: the winner, read as it was, keeps its seats.
    project.source_sql("UPDATE plans SET plan = 'basic' WHERE version = 1")
    assert changes(project.sync("plans")) == (0, 1, 0, 1)
    assert project.query("SELECT plan, seats FROM plans") == [("pro", 2)]


def keys_written_back(caplog: pytest.LogCaptureFixture) -> int:
    [line] = [r.getMessage() for r in caplog.records if "keys written back" in r.getMessage()]
    return int(line.split(": ")[1].split()[0])


@pytest.mark.backends("duckdb")
def test_only_changed_keys_and_the_interval_before_them_are_written_back(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    seeded(project)
    project.sync("plans")
    caplog.set_level(logging.DEBUG, logger="pitsync.modeling.increments")

    # a's last row changes: no other end moves.
    project.source_sql("UPDATE plans SET seats = 4 WHERE company_id = 'a' AND plan = 'team'")
    project.sync("plans")
    assert keys_written_back(caplog) == 1

    # A new last key for a: it, and March's row, whose end moves to April.
    caplog.clear()
    insert(project, [("a", "max", "x", 5, "2024-04-01 00:00+00")])
    project.sync("plans")
    assert keys_written_back(caplog) == 2

    # February goes: it, and January's row, which now reaches March.
    caplog.clear()
    project.source_sql("DELETE FROM plans WHERE company_id = 'a' AND plan = 'pro'")
    project.sync("plans")
    assert keys_written_back(caplog) == 2
    assert project.query(
        "SELECT plan, end_time FROM plans WHERE company_id = 'a' ORDER BY start_time"
    ) == [
        ("free", utc("2024-03-01T00:00")),
        ("team", utc("2024-04-01T00:00")),
        ("max", None),
    ]


def test_events_tables_refuse_mirror_mode(project: Project) -> None:
    project.source_sql("CREATE TABLE events (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ)")
    project.configure("events", kind="events", mode="mirror")

    with pytest.raises(ConfigError, match='events tables sync in mode "full" or "append"'):
        project.config()


@pytest.mark.parametrize("mode", ["mirror", "append"])
def test_a_negative_zero_is_stored_as_zero_so_later_runs_agree_with_a_full_sync(
    project: Project, mode: str
) -> None:
    # -0.0 first, then a 0.0 row of the same key (in append mode a later load; `loaded`
    # is a property in mirror mode, so there it is the same), then the -0.0 row gone:
    # the rows are duplicates, and the store holds 0.0, as a full sync of the source does.
    negative_zero = "CAST('-0.0' AS DOUBLE)"  # a bare -0.0 is a DECIMAL, which has no sign
    project.source_sql(
        "CREATE TABLE scores (company_id VARCHAR, valid_from TIMESTAMPTZ, score DOUBLE, "
        "loaded INTEGER)",
        f"INSERT INTO scores VALUES ('c1', '2024-01-01 00:00:00+00', {negative_zero}, 1)",
    )
    cursor = {"cursor": "loaded"} if mode == "append" else {}
    configure_companies(project, "scores", "valid_from", mode=mode, **cursor)
    project.sync("scores")
    stored = "SELECT score, signbit(score) FROM scores"
    assert project.query(stored) == [(0.0, False)]

    loaded = 2 if mode == "append" else 1
    insert_rows(project, "scores", [("c1", "2024-01-01 00:00:00+00", 0.0, loaded)])
    record = project.sync("scores")
    assert (record.inserted, record.updated) == (0, 0)
    assert project.query(stored) == [(0.0, False)]
    if mode == "mirror":
        project.source_sql("DELETE FROM scores WHERE signbit(score)")
        record = project.sync("scores")
        assert (record.inserted, record.updated, record.deleted) == (0, 0, 0)
        assert project.query(stored) == [(0.0, False)]


def assert_old_conflicts_untold(
    project: Project, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    """After the source's columns change, a run counts and logs no conflict of the
    entities it did not re-model, and re-models none."""
    project.source_sql(change)
    caplog.clear()
    record = project.sync("plans")

    assert (record.conflicts, record.entities_changed) == (0, 0)
    assert "conflicting rows" not in caplog.text


def synced_with_one_tie(project: Project, *statements: str) -> None:
    """A mirror `plans` table made by the statements, with one conflicting key, synced."""
    project.source_sql(*statements)
    configure_companies(project, "plans", "valid_from", mode="mirror")
    assert project.sync("plans").conflicts == 1


@pytest.mark.backends("duckdb")
def test_a_new_column_rewrites_old_conflicts_without_logging_them_again(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    # The losers of untouched entities are written anew with the new column: the run
    # counted no conflict of theirs, and its log said there were.
    synced_with_one_tie(
        project,
        "CREATE TABLE plans (company_id VARCHAR, valid_from TIMESTAMPTZ, plan VARCHAR)",
        "INSERT INTO plans VALUES ('u1', '2024-01-01 00:00+00', 'free'), "
        "('u1', '2024-01-01 00:00+00', 'pro')",
    )

    assert_old_conflicts_untold(project, caplog, "ALTER TABLE plans ADD COLUMN seats INTEGER")
    hidden = "SELECT CAST(properties AS VARCHAR) FROM all_events ORDER BY ALL"
    assert project.query(hidden) == [
        ('{"plan":"free","seats":null}',),
        ('{"plan":"pro","seats":null}',),
    ]


@pytest.mark.backends("duckdb")
def test_a_run_that_decides_every_tie_again_counts_the_conflicts_of_changed_entities(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    # Dropping `plan` changes the order that decides ties: every tie is decided again, but
    # no key changed, so no entity is re-modelled as changed, and c1's conflict, old news,
    # is neither counted nor logged again. The run counted and logged it, with 0 entities.
    synced_with_one_tie(
        project,
        "CREATE TABLE plans (company_id VARCHAR, valid_from TIMESTAMPTZ, plan VARCHAR, "
        "seats INTEGER)",
        "INSERT INTO plans VALUES ('c1', '2024-01-01 00:00+00', 'free', 1), "
        "('c1', '2024-01-01 00:00+00', 'pro', 1), ('c2', '2024-01-01 00:00+00', 'x', 5)",
    )

    assert_old_conflicts_untold(project, caplog, "ALTER TABLE plans DROP COLUMN plan")
