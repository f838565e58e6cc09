"""The SELECT a database source runs, built as a sqlglot tree and printed in its dialect.

Names are always identifiers in the tree, quoted by the dialect's own rules, so a table
called `order` or `Plan "History"` reads as that table, and a configured name that tries
to smuggle in SQL is only a name that does not exist.
"""

from __future__ import annotations

from sqlglot import exp

# How each database source names its SQL dialect in sqlglot.
DIALECTS = {
    "postgres": "postgres",
    "sqlite": "sqlite",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
}


def select_columns(dialect: str, table: str, columns: list[str], *, schema: str | None) -> str:
    """`SELECT "a", "b" FROM "schema"."table"`, quoted as `dialect` quotes names."""
    query = exp.select(*(exp.column(name, quoted=True) for name in columns)).from_(
        exp.table_(table, db=schema, quoted=True)
    )
    return query.sql(dialect=dialect)
