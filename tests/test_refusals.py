"""`pitsync query` reads the store and nothing else: every other statement is refused.

Two walls are tested: the guard that parses the query and refuses it with a message
(through the command line and through `QuerySession`), and the store connection itself,
which is read-only with external access off and its settings locked.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from pitsync.errors import QueryRefused, StoreError
from pitsync.queries import nesting
from pitsync.queries.execute import QuerySession, translate
from pitsync.queries.profiles import profiles_sql
from pitsync.store import NO_EXTENSIONS, open_read_only
from tests.conftest import Project, company_history, configure_companies, login_events


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A synced store: two companies' plans and one login; shared, as nothing may change it."""
    project = Project(root=tmp_path_factory.mktemp("refusals"))
    company_history(
        project,
        [
            ("c1", "free", 1, "2024-01-01 00:00:00+00", None),
            ("c2", "team", 5, "2024-01-15 00:00:00+00", None),
        ],
    )
    login_events(project, [("e1", "c1", "2024-01-10 00:00:00+00")])
    project.sync("company_plan_history")
    project.sync("product_events")
    return project


def store_files(project: Project) -> dict[str, str]:
    """Every file of the store (a WAL beside it included) and the SHA-256 of its bytes."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in project.root.glob(f"{project.store.name}*")
    }


def assert_refused(project: Project, sql: str, *fragments: str) -> str:
    """The query exits 1 with a refusal naming the fragments, and the store is unchanged."""
    before = store_files(project)

    result = project.cli("query", sql, "--format", "json", check=False)

    assert result.returncode == 1, result.stdout
    assert "pitsync: error:" in result.stderr and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.stdout == ""
    assert store_files(project) == before
    return result.stderr


# --- the guard, through the command line ---------------------------------------------------


def test_insert_statement_is_refused_and_store_unchanged(store: Project) -> None:
    sql = "INSERT INTO company_plan_history (company_id, plan) VALUES ('c9', 'stolen')"
    assert_refused(store, sql, "only reads are allowed", "INSERT")


def test_update_statement_is_refused_and_store_unchanged(store: Project) -> None:
    sql = "UPDATE company_plan_history SET plan = 'free' WHERE company_id = 'c2'"
    assert_refused(store, sql, "only reads are allowed", "UPDATE")


def test_delete_statement_is_refused_and_store_unchanged(store: Project) -> None:
    assert_refused(store, "DELETE FROM company_plan_history", "only reads are allowed", "DELETE")


def test_create_table_is_refused_and_store_unchanged(store: Project) -> None:
    sql = "CREATE TABLE copy_of_plans AS SELECT * FROM company_plan_history"
    assert_refused(store, sql, "only reads are allowed", "CREATE")


def test_drop_table_is_refused_and_store_unchanged(store: Project) -> None:
    sql = "DROP TABLE company_plan_history"
    message = assert_refused(store, sql, "only reads are allowed", "DROP")
    assert "drop-table" in message  # the command that does drop a table


def test_delete_inside_a_cte_is_refused_and_store_unchanged(store: Project) -> None:
    sql = "WITH gone AS (DELETE FROM company_plan_history RETURNING *) SELECT * FROM gone"
    assert_refused(store, sql, "only reads are allowed", "DELETE")


def test_read_csv_of_a_system_file_is_refused(store: Project) -> None:
    assert_refused(store, "SELECT * FROM read_csv('/etc/passwd')", "read_csv", "not allowed")


def test_a_file_path_used_as_a_table_is_refused(store: Project) -> None:
    # DuckDB would read a quoted path in FROM as a file; the guard knows only relations.
    assert_refused(store, "SELECT * FROM '/etc/passwd'", "/etc/passwd")


def test_attach_of_another_database_is_refused(store: Project) -> None:
    other = store.root / "other.duckdb"
    assert_refused(store, f"ATTACH '{other}' AS x", "ATTACH")
    assert not other.exists()


def test_copy_to_a_file_is_refused_and_writes_no_file(store: Project) -> None:
    target = store.root / "copied_by_query.csv"
    assert_refused(store, f"COPY events TO '{target}'", "COPY")
    assert not target.exists()


def test_set_turning_external_access_on_is_refused(store: Project) -> None:
    assert_refused(store, "SET enable_external_access = true", "SET")


def test_pragma_is_refused(store: Project) -> None:
    assert_refused(store, "PRAGMA database_list", "PRAGMA")


def test_two_statements_separated_by_a_semicolon_are_refused(store: Project) -> None:
    sql = "SELECT count(*) FROM events; DROP TABLE company_plan_history"
    assert_refused(store, sql, "exactly one statement", "got 2")


@pytest.mark.parametrize("end", [";", "; -- done", "; /* done */", ";\n-- done\n"])
def test_a_comment_after_the_last_semicolon_is_no_statement(store: Project, end: str) -> None:
    with QuerySession(store.store) as session:
        assert session.query(f"SELECT 1 AS x{end}").fetchall() == [(1,)]


def test_as_of_on_a_relation_that_is_not_a_history_table_is_refused(store: Project) -> None:
    sql = "SELECT * FROM events FOR SYSTEM_TIME AS OF TIMESTAMP '2024-03-01 00:00:00+00'"
    message = assert_refused(store, sql, "history tables", "`events`")
    # The message says which relations do take the temporal syntax.
    assert "company_plan_history" in message


@pytest.mark.parametrize("sql", ["EXPORT DATABASE 'copy'", "IMPORT DATABASE 'copy'"])
def test_export_and_import_are_refused_as_writes_not_as_bad_syntax(
    store: Project, sql: str
) -> None:
    message = assert_refused(store, sql, "only reads are allowed", sql.split()[0])

    assert "cannot parse" not in message
    assert not (store.root / "copy").exists()


@pytest.mark.parametrize(
    "sql", ["CREATE SECRET (TYPE s3)", "ATTACH OR REPLACE 'other.duckdb' AS other"]
)
def test_writes_sqlglot_cannot_parse_are_refused_as_writes(store: Project, sql: str) -> None:
    message = assert_refused(store, sql, "only reads are allowed", sql.split()[0])

    assert "cannot parse" not in message


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("SELECT * FROM", "Expected table name but got the end of the query"),
        ("SELECT 1 +", "an unfinished expression"),
        ("SELEC 1", "Invalid expression / Unexpected token"),
        ("SELECT * FROM WHERE /* a>b */", "Expected table name but got `WHERE`. Line 1"),
        (
            "SELECT range FROM range(3) WHERE range < 2",
            "a column named `range` is read as a keyword: write it in double quotes",
        ),
        ("SELECT range, map FROM runs", "a column named `map` is read"),
        (
            "PIVOT runs ON mode USING count(*) GROUP BY status ORDER BY status",
            "wrap it in a query, SELECT * FROM (PIVOT ...) ORDER BY",
        ),
        ("UNPIVOT runs ON mode, status INTO NAME k VALUE v LIMIT 2", "(UNPIVOT ...)"),
    ],
)
def test_a_query_that_does_not_parse_says_why_in_the_users_words(
    store: Project, sql: str, said: str
) -> None:
    # Not in sqlglot's: `<Token token_type: TokenType.SENTINEL, ...>`, `<class ...>`.
    message = assert_refused(store, sql, "cannot parse the query", said)

    assert "Token" not in message and "<class" not in message and "]>" not in message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'range' AS x FROM runs WHERE",
        "SELECT 1 -- range\nFROM runs WHERE",
        "SELECT * FROM range (5) WHERE x = (",
        'SELECT "range" FROM runs WHERE',
    ],
)
def test_no_keyword_hint_where_no_bare_column_is_named_like_one(store: Project, sql: str) -> None:
    message = assert_refused(store, sql, "cannot parse the query")

    assert "read as a keyword" not in message


@pytest.mark.parametrize("alias", ["h", "H"])
def test_a_moment_taken_from_the_history_itself_is_refused(store: Project, alias: str) -> None:
    # DuckDB said only "Missing ASOF JOIN inequality".
    sql = (
        "SELECT e.company_id, h.plan FROM events AS e LEFT JOIN company_plan_history "
        f"FOR SYSTEM_TIME AS OF {alias}.start_time AS h ON h.company_id = e.company_id"
    )

    assert_refused(store, sql, f"its moment ({alias}.start_time)", "from that history itself")


# --- the guard, through the library --------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM company_plan_history", "only reads are allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", "`read_csv` is not allowed"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT * FROM runs FOR SYSTEM_TIME AS OF TIMESTAMP '2024-03-01'", "history tables"),
    ],
    ids=["delete", "read-csv", "two-statements", "as-of-on-runs"],
)
def test_query_session_raises_query_refused(store: Project, sql: str, message: str) -> None:
    with QuerySession(store.store) as session, pytest.raises(QueryRefused, match=message) as info:
        session.query(sql)

    # The refusal carries the query it refused.
    assert info.value.sql == sql


@pytest.mark.parametrize(
    ("sql", "begins"), [("'b' AS x", "'b'"), ("events", "events"), ("-1 AS x", "-1")]
)
def test_a_value_that_is_no_statement_is_not_called_a_write(
    store: Project, sql: str, begins: str
) -> None:
    with QuerySession(store.store) as session, pytest.raises(QueryRefused) as refused:
        session.query(sql)

    assert str(refused.value).startswith(
        f"the query is no statement: it begins with `{begins}`; write a SELECT"
    )


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SELECT * FROM range(1) r, LATERAL query('SELECT 1')", "query"),
        ("SELECT * FROM range(1) r CROSS JOIN LATERAL duckdb_settings()", "duckdb_settings"),
        ("SELECT * FROM range(1) r, LATERAL checkpoint()", "checkpoint"),
        ("SELECT * FROM range(1) r, LATERAL query_table('pg_settings')", "query_table"),
    ],
)
def test_a_table_function_called_through_lateral_is_refused_as_in_from(
    store: Project, sql: str, name: str
) -> None:
    # `query('...')` would run a query the guard never sees (a read of the store's file).
    with QuerySession(store.store) as session, pytest.raises(QueryRefused) as refused:
        session.query(sql)

    assert str(refused.value).startswith(f"the table function `{name}` is not allowed")


def test_pure_table_functions_stay_allowed_through_lateral(store: Project) -> None:
    sql = (
        "SELECT r.range, t.range AS below, u.unnest FROM range(3) r, LATERAL range(r.range) t, "
        "LATERAL unnest([7]) u ORDER BY ALL"
    )
    with QuerySession(store.store) as session:
        assert session.query(sql).fetchall() == [(1, 0, 7), (2, 0, 7), (2, 1, 7)]


@pytest.mark.parametrize(
    "sql",
    [
        "WITH tables AS (SELECT 1) SELECT * FROM information_schema.tables",
        "WITH pg_settings AS (SELECT 1) SELECT * FROM pg_catalog.pg_settings",
        "SELECT * FROM information_schema.runs",
    ],
)
def test_a_schema_outside_the_store_is_refused_even_beside_a_cte_of_that_name(
    store: Project, sql: str
) -> None:
    with QuerySession(store.store) as session, pytest.raises(QueryRefused, match="names schema"):
        session.query(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM (WITH pg_settings AS (SELECT 1) SELECT 1) AS a, pg_settings",
        "SELECT * FROM (WITH sqlite_master AS (SELECT 1) SELECT 1), sqlite_master",
        "SELECT (SELECT count(*) FROM duckdb_tables), (WITH duckdb_tables AS (SELECT 1) SELECT 1)",
        # Inside its own body a CTE's name is still DuckDB's catalog table, and so is a
        # CTE defined later, or the CTE itself before the UNION of a recursive one.
        "WITH pg_settings AS (SELECT * FROM pg_settings) SELECT * FROM pg_settings",
        "WITH a AS (FROM pg_database), pg_database AS (SELECT 1) FROM a",
        "WITH RECURSIVE pg_settings AS (SELECT name FROM pg_settings UNION ALL "
        "SELECT name FROM pg_settings WHERE false) SELECT * FROM pg_settings",
        "WITH x AS (WITH pg_database AS (FROM pg_database) FROM pg_database) FROM x",
        "WITH RECURSIVE pg_settings AS (SELECT 'a' AS name UNION ALL BY NAME "
        "SELECT name FROM pg_settings WHERE name <> 'a') SELECT * FROM pg_settings",
    ],
)
def test_a_cte_names_a_relation_only_within_its_query(store: Project, sql: str) -> None:
    refused = pytest.raises(QueryRefused, match="unknown relation")
    with QuerySession(store.store) as session, refused:
        session.query(sql)


def test_relations_are_found_and_listed_as_the_store_spells_them(tmp_path: Path) -> None:
    # DuckDB folds ASCII letters alone: `plÄne` is `PLÄNE`, `pläne` is another name.
    project = Project(root=tmp_path)
    project.source_sql("CREATE TABLE plans AS SELECT 'c1' AS company_id, now() AS valid_from")
    configure_companies(project, "PLANE", "valid_from", **{"from": "plans"})
    # A bare TOML key is ASCII: the table's name is quoted.
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        text.replace("[tables.PLANE]", '[tables."PLÄNE"]'), encoding="utf-8"
    )
    project.sync("PLÄNE")

    with QuerySession(project.store) as session:
        assert session.query("SELECT company_id FROM plÄne").fetchall() == [("c1",)]
        with pytest.raises(QueryRefused, match="unknown relation `pläne`") as refused:
            session.query("SELECT * FROM pläne")
    assert "PLÄNE" in str(refused.value).split("the store has: ")[1].split(", ")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b", [(1,)]),
        ("SELECT * FROM (WITH a AS (SELECT 2 AS x) SELECT * FROM (SELECT * FROM a))", [(2,)]),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
            "SELECT count(*) FROM r",
            [(3,)],
        ),
    ],
)
def test_ctes_read_within_their_query(store: Project, sql: str, expected: list[tuple]) -> None:
    with QuerySession(store.store) as session:
        assert session.query(sql).fetchall() == expected


def test_store_relations_may_be_named_with_their_schema(store: Project) -> None:
    with QuerySession(store.store) as session:
        public = session.query("SELECT count(*) FROM main.company_plan_history").fetchall()
        internal = session.query("SELECT count(*) FROM _pitsync.runs").fetchall()

    assert public == [(2,)]
    assert internal == [(2,)]


def test_query_session_still_answers_reads_after_a_refusal(store: Project) -> None:
    with QuerySession(store.store) as session:
        with pytest.raises(QueryRefused):
            session.query("DROP TABLE company_plan_history")
        rows = session.query("SELECT company_id FROM company_plan_history ORDER BY 1").fetchall()

    assert rows == [("c1",), ("c2",)]


# --- the second wall: the connection itself ------------------------------------------------


@pytest.fixture
def raw_connection(store: Project) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store opened the way queries open it, used without the guard in front."""
    connection = open_read_only(store.store)
    yield connection
    connection.close()


def test_connection_cannot_read_files_even_without_the_guard(
    raw_connection: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(duckdb.PermissionException):
        raw_connection.execute("SELECT * FROM read_csv('/etc/passwd')")


def test_connection_cannot_turn_external_access_back_on(
    raw_connection: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(duckdb.Error, match="locked"):
        raw_connection.execute("SET enable_external_access = true")


def test_connection_cannot_write_files_even_without_the_guard(
    store: Project, raw_connection: duckdb.DuckDBPyConnection
) -> None:
    target = store.root / "copied_by_connection.csv"

    with pytest.raises(duckdb.PermissionException):
        raw_connection.execute(f"COPY (SELECT 1) TO '{target}'")

    assert not target.exists()


def test_connection_cannot_change_the_store_even_without_the_guard(
    store: Project, raw_connection: duckdb.DuckDBPyConnection
) -> None:
    with pytest.raises(duckdb.Error, match="read-only"):
        raw_connection.execute('DELETE FROM _pitsync."intervals__company_plan_history"')

    count = raw_connection.execute("SELECT count(*) FROM company_plan_history").fetchone()
    assert count == (2,)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("VALUES (1, 'a'), (2, 'b')", [(1, "a"), (2, "b")]),
        (
            "PIVOT (SELECT plan FROM company_plan_history) ON plan IN ('free', 'team') "
            "USING count(*)",
            [(1, 1)],
        ),
    ],
    ids=["values", "pivot"],
)
def test_values_and_pivot_statements_are_reads(
    store: Project, sql: str, expected: list[tuple]
) -> None:
    assert store.query(sql) == expected


@pytest.mark.parametrize("sql", ["EXPLAIN SELECT 1", "DESCRIBE events", "SHOW TABLES"])
def test_reads_that_are_no_select_are_refused_as_such(store: Project, sql: str) -> None:
    message = assert_refused(store, sql, "runs SELECT queries", sql.split()[0])
    assert "only reads are allowed" not in message


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("SELECT * FROM (SUMMARIZE '/etc/hostname')", "SUMMARIZE"),
        ("SELECT * FROM (SUMMARIZE events)", "SUMMARIZE"),
        ("SELECT column_name FROM (DESCRIBE events)", "DESCRIBE"),
        ("WITH d AS (DESCRIBE events) SELECT count(*) FROM d", "DESCRIBE"),
        ("SELECT (SELECT count(*) FROM (SUMMARIZE SELECT 1 AS x)) AS n", "SUMMARIZE"),
    ],
)
def test_describe_and_summarize_inside_a_query_are_refused(
    store: Project, sql: str, word: str
) -> None:
    assert_refused(store, sql, "runs SELECT queries", f"{word} is not one")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF '2024-06-01 05:30:00 BST'",
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF "
        "TIMESTAMPTZ '2024-06-01 05:30 PST'",
        # DuckDB reads an abbreviation in any case, and inside any expression.
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF '2024-06-01 05:30 bst'",
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF "
        "(TIMESTAMPTZ '2024-06-01 05:30 Bst' + INTERVAL 0 HOUR)",
        # CET is a zone with summer time to DuckDB, and +01:00 all year to PostgreSQL.
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF '2024-06-01 05:30 CET'",
    ],
)
def test_a_moment_with_a_zone_abbreviation_is_refused(store: Project, sql: str) -> None:
    assert_refused(store, sql, "abbreviation", "Area/City")


@pytest.mark.parametrize("zone", ["BST", "EET"])
def test_a_zone_abbreviation_given_as_the_zone_of_a_moment_is_refused(
    store: Project, zone: str
) -> None:
    sql = (
        "SELECT plan FROM company_plan_history FOR SYSTEM_TIME AS OF "
        f"TIMESTAMP '2024-06-01 05:30' AT TIME ZONE '{zone}'"
    )
    assert_refused(store, sql, f"the zone '{zone}'", "abbreviation")


@pytest.mark.parametrize(
    "moment",
    [
        "TIMESTAMPTZ '2024-01-09 00:00:00+00' + INTERVAL '1 day 12 hours'",
        "TIMESTAMPTZ '2024-01-08 00:00:00+00' + '3 days'::INTERVAL",
        "strptime('11/01/2024 10am', '%d/%m/%Y %I%p')",
    ],
)
def test_words_of_a_moment_that_are_no_zone_are_read(store: Project, moment: str) -> None:
    # Each moment falls on 10 or 11 January 2024, while c1 alone has a plan.
    sql = f"SELECT company_id FROM company_plan_history FOR SYSTEM_TIME AS OF {moment}"
    assert store.query(sql) == [("c1",)]


def test_a_moment_with_utc_or_gmt_is_read(store: Project) -> None:
    sql = (
        "SELECT company_id FROM company_plan_history FOR SYSTEM_TIME AS OF "
        "'2024-01-10 00:00:00 {zone}' ORDER BY company_id"
    )
    assert store.query(sql.format(zone="UTC")) == [("c1",)]
    assert store.query(sql.format(zone="gmt")) == [("c1",)]
    # A short name of the zone database names one zone: 9:00 in Japan is 0:00 UTC.
    japan = sql.replace("00:00:00 {zone}", "09:00:00 Japan")
    assert store.query(japan) == [("c1",)]


def test_a_pivot_of_a_cte_that_names_columns_by_table_runs(store: Project) -> None:
    sql = (
        "WITH x AS (SELECT e.event, h.plan FROM events AS e LEFT JOIN company_plan_history "
        "FOR SYSTEM_TIME AS OF e.time AS h ON h.company_id = e.company_id) "
        "PIVOT x ON event USING count(*) GROUP BY plan"
    )
    assert store.query(sql) == [("free", 1)]


def test_a_pivot_naming_columns_by_their_table_is_refused(store: Project) -> None:
    # Printed back by sqlglot, `x.plan = h.plan` would lose its table names and compare
    # each row's plan with itself.
    sql = (
        "PIVOT (SELECT h.plan FROM company_plan_history AS h WHERE h.seats = "
        "(SELECT max(x.seats) FROM company_plan_history AS x WHERE x.plan = h.plan)) "
        "ON plan USING count(*)"
    )
    assert_refused(store, sql, "PIVOT or UNPIVOT", "`h.plan`")


# --- deep SQL, in the library ---------------------------------------------------------------


def run_at_once(work: Callable[[], None], threads: int) -> None:
    """`work` in that many threads started together; back when all have ended."""
    started = [threading.Thread(target=work) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()


def test_a_chain_of_twenty_five_thousand_conditions_is_read() -> None:
    sql = profiles_sql(None, " OR ".join(["plan = 'a'"] * 25_000), 2)

    assert sql.count(" OR ") == 24_999


def test_threads_reading_deep_sql_at_once_leave_the_recursion_limit_as_it_was() -> None:
    limit = sys.getrecursionlimit()
    deep = "SELECT " + "(" * 300 + "1" + ")" * 300 + " AS x"
    refused: list[BaseException] = []

    def read_many() -> None:
        for _ in range(30):
            try:
                translate(deep, set(), {})
            except QueryRefused as error:
                refused.append(error)

    run_at_once(read_many, 4)

    assert refused == []
    assert sys.getrecursionlimit() == limit


# --- sessions in one process ----------------------------------------------------------------


def test_two_query_sessions_of_one_store_in_one_process_both_answer_in_utc(
    store: Project,
) -> None:
    with QuerySession(store.store) as first, QuerySession(store.store) as second:
        moments = [
            session.query(
                "SELECT CAST(TIMESTAMPTZ '2024-01-15 00:00:00+00' AS VARCHAR) AS shown"
            ).fetchall()
            for session in (first, second)
        ]
        plans = second.query("SELECT count(*) FROM company_plan_history").fetchall()

    assert moments == [[("2024-01-15 00:00:00+00",)]] * 2
    assert plans == [(2,)]


def test_sessions_opening_at_once_in_one_process_all_open(store: Project) -> None:
    failures: list[BaseException] = []

    def open_and_count() -> None:
        try:
            with QuerySession(store.store) as session:
                session.query("SELECT count(*) FROM company_plan_history").fetchall()
        except Exception as error:  # noqa: BLE001 - any failure to open is the finding
            failures.append(error)

    for _ in range(20):
        run_at_once(open_and_count, 3)

    assert failures == []


def test_a_session_does_not_join_a_connection_the_caller_opened_with_other_settings(
    store: Project,
) -> None:
    # Even with the settings a session asks for, a connection of the caller's is not joined.
    settings = {"enable_external_access": "false", **NO_EXTENSIONS}
    mine = duckdb.connect(str(store.store), read_only=True, config=settings)
    try:
        mine.execute("SET GLOBAL default_collation = 'nocase'")
        with pytest.raises(StoreError, match="cannot open the store .* for reading"):
            QuerySession(store.store)
        # The caller's connection keeps its settings, unlocked.
        assert mine.execute("SELECT 'abc' = 'ABC'").fetchall() == [(True,)]
        mine.execute("SET GLOBAL default_collation = 'binary'")
    finally:
        mine.close()


def test_a_recursion_limit_set_while_sql_is_read_is_kept() -> None:
    limit = sys.getrecursionlimit()

    def work() -> str:
        sys.setrecursionlimit(7777)  # another part of the program, meanwhile
        return "read"

    try:
        assert nesting.with_room_to_nest("SELECT 1", work) == "read"
        assert sys.getrecursionlimit() == 7777
    finally:
        sys.setrecursionlimit(limit)
