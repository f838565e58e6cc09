"""The temporal rewrite, case by case: each query and the DuckDB SQL it must run as."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from pitsync.errors import QueryError, QueryRefused
from pitsync.modeling.timestamps import beyond_moments_sql, spelled_moment, text_sql
from pitsync.queries.execute import QuerySession, translate
from pitsync.queries.temporal import moment_text_problem
from pitsync.quoting import quote_string
from tests.conftest import Project, company_history, login_events

FIXTURES = Path(__file__).parent / "fixtures" / "temporal_rewrites.sql"
RELATIONS = {"h", "u", "events"}
HISTORY = {"h": "company_id", "u": "user_id"}


def rewrite_cases() -> list[tuple[str, str]]:
    """The (query, expected) pairs of the fixture file."""
    text = "\n".join(
        line for line in FIXTURES.read_text().splitlines() if not line.startswith("--")
    )
    pairs = []
    for block in text.strip().split("\n\n"):
        query, expected = block.split("\n=>\n")
        pairs.append((query.strip(), expected.strip()))
    return pairs


def normalised(sql: str) -> str:
    return sqlglot.parse_one(sql, read="duckdb").sql("duckdb")


@pytest.mark.parametrize(("query", "expected"), rewrite_cases())
def test_temporal_query_runs_as_native_duckdb(query: str, expected: str) -> None:
    assert translate(query, RELATIONS, HISTORY) == normalised(expected)


REFUSED = [
    ("SELECT * FROM events FOR SYSTEM_TIME AS OF now()", "applies to history tables"),
    ("SELECT * FROM h FOR SYSTEM_TIME BETWEEN '2024-01-01' AND '2024-02-01'", "not supported"),
    (
        "SELECT * FROM events AS e LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id OR h.plan = 'pro'",
        "needs ON h.company_id = ",
    ),
    (
        "SELECT * FROM events AS e JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.plan = e.company_id",
        "needs ON h.company_id = ",
    ),
    (
        "SELECT * FROM events AS e JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = h.plan",
        "needs ON h.company_id = ",
    ),
    (
        "SELECT * FROM events AS e FULL JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id",
        "only JOIN, LEFT JOIN, SEMI JOIN and ANTI JOIN take .* not FULL JOIN",
    ),
    (
        "SELECT * FROM events AS e RIGHT JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id",
        "not RIGHT JOIN",
    ),
    ("SELECT * FROM events AS e CROSS JOIN h FOR SYSTEM_TIME AS OF e.time AS h", "not CROSS JOIN"),
    ("SELECT * FROM events AS e NATURAL JOIN h FOR SYSTEM_TIME AS OF e.time", "not NATURAL JOIN"),
    (
        "SELECT * FROM events AS e ASOF LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id",
        "not ASOF LEFT JOIN",
    ),
    ("SELECT * FROM events AS e, h FOR SYSTEM_TIME AS OF e.time", "needs ON h.company_id = "),
    ("SELECT * FROM h FOR SYSTEM_TIME AS OF now() TABLESAMPLE 1 ROWS", "sample the result"),
    (
        "SELECT * FROM events AS e WHERE EXISTS (SELECT 1 FROM (SELECT 1) AS x(i) "
        "JOIN h FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id)",
        r"takes its moment \(e.time\) from an outer query, which is not supported",
    ),
    (
        "SELECT (SELECT p.plan FROM (SELECT e.company_id AS c) AS x LEFT JOIN h "
        "FOR SYSTEM_TIME AS OF e.time + INTERVAL 1 DAY AS p ON p.company_id = x.c) "
        "FROM events AS e",
        "from an outer query",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01 00:00:00+15:00'",
        "no zone is more than 14 hours from UTC",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMP '2024-03-01 00:00-1500' + INTERVAL 1 DAY",
        "no zone is more than 14 hours from UTC",
    ),
    (
        "WITH h AS (SELECT * FROM main.h WHERE plan = 'pro') "
        "SELECT * FROM h FOR SYSTEM_TIME AS OF now()",
        "`h` here is a CTE of the query; rename the CTE, or write `main.h`",
    ),
    (
        "WITH h AS (SELECT * FROM main.h WHERE plan = 'pro') SELECT * FROM events AS e "
        "LEFT JOIN (SELECT 1) AS x ON true LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS p "
        "ON p.company_id = e.company_id",
        "`h` here is a CTE",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMP '2024-03-01 00:00 BST' + INTERVAL 1 DAY",
        "the moment '2024-03-01 00:00 BST' is refused",
    ),
    (
        "SELECT h.p FROM events AS e LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS h(id, s, t, p) "
        "ON h.id = e.company_id",
        "without column names",
    ),
    # No zone is more than 14 hours from UTC: not +14:30, nor 15 hours after GMT.
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01 00:30:00+14:30'",
        "no zone is more than 14 hours from UTC",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01 00:30:00 GMT+15'",
        "no zone is more than 14 hours from UTC",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF timezone('BST', TIMESTAMP '2024-03-01 00:30')",
        "the zone 'BST' is refused",
    ),
    # Text DuckDB reads as a time, where rule 6 reads none: no date and time at all.
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ 'infinity'",
        "the moment 'infinity' is refused: it is no date and time",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF CAST('epoch' AS TIMESTAMP) + INTERVAL 1 DAY",
        "the moment 'epoch' is refused",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF DATE '2024-02-01 (BC)'",
        r"the moment '2024-02-01 \(BC\)' is refused",
    ),
    ("SELECT count(*) FROM h FOR SYSTEM_TIME AS OF", "needs a moment after it"),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF (SELECT x AT TIME ZONE 'America/New_York' "
        "FROM (SELECT TIMESTAMP '2024-03-01 00:30+05' AS x))",
        "leave its offset or zone out",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMP '12024-03-01 00:30:00'",
        "write the year with four digits",
    ),
    ("SELECT * FROM h FOR SYSTEM_TIME AS OF DATE '24-07-01'", "write the year with four digits"),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMP '2024-07-01 00:30:00+05:99'",
        "minutes and seconds run from 00 to 59",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01 00:30:00+14:00:01'",
        "no zone is more than 14 hours from UTC",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF TIMESTAMP '24-03-01 00:30:00'",
        "write the year with four digits",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF "
        "TIMESTAMP '2024-03-01 00:30:00+05' AT TIME ZONE 'America/New_York'",
        "leave its offset or zone out",
    ),
    (
        "SELECT * FROM h FOR SYSTEM_TIME AS OF "
        "TIMESTAMP '2024-03-01 00:30' AT TIME ZONE 'UTC+05:30'",
        "DuckDB would drop its minutes",
    ),
    ("SELECT count(*) FROM h FOR SYSTEM_TIME AS OF WHERE true", "needs a moment after it"),
    ("SELECT * FROM h FOR VERSION AS OF 3", "FOR VERSION AS OF is not supported"),
    (
        "SELECT * FROM h FOR VERSION AS OF TIMESTAMP '2024-02-15 00:00:00'",
        "keeps no versions of a table",
    ),
]


@pytest.mark.parametrize(("query", "message"), REFUSED)
def test_temporal_forms_that_cannot_be_answered_are_refused(query: str, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        translate(query, RELATIONS, HISTORY)


# --- the rewritten joins, run on a small store ----------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """c1 is free from 1 January and pro from 1 February; c2 is on team from 15 January;
    c3 has no history. e3 comes before c2's first row, so no interval holds it."""
    project = Project(root=tmp_path_factory.mktemp("joins"))
    company_history(
        project,
        [
            ("c1", "free", 1, "2024-01-01 00:00:00+00", None),
            ("c1", "pro", 5, "2024-02-01 00:00:00+00", None),
            ("c2", "team", 9, "2024-01-15 00:00:00+00", None),
        ],
    )
    login_events(
        project,
        [
            ("e1", "c1", "2024-01-10 00:00:00+00"),
            ("e2", "c1", "2024-02-10 00:00:00+00"),
            ("e3", "c2", "2024-01-10 00:00:00+00"),
            ("e4", "c3", "2024-01-10 00:00:00+00"),
            ("e5", "c2", "2024-01-20 00:00:00+00"),
        ],
    )
    project.sync("company_plan_history")
    project.sync("product_events")
    return project


def event_ids(project: Project, sql: str) -> list[str]:
    with QuerySession(project.store) as session:
        return sorted(str(row[0]) for row in session.query(sql).fetchall())


AS_OF = "company_plan_history FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id"


@pytest.mark.parametrize(
    ("join", "condition", "expected"),
    [
        ("ANTI JOIN", "", ["e3", "e4"]),
        ("LEFT ANTI JOIN", "", ["e3", "e4"]),
        ("SEMI JOIN", "", ["e1", "e2", "e5"]),
        ("LEFT SEMI JOIN", "", ["e1", "e2", "e5"]),
        # e2's holding interval is pro; its older free one must not count.
        ("ANTI JOIN", " AND h.plan = 'free'", ["e2", "e3", "e4", "e5"]),
        ("SEMI JOIN", " AND h.plan = 'free'", ["e1"]),
        ("SEMI JOIN", " AND h.plan = 'pro'", ["e2"]),
    ],
)
def test_semi_and_anti_joins_test_the_interval_holding_the_moment(
    store: Project, join: str, condition: str, expected: list[str]
) -> None:
    sql = f"SELECT e.insert_id FROM events AS e {join} {AS_OF}{condition}"
    assert event_ids(store, sql) == expected


# Each event of the store with the plan its company had at its moment.
EACH_EVENT_WITH_ITS_PLAN = [
    ("e1", "free"),
    ("e2", "pro"),
    ("e3", None),
    ("e4", None),
    ("e5", "team"),
]


# Each event of the store with the plan c1 had at its moment.
EACH_EVENT_WITH_C1S_PLAN = [
    ("e1", "free"),
    ("e2", "pro"),
    ("e3", "free"),
    ("e4", "free"),
    ("e5", "free"),
]


def rows(project: Project, sql: str) -> list[tuple]:
    with QuerySession(project.store) as session:
        return sorted(session.query(sql).fetchall())


def test_a_from_first_as_of_join_with_another_condition_tests_the_holding_interval(
    store: Project,
) -> None:
    sql = f"FROM events AS e LEFT JOIN {AS_OF} AND h.plan = 'pro' SELECT e.insert_id, h.plan"
    assert rows(store, sql) == [
        ("e1", None),
        ("e2", "pro"),
        ("e3", None),
        ("e4", None),
        ("e5", None),
    ]


def test_a_from_first_as_of_join_shows_no_columns_of_its_own(store: Project) -> None:
    with QuerySession(store.store) as session:
        relation = session.query(f"FROM events AS e JOIN {AS_OF} AND h.plan = 'pro'")
        assert not [name for name in relation.columns if name.startswith("__asof")]
        assert len(relation.fetchall()) == 1


def test_an_as_of_join_in_parentheses_with_another_condition_tests_the_holding_interval(
    store: Project,
) -> None:
    sql = f"SELECT count(h.plan) FROM (events AS e LEFT JOIN {AS_OF} AND h.plan = 'free')"
    assert rows(store, sql) == [(1,)]  # e1 only: e2's free interval no longer holds


def test_left_outer_join_is_a_left_join(store: Project) -> None:
    sql = f"SELECT e.insert_id, h.plan FROM events AS e LEFT OUTER JOIN {AS_OF}"
    assert rows(store, sql) == EACH_EVENT_WITH_ITS_PLAN


@pytest.mark.parametrize(
    ("moment", "plan"),
    [
        # 23:31 UTC on 31 January: c1 was still on free (pro starts at midnight UTC).
        ("TIMESTAMP '2024-02-01 04:30:00+05' + INTERVAL 1 MINUTE", "free"),
        ("TIMESTAMP '2024-02-01 04:31:00+05' - INTERVAL 0 MINUTE", "free"),
        # 00:31 UTC on 1 February, New York being five hours behind in winter: pro.
        ("TIMESTAMP '2024-01-31 19:30:00 America/New_York' + INTERVAL 1 MINUTE", "pro"),
        ("TIMESTAMP_MS '2024-02-01 04:30:00+05' + INTERVAL 1 MINUTE", "free"),
        # A wall-clock time read in a zone: 05:20 in Karachi (five hours ahead) is 00:20
        # UTC on 1 February, pro; 04:50 there is 23:50 UTC the day before, free.
        ("TIMESTAMP '2024-02-01 05:20:00' AT TIME ZONE 'Asia/Karachi'", "pro"),
        ("timezone('Asia/Karachi', TIMESTAMP '2024-02-01 04:50:00')", "free"),
        # However deep the time sits in what is shifted: 19:20 in New York is 00:20 UTC.
        (
            "(TIMESTAMP '2024-01-31 19:19:00' + INTERVAL 1 MINUTE) AT TIME ZONE 'America/New_York'",
            "pro",
        ),
        ("coalesce(TIMESTAMP '2024-01-31 18:50:00') AT TIME ZONE 'America/New_York'", "free"),
        # After UTC an offset keeps its minutes: 05:20 at UTC+05:30 is 23:50 UTC, free.
        ("TIMESTAMPTZ '2024-02-01 05:20:00 UTC+05:30'", "free"),
        ("TIMESTAMPTZ '2024-02-01 06:20:00 UTC+05:30'", "pro"),
        ("TIMESTAMPTZ '2024-02-01 00:20:00 Z'", "pro"),
        # A time cast to a date is the start of its day, as DuckDB reads it: 1 February.
        ("CAST('2024-01-31 23:30:00' AS DATE) + INTERVAL 1 DAY", "pro"),
        ("DATE '2024-01-31 23:59'", "free"),
        # A shift applied to a CTE's column reads the time written there as a wall clock.
        (
            "(WITH m AS (SELECT TIMESTAMP '2024-01-31 19:20' AS x) "
            "SELECT x AT TIME ZONE 'America/New_York' FROM m)",
            "pro",
        ),
    ],
)
def test_a_literal_in_a_moment_expression_keeps_its_offset(
    store: Project, moment: str, plan: str
) -> None:
    sql = f"SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF {moment}"
    assert rows(store, sql + " WHERE company_id = 'c1'") == [(plan,)]


@pytest.mark.parametrize(
    ("moment", "plan"),
    [
        # c1 turns pro at 00:00 on 1 February. A time of nanoseconds is cut to the
        # microsecond (rule 6), never rounded up into the next interval.
        ("TIMESTAMP_NS '2024-01-31 23:59:58.9999999' + INTERVAL 1 SECOND", "free"),
        ("CAST(TIMESTAMP '2024-02-01 00:00:00' AS TIMESTAMP_NS)", "pro"),
        ("(SELECT CAST('2024-01-31 23:59:59.999999999' AS TIMESTAMP_NS))", "free"),
        ("(SELECT CAST('2024-02-01 00:00:00.000000001' AS TIMESTAMP_NS))", "pro"),
    ],
)
def test_a_moment_of_nanoseconds_is_cut_to_the_microsecond(
    store: Project, moment: str, plan: str
) -> None:
    sql = f"SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF {moment}"
    assert rows(store, sql + " WHERE company_id = 'c1'") == [(plan,)]


# Moments of nanoseconds, each next to a start: c1 is pro from 1 February, c2 on team
# from 15 January.
NANOSECOND_MOMENTS = (
    "(SELECT * FROM (VALUES "
    "('a', 'c1', TIMESTAMP_NS '2024-01-31 23:59:59.9999995'), "
    "('b', 'c1', TIMESTAMP_NS '2024-02-01 00:00:00'), "
    "('c', 'c2', TIMESTAMP_NS '2024-01-14 23:59:59.999999999'), "
    "('d', 'c2', TIMESTAMP_NS '2024-01-15 00:00:00.000000001'), "
    "('e', 'c1', NULL)) AS v(k, company_id, t))"
)


@pytest.mark.parametrize("condition", ["", " AND h.seats > 0"], ids=["id-only", "tested"])
def test_an_as_of_join_on_a_column_of_nanoseconds_cuts_each_to_the_microsecond(
    store: Project, condition: str
) -> None:
    sql = (
        f"SELECT m.k, h.plan FROM {NANOSECOND_MOMENTS} AS m LEFT JOIN company_plan_history "
        f"FOR SYSTEM_TIME AS OF m.t AS h ON h.company_id = m.company_id{condition}"
    )
    expected = [("a", "free"), ("b", "pro"), ("c", None), ("d", "team"), ("e", None)]
    assert rows(store, sql) == expected


def test_a_comparison_of_nanoseconds_outside_any_moment_is_duckdbs_own_error(
    store: Project,
) -> None:
    sql = (
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-03-01' "
        "WHERE start_time < TIMESTAMP_NS '2024-03-01 00:00:00' + INTERVAL 0 SECOND"
    )
    with pytest.raises(QueryError, match="Cannot compare values of type"):
        rows(store, sql)


def test_a_history_table_named_with_its_schema_beside_a_cte_of_its_name_is_the_history(
    store: Project,
) -> None:
    sql = (
        "WITH company_plan_history AS (SELECT * FROM main.company_plan_history "
        "WHERE plan = 'pro') SELECT e.insert_id, h.plan FROM events AS e "
        "JOIN main.company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id"
    )
    assert rows(store, sql) == [("e1", "free"), ("e2", "pro"), ("e5", "team")]


def test_a_history_table_named_with_its_schema_keeps_columns_named_with_it(
    store: Project,
) -> None:
    sql = (
        "SELECT main.company_plan_history.company_id, main.company_plan_history.plan "
        "FROM main.company_plan_history FOR SYSTEM_TIME AS OF '2024-02-10'"
    )
    assert rows(store, sql) == [("c1", "pro"), ("c2", "team")]


# At 2024-01-10 c1 is free and c2 has no interval yet; at 2024-02-10 c1 is pro.
FREE_ON_10_JANUARY = (
    "SELECT company_id FROM company_plan_history FOR SYSTEM_TIME AS OF '2024-01-10' "
    "WHERE plan = 'free'"
)
PRO_ON_10_FEBRUARY = (
    "SELECT company_id FROM company_plan_history FOR SYSTEM_TIME AS OF '2024-02-10' "
    "WHERE plan = 'pro'"
)


def test_a_temporal_subquery_in_the_on_clause_of_an_as_of_join_is_rewritten(
    store: Project,
) -> None:
    # Only c1 may match: e5 is c2's, so it finds no interval, though team holds its moment.
    sql = f"SELECT e.insert_id, h.plan FROM events AS e LEFT JOIN {AS_OF} AND h.company_id IN "
    assert rows(store, f"{sql}({FREE_ON_10_JANUARY})") == [
        ("e1", "free"),
        ("e2", "pro"),
        ("e3", None),
        ("e4", None),
        ("e5", None),
    ]


def test_a_temporal_subquery_as_the_id_an_as_of_join_matches_is_rewritten(
    store: Project,
) -> None:
    # Every event is matched with c1's interval at its moment.
    sql = (
        "SELECT e.insert_id, h.plan FROM events AS e LEFT JOIN company_plan_history "
        f"FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = ({PRO_ON_10_FEBRUARY})"
    )
    assert rows(store, sql) == EACH_EVENT_WITH_C1S_PLAN


def test_a_temporal_subquery_as_the_moment_is_rewritten(store: Project) -> None:
    # On 20 January the latest start is c2's, 15 January; then c1 is free and c2 on team.
    latest = "SELECT max(start_time) FROM company_plan_history FOR SYSTEM_TIME AS OF '2024-01-20'"
    sql = f"SELECT company_id, plan FROM company_plan_history FOR SYSTEM_TIME AS OF ({latest})"
    assert rows(store, sql) == [("c1", "free"), ("c2", "team")]


def test_an_unqualified_property_in_on_is_read_as_text(store: Project) -> None:
    sql = (
        "SELECT insert_id, h.plan FROM events "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF time AS h "
        "ON h.company_id = properties.company_id"
    )
    assert rows(store, sql) == EACH_EVENT_WITH_ITS_PLAN


def test_a_relation_called_properties_keeps_its_columns_in_on(store: Project) -> None:
    # `properties.company_id` is the CTE's column, c1, for every event.
    sql = (
        "WITH properties AS (SELECT 'c1' AS company_id) SELECT e.insert_id, h.plan "
        "FROM events AS e JOIN properties ON true "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = properties.company_id"
    )
    assert rows(store, sql) == EACH_EVENT_WITH_C1S_PLAN


def test_an_as_of_join_inside_exists_with_a_moment_of_its_own_runs(store: Project) -> None:
    sql = (
        "SELECT count(*) FROM events AS e WHERE EXISTS (SELECT 1 FROM events AS x "
        "JOIN company_plan_history FOR SYSTEM_TIME AS OF x.time AS h "
        "ON h.company_id = x.company_id WHERE x.insert_id = e.insert_id)"
    )
    assert rows(store, sql) == [(3,)]  # e1, e2 and e5 have an interval holding them


@pytest.mark.parametrize(
    "expression",
    [
        "TIMESTAMPTZ '2024-02-01 03:00:00+05'::TIMESTAMP",
        "TIMESTAMPTZ '2024-03-01 02:00:00+05'::DATE",
        "TIMESTAMP '2024-03-01 23:00:00'::DATE",
        "TIMESTAMP WITH TIME ZONE '2024-03-01 02:00:00+05'::DATE",
        "DATE '2024-03-01'::VARCHAR LIKE '2024%'",
        "DATE '2024-03-10'::TIMESTAMP - DATE '2024-03-01'::TIMESTAMP",
        "TIMESTAMP '2024-03-01 10:20:30'::TIME",
        "JSON '{\"a\":1}'::VARCHAR",
        "INTEGER '7'::VARCHAR || 'x'",
        "INTERVAL '1 day'::VARCHAR",
        "(TIMESTAMPTZ '2024-03-01 02:00:00+05')::DATE",
    ],
)
def test_a_typed_literal_is_cast_whole_as_duckdb_reads_it(store: Project, expression: str) -> None:
    # DuckDB itself is the oracle: `TYPE 'text'::OTHER` casts the typed literal, not the text.
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    expected = con.execute(f"SELECT CAST({expression} AS VARCHAR)").fetchall()
    assert rows(store, f"SELECT CAST({expression} AS VARCHAR)") == expected


def test_an_as_of_moment_cast_from_a_typed_literal_to_a_date_is_its_day(store: Project) -> None:
    # 02:00 at UTC+05 on 1 February is 21:00 UTC on 31 January: that day, c1 was on free.
    moment = "TIMESTAMPTZ '2024-02-01 02:00:00+05'::DATE"
    sql = f"SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF {moment}"
    assert rows(store, sql + " WHERE company_id = 'c1'") == [("free",)]


# --- moments read as a source's text is read ----------------------------------------------

DATES = st.builds(
    "{}{}{}{}{}".format,
    st.sampled_from(["2024", "24", "02024", "1999", "0044", "0000", "0001", "9999"]),
    st.sampled_from(["-", "/"]),
    st.sampled_from(["03", "3", "13", "12", "01"]),
    st.sampled_from(["-", "/"]),
    st.sampled_from(["01", "1", "31"]),
)
TIMES = st.sampled_from(
    ["", " 00:30", "T09:15:00", " 9:05:07.123456", "T24:00:00", " 23:59:59", "\x0b00:30"]
)
ZONES = st.sampled_from(
    [
        "",
        "Z",
        " z",
        "+05:30",
        " -0800",
        "+15",
        "+14:30",
        " UTC",
        " UTC+5:30",
        " GMT-0530",
        " BST",
        " America/New_York",
        " Japan",
        " (BC)",
        " garbage",
        "+05:99",
        "-05",
        "+01",
        " \x0b-05",
    ]
)
# Blanks DuckDB's trim takes off (space, tab, line ends) and ones it leaves.
BLANKS = st.sampled_from(["", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u3000"])
WORDS = st.sampled_from(["epoch", "infinity", "-infinity", "allballs", "today", ""])
MOMENT_TEXTS = st.builds(
    "{}{}{}".format,
    BLANKS,
    st.one_of(st.builds("{}{}{}".format, DATES, TIMES, ZONES), WORDS),
    BLANKS,
)


@settings(max_examples=500, deadline=None)
@given(text=MOMENT_TEXTS)
def test_a_moment_is_read_as_rule_6_reads_a_source_text(text: str) -> None:
    """A moment given in a query or an option is the instant a source's text of it is,
    or refused where that text would be unreadable (quarantined).

    Both readings are pitsync's own, so this checks that they agree, not that either is
    right: what rule 6 reads is checked by hand-worked cases in
    test_point_in_time_rules.py."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        # The instant a source's text names, and NULL where staging quarantines it.
        read = text_sql("t", quote_string("UTC"))
        readable = f"CASE WHEN NOT {beyond_moments_sql('m')} THEN m END"
        source = f"SELECT {readable} FROM (SELECT {read} AS m FROM (SELECT ? AS t))"
        as_source = con.execute(source, [text]).fetchone()[0]
        problem = moment_text_problem(text)
        moment = None
        if problem is None:
            cast = con.execute("SELECT TRY_CAST(? AS TIMESTAMPTZ)", [spelled_moment(text)])
            moment = cast.fetchone()[0]
    assert moment == as_source
