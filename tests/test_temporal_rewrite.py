"""The temporal rewrite, case by case: each query and the DuckDB SQL it must run as."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from pitsync.errors import QueryRefused
from pitsync.queries.execute import translate

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
        "only JOIN and LEFT JOIN",
    ),
    (
        "SELECT * FROM events AS e RIGHT JOIN h FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id",
        "only JOIN and LEFT JOIN",
    ),
    ("SELECT * FROM events AS e, h FOR SYSTEM_TIME AS OF e.time", "needs ON h.company_id = "),
    ("SELECT * FROM h FOR SYSTEM_TIME AS OF now() TABLESAMPLE 1 ROWS", "sample the result"),
    (
        "SELECT h.p FROM events AS e LEFT JOIN h FOR SYSTEM_TIME AS OF e.time AS h(id, s, t, p) "
        "ON h.id = e.company_id",
        "without column names",
    ),
]


@pytest.mark.parametrize(("query", "message"), REFUSED)
def test_temporal_forms_that_cannot_be_answered_are_refused(query: str, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        translate(query, RELATIONS, HISTORY)
