"""The JSON arrow among a function's arguments, and bare properties in `--where`.

In DuckDB 2.0 a lambda is written `lambda x: e`, so `properties -> 'plan'` inside a call
is the JSON arrow, as it is anywhere else. The store here holds three profiles:

    u1  {"plan": "pro", "v": [1, 2], "my key": {"b": 3}, "vip": true,
         "utm.source": "google", "$email": "ann@example.com", "page": {"url": "/home"}}
    u2  {"plan": "free", "v": [], "vip": false, "a[0]": "whole key"}
    u3  {"seats": 4}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pitsync.errors import QueryError, QueryRefused
from pitsync.queries.execute import QuerySession, translate
from pitsync.queries.profiles import profiles_sql

U1 = {"plan": "pro", "v": [1, 2], "my key": {"b": 3}, "vip": True, "utm.source": "google"}
U1["$email"] = "ann@example.com"
PROFILES = (
    {"$distinct_id": "u1", "$set": {**U1, "page": {"url": "/home"}}},
    {"$distinct_id": "u2", "$set": {"plan": "free", "v": [], "vip": False, "a[0]": "whole key"}},
    {"$distinct_id": "u3", "$set": {"seats": 4}},
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the three profiles, applied through `pitsync engage`."""
    root = tmp_path_factory.mktemp("json_arrows")
    config = write_config(root)
    updates = root / "profiles.jsonl"
    updates.write_text("".join(json.dumps(line) + "\n" for line in PROFILES), encoding="utf-8")
    pitsync(config, "engage", str(updates))
    return root / "store.duckdb"


def write_config(root: Path) -> Path:
    config = root / "pitsync.toml"
    config.write_text(f"[store]\npath = {json.dumps(str(root / 'store.duckdb'))}\n")
    return config


def pitsync(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(config), *args]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def rows(store: Path, sql: str) -> list[tuple]:
    with QuerySession(store) as session:
        return session.query(sql).fetchall()


def per_profile(store: Path, expression: str) -> list[object]:
    """The expression's value for u1, u2 and u3, in that order."""
    sql = f"SELECT {expression} FROM user_profiles ORDER BY distinct_id"
    return [row[0] for row in rows(store, sql)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("json_type(properties->'plan')", ["VARCHAR", "VARCHAR", None]),
        ("json_array_length(properties->'v')", [2, 0, None]),
        # The fallback must be JSON text too: `->` yields JSON, as outside a call.
        ("coalesce(properties->'plan', '\"none\"')", ['"pro"', '"free"', '"none"']),
        ("json_extract_string(properties->'my key', '$.b')", ["3", None, None]),
        ("coalesce(properties->'v'->0, '0')", ["1", "0", "0"]),
        # `->` binds tighter than `=`, as it does outside a function call.
        ("coalesce(properties->'plan' = '\"pro\"', false)", [True, False, False]),
        (
            "list_transform([distinct_id], lambda x: x || ':' || json_type(properties->'plan'))",
            [["u1:VARCHAR"], ["u2:VARCHAR"], [None]],
        ),
    ],
)
def test_arrow_in_function_arguments_is_json_extract(
    store: Path, expression: str, expected: list[object]
) -> None:
    assert per_profile(store, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Without `$` or `/`, DuckDB reads the text as one whole key, dots and all.
        ("properties->>'utm.source'", ["google", None, None]),
        ("properties->>'page.url'", [None, None, None]),
        ("properties->>'a[0]'", [None, "whole key", None]),
        ("json_extract_string(properties, 'utm.source')", ["google", None, None]),
        # With `$`, it is a path.
        ("properties->>'$.page.url'", ["/home", None, None]),
        ("properties->'page'->>'url'", ["/home", None, None]),
    ],
)
def test_json_keys_and_paths_mean_what_duckdb_reads(
    store: Path, expression: str, expected: list[object]
) -> None:
    assert per_profile(store, expression) == expected


def test_postgres_json_path_functions_meet_duckdbs_own_answer(store: Path) -> None:
    # DuckDB's json_extract_path_text takes one path; a second key is not dropped unseen.
    assert per_profile(store, "json_extract_path_text(properties, 'plan')") == [
        "pro",
        "free",
        None,
    ]
    with pytest.raises(QueryError, match="json_extract_path_text"):
        rows(store, "SELECT json_extract_path_text(properties, 'page', 'url') FROM user_profiles")


def test_arrow_means_the_same_inside_a_call_as_outside(store: Path) -> None:
    outside = per_profile(store, "properties->'plan'")
    assert outside == ['"pro"', '"free"', None]
    assert per_profile(store, "coalesce(properties->'plan')") == outside


def test_arrow_in_a_where_clause_function(store: Path) -> None:
    sql = "SELECT count(*) FROM user_profiles WHERE json_type(properties->'plan') = 'VARCHAR'"
    assert rows(store, sql) == [(2,)]


def test_lambda_keyword_still_makes_lambdas(store: Path) -> None:
    assert rows(store, "SELECT list_transform([1, 2], lambda x: x + 1)") == [([2, 3],)]
    assert rows(store, "SELECT list_reduce([1, 2, 3], lambda a, b: a + b)") == [(6,)]
    assert rows(store, "SELECT list_filter([1, 2, 3], lambda x: x > 1)") == [([2, 3],)]


def test_translated_sql_holds_the_arrow_not_a_lambda() -> None:
    translated = translate(
        "SELECT json_type(properties->'plan'), list_transform([1], lambda x: x) FROM user_profiles",
        {"user_profiles"},
        {},
    )
    assert translated == (
        "SELECT JSON_TYPE(properties -> 'plan'), LIST_TRANSFORM([1], LAMBDA x : x) "
        "FROM user_profiles"
    )


def test_old_arrow_lambda_meets_duckdbs_own_refusal(store: Path) -> None:
    # `x -> x + 1` is the JSON arrow now; DuckDB itself then asks for `lambda x: x + 1`.
    with pytest.raises(QueryError, match="lambda x"):
        rows(store, "SELECT list_transform([1, 2], x -> x + 1)")


def users(store: Path, where: str) -> list[str]:
    return [row[0] for row in rows(store, profiles_sql(None, where, None))]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("plan = 'pro'", ["u1"]),
        ("plan IS NOT NULL", ["u1", "u2"]),
        ("vip = 'true'", ["u1"]),
        ("plan = 'pro' OR CAST(seats AS INTEGER) > 3", ["u1", "u3"]),
        ("json_type(properties->'v') = 'ARRAY'", ["u1", "u2"]),
        ("distinct_id = 'u2'", ["u2"]),
        # A $name is the property of that name, not a query parameter.
        ("$email LIKE '%@example.com'", ["u1"]),
        ('"$email" IS NULL', ["u2", "u3"]),
    ],
)
def test_where_reads_names_as_properties(store: Path, where: str, expected: list[str]) -> None:
    assert users(store, where) == expected


@pytest.mark.parametrize("where", ["$email = ?", "plan = $1"])
def test_a_query_parameter_in_where_is_no_property(store: Path, where: str) -> None:
    # Only a name after `$` is a property; `?` and `$1` ask for values nobody gives.
    with pytest.raises(QueryError, match="Values were not provided"):
        users(store, where)


@pytest.mark.parametrize("where", ["plan", "(plan)", "NOT vip", "vip AND plan = 'pro'"])
def test_a_bare_property_as_a_condition_is_refused(where: str) -> None:
    with pytest.raises(QueryRefused, match="IS NOT NULL") as refused:
        profiles_sql(None, where, None)
    assert "as a condition by itself" in str(refused.value)


def test_users_command_explains_a_bare_property(store: Path) -> None:
    refused = pitsync(write_config(store.parent), "users", "--where", "plan", check=False)
    assert refused.returncode == 1
    assert "`plan IS NOT NULL`" in refused.stderr
