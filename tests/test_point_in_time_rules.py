"""One story per point-in-time rule of DESIGN section 2, each answer worked out by hand.

Rules 1-9 and 11 live here or in test_reported_cases.py / test_configuration.py; rule
10 (deletes in mirror mode) belongs to mirror sync.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pitsync.errors import ConfigError, StrictModeError
from pitsync.queries.execute import QuerySession
from tests.conftest import (
    Project,
    company_history,
    configure_companies,
    configure_company_history,
    login_events,
    utc,
)


def plan_at(project: Project, company: str, moment: str) -> list[tuple]:
    """(plan, seats) rows of the interval holding the moment, via the temporal filter."""
    return project.query(
        "SELECT plan, seats FROM company_plan_history "
        f"FOR SYSTEM_TIME AS OF TIMESTAMPTZ '{moment}' WHERE company_id = '{company}'"
    )


def test_start_is_inclusive_and_end_exclusive(project: Project) -> None:
    company_history(
        project,
        [
            ("c1", "free", 1, "2024-01-01 00:00:00+00", None),
            ("c1", "pro", 5, "2024-02-01 00:00:00+00", None),
        ],
    )
    project.sync("company_plan_history")

    # At the start of the second row, it applies; one microsecond before, the first does.
    assert plan_at(project, "c1", "2024-02-01 00:00:00+00") == [("pro", 5)]
    assert plan_at(project, "c1", "2024-01-31 23:59:59.999999+00") == [("free", 1)]
    assert plan_at(project, "c1", "2024-01-01 00:00:00+00") == [("free", 1)]


def test_before_the_first_row_nothing_is_defined(project: Project) -> None:
    company_history(project, [("c1", "pro", 5, "2024-02-01 00:00:00+00", None)])
    project.sync("company_plan_history")

    # No back-filling of the first known value to earlier moments.
    assert plan_at(project, "c1", "2024-01-31 23:59:59.999999+00") == []
    profile = project.cli(
        "profile",
        "c1",
        "--group-key",
        "company_id",
        "--at",
        "2024-01-15T00:00:00Z",
        "--format",
        "json",
    )
    assert json.loads(profile.stdout) == {}


def test_end_is_the_next_higher_start_skipping_equal_starts(project: Project) -> None:
    company_history(
        project,
        [
            ("c1", "free", 1, "2024-01-01 00:00:00+00", "2024-01-01 00:00:01+00"),
            ("c1", "starter", 2, "2024-01-01 00:00:00+00", "2024-01-01 00:00:02+00"),
            ("c1", "pro", 5, "2024-03-01 00:00:00+00", None),
        ],
        tie_breaker="updated_at",
    )
    project.sync("company_plan_history")

    # Two rows share the January start: one interval, ending at March, none zero-length.
    rows = project.query(
        "SELECT plan, start_time, end_time FROM company_plan_history ORDER BY start_time"
    )
    assert rows == [
        ("starter", utc("2024-01-01T00:00:00Z"), utc("2024-03-01T00:00:00Z")),
        ("pro", utc("2024-03-01T00:00:00Z"), None),
    ]


def test_identical_duplicates_merge_silently(project: Project) -> None:
    row = ("c1", "pro", 5, "2024-01-01 00:00:00+00", "2024-01-01 00:00:05+00")
    company_history(project, [row, row, row])
    record = project.sync("company_plan_history")

    assert (record.rows_read, record.inserted, record.conflicts) == (3, 1, 0)
    hidden = project.query("SELECT count(*) FROM all_events WHERE event = 'company_plan_history'")
    assert hidden == [(1,)]


NEGATIVE_ZERO = "CAST('-0.0' AS DOUBLE)"  # a bare -0.0 is a DECIMAL, which has no sign


def score_history(project: Project, rows: list[str], **settings: str) -> None:
    """A history of company c1 from 1 Jan: score and rank DOUBLE, one row per SQL tuple."""
    project.source_sql(
        "CREATE OR REPLACE TABLE score_history (company_id VARCHAR, "
        "start_timestamp TIMESTAMPTZ, score DOUBLE, rank DOUBLE)",
        "INSERT INTO score_history VALUES "
        + ", ".join(f"('c1', '2024-01-01 00:00:00+00', {row})" for row in rows),
    )
    configure_companies(project, "score_history", "start_timestamp", **settings)


@pytest.mark.parametrize("negative_first", [True, False])
def test_zeros_of_either_sign_are_one_value_stored_as_positive_zero(
    project: Project, negative_first: bool
) -> None:
    # -0.0 and 0.0 are equal values, so rows differing only there are duplicates; what
    # the store holds must not depend on which the source listed first: 0.0.
    rows = [f"{NEGATIVE_ZERO}, 1.0", "0.0, 1.0"]
    score_history(project, rows if negative_first else rows[::-1])
    record = project.sync("score_history")

    assert (record.rows_read, record.inserted, record.conflicts) == (2, 1, 0)
    assert project.query("SELECT score, signbit(score) FROM score_history") == [(0.0, False)]


@pytest.mark.parametrize("negative_first", [True, False])
def test_zeros_of_either_sign_tie_so_the_next_column_decides(
    project: Project, negative_first: bool
) -> None:
    # score ties (-0.0 = 0.0), so rank decides: the greater rank, 1.0, wins (rule 4).
    rows = [f"{NEGATIVE_ZERO}, 1.0", "0.0, 0.0"]
    score_history(project, rows if negative_first else rows[::-1])
    record = project.sync("score_history")

    assert record.conflicts == 1
    assert project.query("SELECT score, signbit(score), rank FROM score_history") == [
        (0.0, False, 1.0)
    ]


def test_conflicts_with_equal_tie_breaker_resolve_the_same_in_any_order(
    project: Project,
) -> None:
    rows = [
        ("c1", "pro", 10, "2024-02-01 00:00:00+00", "2024-02-01 09:00:00+00"),
        ("c1", "team", 12, "2024-02-01 00:00:00+00", "2024-02-01 09:00:00+00"),
    ]
    company_history(project, rows, tie_breaker="updated_at")
    project.sync("company_plan_history")
    first = plan_at(project, "c1", "2024-02-02 00:00:00+00")

    company_history(project, list(reversed(rows)), tie_breaker="updated_at")
    record = project.sync("company_plan_history")
    second = plan_at(project, "c1", "2024-02-02 00:00:00+00")

    # The tie-breaker cannot decide; a rule independent of input order does, whole rows only.
    assert first == second
    assert first[0] in {("pro", 10), ("team", 12)}
    assert record.conflicts == 1


def test_null_ends_one_property_and_all_null_row_ends_everything(project: Project) -> None:
    company_history(
        project,
        [
            ("c1", "pro", 5, "2024-01-01 00:00:00+00", None),
            ("c1", "pro", None, "2024-02-01 00:00:00+00", None),
            ("c1", None, None, "2024-03-01 00:00:00+00", None),
            ("c1", "team", 8, "2024-04-01 00:00:00+00", None),
        ],
    )
    project.sync("company_plan_history")

    # NULL seats: undefined in February, not carried over from January.
    assert plan_at(project, "c1", "2024-02-15 00:00:00+00") == [("pro", None)]
    # The all-NULL row is an interval of its own: nothing is known in March.
    assert plan_at(project, "c1", "2024-03-15 00:00:00+00") == [(None, None)]
    profile = project.cli(
        "profile",
        "c1",
        "--group-key",
        "company_id",
        "--at",
        "2024-03-15T00:00:00Z",
        "--format",
        "json",
    )
    assert json.loads(profile.stdout) == {}
    assert plan_at(project, "c1", "2024-04-01 00:00:00+00") == [("team", 8)]


def test_future_start_applies_only_from_its_moment(project: Project) -> None:
    company_history(
        project,
        [
            ("c1", "pro", 5, "2024-01-01 00:00:00+00", None),
            ("c1", "enterprise", 50, "2999-01-01 00:00:00+00", None),
        ],
    )
    project.sync("company_plan_history")

    # "Now" is before 2999: the latest profile is still pro.
    now = project.cli("profile", "c1", "--group-key", "company_id", "--format", "json")
    assert json.loads(now.stdout) == {"plan": "pro", "seats": 5}
    assert plan_at(project, "c1", "2999-06-01 00:00:00+00") == [("enterprise", 50)]


def test_integer_and_text_ids_are_the_same_entity_and_not_trimmed(project: Project) -> None:
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id BIGINT, plan VARCHAR, "
        "start_timestamp TIMESTAMPTZ)",
        "INSERT INTO company_plan_history VALUES (123, 'pro', '2024-01-01 00:00:00+00')",
    )
    configure_company_history(project)
    project.sync("company_plan_history")

    assert project.query(
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF "
        "TIMESTAMPTZ '2024-06-01 00:00:00+00' WHERE company_id = '123'"
    ) == [("pro",)]
    assert project.query("SELECT count(*) FROM company_plan_history WHERE company_id = ' 123'") == [
        (0,)
    ]


def test_bad_rows_are_quarantined_with_reasons_and_counted(project: Project) -> None:
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id VARCHAR, plan VARCHAR, "
        "start_timestamp VARCHAR)",
        "INSERT INTO company_plan_history VALUES "
        "('c1', 'pro', '2024-01-01 00:00:00+00'), (NULL, 'pro', '2024-01-01'), "
        "('c2', 'free', NULL), ('c3', 'team', 'last tuesday')",
    )
    configure_company_history(project)
    record = project.sync("company_plan_history")

    assert (record.rows_read, record.inserted, record.quarantined) == (4, 1, 3)
    reasons = project.query("SELECT reason FROM quarantine ORDER BY reason")
    assert reasons == [("missing id",), ("missing start time",), ("unreadable start time",)]
    kept = project.query(
        "SELECT row_data->>'start_timestamp' FROM quarantine WHERE reason = 'unreadable start time'"
    )
    assert kept == [("last tuesday",)]


def test_strict_run_with_bad_rows_applies_nothing(project: Project) -> None:
    company_history(project, [("c1", "pro", 5, "2024-01-01 00:00:00+00", None)])
    project.sync("company_plan_history")
    company_history(
        project,
        [("c1", "team", 9, "2024-01-01 00:00:00+00", None), (None, "x", 1, "2024-01-01", None)],
    )

    with pytest.raises(StrictModeError, match="1 bad rows and --strict is set"):
        project.sync("company_plan_history", strict=True)

    # The store still holds the first run's answer, and no quarantine from the failed one.
    assert plan_at(project, "c1", "2024-06-01 00:00:00+00") == [("pro", 5)]
    assert project.query("SELECT count(*) FROM quarantine") == [(0,)]
    assert project.query("SELECT status FROM runs ORDER BY run_id") == [("succeeded",), ("failed",)]


TIME_CASES = [
    # (source type, stored value, table settings, the instant it means), worked by hand.
    ("TIMESTAMPTZ", "'2024-03-01 09:00:00+09:00'", {}, "2024-03-01T00:00:00Z"),
    ("TIMESTAMP", "'2024-03-01 00:00:00'", {}, "2024-03-01T00:00:00Z"),
    (
        "TIMESTAMP",
        "'2024-03-01 00:00:00'",
        {"timezone": "America/New_York"},
        "2024-03-01T05:00:00Z",
    ),
    ("DATE", "'2024-03-01'", {"timezone": "Europe/Berlin"}, "2024-02-29T23:00:00Z"),
    ("BIGINT", "1709251200", {"time_unit": "s"}, "2024-03-01T00:00:00Z"),
    ("BIGINT", "1709251200123", {"time_unit": "ms"}, "2024-03-01T00:00:00.123Z"),
    ("BIGINT", "1709251200123456", {"time_unit": "us"}, "2024-03-01T00:00:00.123456Z"),
    ("VARCHAR", "'2024-03-01T01:00:00+01:00'", {}, "2024-03-01T00:00:00Z"),
    ("VARCHAR", "'2024-03-01 00:00:00'", {"timezone": "Asia/Tokyo"}, "2024-02-29T15:00:00Z"),
    # Text that names its zone is that instant, whatever the table's zone.
    ("VARCHAR", "'2024-03-01 00:00:00 UTC'", {"timezone": "Asia/Tokyo"}, "2024-03-01T00:00:00Z"),
    (
        "VARCHAR",
        "'2024-03-01 00:00:00 America/New_York'",
        {"timezone": "Europe/Berlin"},
        "2024-03-01T05:00:00Z",
    ),
    ("VARCHAR", "'2024-03-01 01:00:00 +01:00'", {"timezone": "Asia/Tokyo"}, "2024-03-01T00:00:00Z"),
    # Naive text in less usual shapes is naive too, read in the table's zone (New York is
    # five hours behind UTC in winter), never taken for UTC.
    ("VARCHAR", "'2024-1-5 9:00:00'", {"timezone": "America/New_York"}, "2024-01-05T14:00:00Z"),
    ("VARCHAR", "'2024-01-05  9:00'", {"timezone": "America/New_York"}, "2024-01-05T14:00:00Z"),
    ("VARCHAR", "'2024-01-05 9:2:3'", {"timezone": "America/New_York"}, "2024-01-05T14:02:03Z"),
    ("VARCHAR", "'2024-01-05T09:00:00.'", {"timezone": "America/New_York"}, "2024-01-05T14:00:00Z"),
    ("VARCHAR", "'2024-01-05'", {"timezone": "America/New_York"}, "2024-01-05T05:00:00Z"),
    ("VARCHAR", "'2024-01-05T09:00:00-05'", {"timezone": "Asia/Tokyo"}, "2024-01-05T14:00:00Z"),
    # A zone written as a name with an offset; an offset or `Z` with a line end after it.
    (
        "VARCHAR",
        "'2024-07-01 09:00:00 UTC-05:00'",
        {"timezone": "Europe/Berlin"},
        "2024-07-01T14:00:00Z",
    ),
    (
        "VARCHAR",
        "'2024-07-01T09:00:00+01:00' || chr(10)",
        {"timezone": "Europe/Berlin"},
        "2024-07-01T08:00:00Z",
    ),
    (
        "VARCHAR",
        "chr(9) || '2024-07-01T09:00:00Z'",
        {"timezone": "Europe/Berlin"},
        "2024-07-01T09:00:00Z",
    ),
    # An offset after UTC or GMT keeps its minutes; `Z` may follow a blank or be lower case;
    # +14:00 (Kiribati) is the furthest a zone is from UTC.
    ("VARCHAR", "'2024-07-01 09:00:00 UTC+05:30'", {}, "2024-07-01T03:30:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 gmt-0530'", {}, "2024-07-01T14:30:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 UTC-5:30'", {}, "2024-07-01T14:30:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 UTC+5'", {}, "2024-07-01T04:00:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 UTC+05:30:15'", {}, "2024-07-01T03:29:45Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 UTC +05:30'", {}, "2024-07-01T03:30:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 Z'", {"timezone": "Asia/Tokyo"}, "2024-07-01T09:00:00Z"),
    ("VARCHAR", "'2024-07-01T09:00:00z'", {"timezone": "Asia/Tokyo"}, "2024-07-01T09:00:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00+14:00'", {}, "2024-06-30T19:00:00Z"),
    # Short names of the zone database name one zone each, in any case: Japan is nine
    # hours ahead of UTC, EST5EDT is New York's rules (summer: four hours behind).
    ("VARCHAR", "'2024-07-01 09:00:00 Japan'", {}, "2024-07-01T00:00:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 utc'", {"timezone": "Asia/Tokyo"}, "2024-07-01T09:00:00Z"),
    ("VARCHAR", "'2024-07-01 09:00:00 EST5EDT'", {}, "2024-07-01T13:00:00Z"),
]


@pytest.mark.parametrize(("column_type", "value", "settings", "instant"), TIME_CASES)
def test_start_times_are_read_as_utc_instants(
    project: Project, column_type: str, value: str, settings: dict, instant: str
) -> None:
    project.source_sql(
        f"CREATE TABLE company_plan_history (company_id VARCHAR, plan VARCHAR, "
        f"start_timestamp {column_type})",
        f"INSERT INTO company_plan_history VALUES ('c1', 'pro', {value})",
    )
    configure_company_history(project, **settings)
    project.sync("company_plan_history")

    assert project.query("SELECT start_time FROM company_plan_history") == [(utc(instant),)]


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-01 00:00:00 garbage",
        # An abbreviation names several zones (BST: British summer, or Bangladesh).
        "2024-07-01 09:00:00 BST",
        "2024-07-01 09:00:00 PST",
        "2024-07-01 09:00:00 bst",
        "2024-07-01 09:00:00.5 Ist",
        # +01:00 all year as an abbreviation, +02:00 in July as the zone database's zone.
        "2024-07-01 09:00:00 CET",
        # No zone is 99 or 15 hours from UTC.
        "2024-07-01 09:00:00+99",
        "2024-07-01 09:00:00+15:00",
        "2024-07-01 09:00:00+14:30",
        "2024-07-01 09:00:00 UTC+15",
        # A negative offset past 14 hours, or no offset at all: DuckDB's naive cast would
        # drop it and read the time as naive.
        "2024-07-01 09:00:00-16:00",
        "2024-07-01 09:00:00-05:30:99",
        # A year of two digits: DuckDB would read the year 99.
        "99-07-01 09:00:00",
    ],
)
def test_text_with_anything_after_the_time_that_is_no_zone_is_quarantined(
    project: Project, text: str
) -> None:
    # DuckDB's TIMESTAMP cast would read each as a naive time and drop the rest; its
    # TIMESTAMPTZ cast reads the abbreviations as zones of its own choosing.
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id VARCHAR, plan VARCHAR, "
        "start_timestamp VARCHAR)",
        f"INSERT INTO company_plan_history VALUES ('c1', 'pro', '{text}')",
    )
    configure_company_history(project)

    record = project.sync("company_plan_history")

    assert (record.inserted, record.quarantined) == (0, 1)
    assert project.query("SELECT reason FROM quarantine") == [("unreadable start time",)]


def test_nanosecond_parquet_times_are_truncated_not_rounded(project: Project) -> None:
    nanos = 1_706_745_599_999_999_999  # 2024-01-31T23:59:59.999999999Z
    pq.write_table(
        pa.table(
            {
                "company_id": ["c1"],
                "plan": ["pro"],
                "start_timestamp": pa.array([nanos], pa.timestamp("ns", tz="UTC")),
            }
        ),
        project.root / "history.parquet",
    )
    project.write_config(
        '[sources.files]\ntype = "parquet"\npath = "history.parquet"\n'
        "[tables.company_plan_history]\n"
        'source = "files"\nkind = "group_history"\nid_column = "company_id"\n'
        'group_key = "company_id"\nstart_time = "start_timestamp"\n'
    )
    project.sync("company_plan_history")

    stored = project.query("SELECT start_time FROM company_plan_history")
    assert stored == [(utc("2024-01-31T23:59:59.999999Z"),)]


def test_a_float_start_column_is_a_configuration_error(project: Project) -> None:
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id VARCHAR, start_timestamp DOUBLE)"
    )
    configure_company_history(project)

    with pytest.raises(ConfigError, match="column `start_timestamp` .* has type double"):
        project.sync("company_plan_history")
    assert not project.store.exists()


def test_a_condition_in_the_as_of_join_tests_the_interval_holding_the_moment(
    project: Project,
) -> None:
    # A is pro for January, free for February, undefined from March; B is always pro.
    company_history(
        project,
        [
            ("A", "pro", 10, "2024-01-01 00:00:00+00", None),
            ("A", "free", 1, "2024-02-01 00:00:00+00", None),
            ("A", None, None, "2024-03-01 00:00:00+00", None),
            ("B", "pro", 3, "2024-01-01 00:00:00+00", None),
        ],
    )
    login_events(
        project,
        [
            ("e1", "A", "2024-01-15 00:00:00+00"),
            ("e2", "A", "2024-02-15 00:00:00+00"),
            ("e3", "A", "2024-03-15 00:00:00+00"),
            ("e4", "B", "2024-03-15 00:00:00+00"),
        ],
    )
    project.sync("company_plan_history")
    project.sync("product_events")
    on_pro = (
        "SELECT e.insert_id, h.plan, h.seats FROM events AS e "
        "{side} JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id AND h.plan = 'pro' ORDER BY e.insert_id"
    )

    # Only e1 and e4 happened while their company was on pro: e2 and e3 must not reach
    # back to A's ended January interval.
    assert project.query(on_pro.format(side="LEFT")) == [
        ("e1", "pro", 10),
        ("e2", None, None),
        ("e3", None, None),
        ("e4", "pro", 3),
    ]
    assert project.query(on_pro.format(side="")) == [("e1", "pro", 10), ("e4", "pro", 3)]
    with QuerySession(project.store) as session:
        star = session.query(
            "SELECT * FROM events AS e JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time "
            "AS h ON h.company_id = e.company_id AND h.seats > 5"
        )
        assert len(star.fetchall()) == 1
        assert not [name for name in star.columns if name.startswith("__")]


def test_an_integer_id_of_the_event_side_joins_the_id_of_the_same_text(project: Project) -> None:
    # 100 is the entity "100" (rule 7), not "0100", which an integer cast would also make
    # 100; and the id "u1", which no integer cast can read, must not fail the query.
    company_history(
        project,
        [
            ("100", "basic", 1, "2024-01-01 00:00:00+00", None),
            ("0100", "zero", 2, "2024-02-01 00:00:00+00", None),
            ("u1", "other", 3, "2024-01-01 00:00:00+00", None),
        ],
    )
    project.source_sql(
        "CREATE OR REPLACE TABLE events (insert_id VARCHAR, event VARCHAR, "
        "distinct_id VARCHAR, account INTEGER, label VARCHAR, time TIMESTAMPTZ)",
        "INSERT INTO events VALUES ('e1', 'login', 'x', 100, 'u1', '2024-03-01 00:00:00+00'), "
        "('e2', 'login', 'x', 7, NULL, '2024-03-01 00:00:00+00')",
    )
    project.configure("product_events", kind="events", **{"from": "events"})
    project.sync("company_plan_history")
    project.sync("product_events")
    joined = (
        "SELECT e.insert_id, h.company_id, h.plan FROM events AS e "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.properties->>'account'{more} ORDER BY e.insert_id"
    )
    typed = (
        "SELECT e.insert_id, h.company_id, h.plan FROM events AS e "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON CAST(e.properties->>'account' AS INTEGER) = h.company_id{more} ORDER BY e.insert_id"
    )
    expected = [("e1", "100", "basic"), ("e2", None, None)]

    assert project.query(joined.format(more="")) == expected
    assert project.query(typed.format(more="")) == expected
    assert project.query(typed.format(more=" AND h.seats < 5")) == expected
    # A JSON value taken with `->` is its text: the number 100 is `100`, the string "u1"
    # is `u1`, without its quotes.
    spellings = ["e.properties->'{key}'", "(e.properties->'{key}')", "e.properties.{key}"]
    spellings += ["e.properties['{key}']", "json_extract(e.properties, '{key}')"]
    for key, company, plan in (("account", "100", "basic"), ("label", "u1", "other")):
        for spelling in spellings:
            by_json = (
                "SELECT e.insert_id, h.company_id, h.plan FROM events AS e "
                "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
                f"ON h.company_id = {spelling.format(key=key)} ORDER BY e.insert_id"
            )
            assert project.query(by_json) == [("e1", company, plan), ("e2", None, None)]


def test_an_events_column_named_like_a_group_key_in_another_case_is_that_key(
    project: Project,
) -> None:
    # Names compare without case in the store, so `Company_Id` is the group key
    # company_id: its integers are stored as text, and a plain join compares text, where
    # an integer column would make `007` equal to 7.
    company_history(
        project,
        [
            ("7", "seven", 1, "2024-01-01 00:00:00+00", None),
            ("007", "agent", 2, "2024-01-01 00:00:00+00", None),
        ],
    )
    project.source_sql(
        "CREATE OR REPLACE TABLE events (event VARCHAR, distinct_id VARCHAR, "
        '"Company_Id" INTEGER, time TIMESTAMPTZ)',
        "INSERT INTO events VALUES ('login', 'x', 7, '2024-03-01 00:00:00+00')",
    )
    project.configure("product_events", kind="events", **{"from": "events"})
    project.sync("company_plan_history")
    project.sync("product_events")

    assert project.query("SELECT typeof(Company_Id) FROM events") == [("VARCHAR",)]
    plain = (
        "SELECT h.plan FROM events AS e "
        "JOIN company_plan_history AS h ON h.company_id = e.company_id"
    )
    assert project.query(plain) == [("seven",)]


@pytest.mark.backends("duckdb")
def test_a_property_two_events_tables_type_differently_is_its_text_in_events(
    project: Project,
) -> None:
    # `x` is a time in one table and a number in the other: DuckDB could not read them as
    # one column. `flag` is a boolean and a number: DuckDB would show true as 1. Numbers
    # with a fraction are doubles: DuckDB would cut `price` 1.5 to the other's scale, 2.
    # An integer mixed with a fraction is text: as a double, `amount` 2 would read 2.0,
    # and `fee` 3e9 would not fit the other's DECIMAL(38, 30). Integers stay integers.
    project.source_sql(
        "CREATE TABLE signups (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ, "
        "x TIMESTAMP, flag BOOLEAN, amount INTEGER, price DECIMAL(38, 18), fee BIGINT, "
        "seats INTEGER)",
        "INSERT INTO signups VALUES ('signup', 'u1', '2024-01-01 00:00:00+00', "
        "'2024-01-01 10:00:00', true, 2, 1.5, 3000000000, 4)",
        "CREATE TABLE orders (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ, "
        "x BIGINT, flag BIGINT, amount DOUBLE, price DECIMAL(38, 0), fee DECIMAL(38, 30), "
        "seats BIGINT)",
        "INSERT INTO orders VALUES ('order', 'u1', '2024-01-02 00:00:00+00', 5, 1, 2.5, 3, "
        "0.25, 9000000000)",
    )
    project.configure("signups", kind="events")
    project.configure("orders", kind="events")
    project.sync("signups")
    project.sync("orders")

    columns = "event, x, flag, amount, price, fee, seats"
    assert project.query(f"SELECT {columns} FROM events ORDER BY time") == [
        ("signup", "2024-01-01 10:00:00", "true", "2", 1.5, "3000000000", 4),
        ("order", "5", "1", "2.5", 3.0, "0." + "25".ljust(30, "0"), 9000000000),
    ]
    assert project.query("SELECT typeof(seats) FROM events LIMIT 1") == [("BIGINT",)]


@pytest.mark.backends("duckdb")
def test_an_integer_id_keeps_its_text_in_events_when_another_table_holds_it_as_a_double(
    project: Project,
) -> None:
    """A second events table holding `account` as a double leaves the first table's
    integer 100 the id `100`, so its as-of join still finds company 100."""
    project.source_sql(
        "CREATE TABLE org_plans (org BIGINT, valid_from TIMESTAMPTZ, plan VARCHAR)",
        "INSERT INTO org_plans VALUES (100, '2024-01-01 00:00:00+00', 'pro')",
        "CREATE TABLE web (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ, account BIGINT)",
        "INSERT INTO web VALUES ('web', 'u1', '2024-02-01 00:00:00+00', 100)",
        "CREATE TABLE app (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ, account DOUBLE)",
        "INSERT INTO app VALUES ('app', 'u2', '2024-02-01 00:00:00+00', 2.5)",
    )
    project.configure(
        "org_plans",
        kind="group_history",
        id_column="org",
        group_key="org_id",
        start_time="valid_from",
    )
    project.configure("web", kind="events")
    project.configure("app", kind="events")
    for table in ("org_plans", "web", "app"):
        project.sync(table)

    assert project.query(
        "SELECT e.event, e.account, h.plan FROM events AS e "
        "LEFT JOIN org_plans FOR SYSTEM_TIME AS OF e.time AS h ON h.org = e.account "
        "ORDER BY e.event"
    ) == [("app", "2.5", None), ("web", "100", "pro")]


@pytest.mark.backends("duckdb")
def test_an_event_without_a_user_is_kept_as_anonymous_and_one_without_a_name_is_not(
    project: Project,
) -> None:
    project.source_sql(
        "CREATE TABLE events (event VARCHAR, distinct_id VARCHAR, time TIMESTAMPTZ)",
        "INSERT INTO events VALUES ('view', NULL, '2024-01-01 00:00:00+00'), "
        "('view', '', '2024-01-02 00:00:00+00'), ('view', 'u1', '2024-01-03 00:00:00+00'), "
        "(NULL, 'u1', '2024-01-04 00:00:00+00'), ('', 'u1', '2024-01-05 00:00:00+00')",
    )
    project.configure("events", kind="events")
    record = project.sync("events")

    assert (record.rows_read, record.inserted, record.quarantined) == (5, 3, 2)
    assert project.query("SELECT distinct_id FROM events ORDER BY time") == [
        (None,),
        ("",),
        ("u1",),
    ]
    assert project.query("SELECT reason FROM quarantine") == [("missing event name",)] * 2
