"""The SELECT a database source runs, built as a sqlglot tree and printed in its dialect.

Names are always identifiers in the tree, quoted by the dialect's own rules, so a table
called `order` or `Plan "History"` reads as that table, and a configured name that tries
to smuggle in SQL is only a name that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
from sqlglot import exp

from pitsync.modeling.staging import UNREADABLE

# How each database source names its SQL dialect in sqlglot.
DIALECTS = {
    "postgres": "postgres",
    "sqlite": "sqlite",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
}


def select_columns(
    dialect: str,
    table: str,
    columns: list[str],
    *,
    schema: str | None,
    lower_bound_column: str | None = None,
    read_as_text: Mapping[str, str] | None = None,
    read_as_json: Sequence[str] = (),
    arrays: Sequence[str] = (),
    decimals: Sequence[str] = (),
    doubles: Sequence[str] = (),
    time_arrays: Mapping[str, str] | None = None,
    text_cursor: bool = False,
) -> str:
    """`SELECT "a", "b" FROM "schema"."table"`, quoted as `dialect` quotes names.

    With a lower bound, `WHERE "cursor" >= ?`: the value is a bound parameter, so the
    source filters by its own comparison of its own type. `read_as_text` names columns
    (with their types in the source) that are selected as `CAST("a" AS TEXT) AS "a"`;
    `read_as_json` names PostgreSQL columns selected as `TO_JSONB("a") AS "a"`.
    `arrays`, `decimals`, `doubles` and `time_arrays` name PostgreSQL array, numeric(p, s),
    numeric read as a double, and time array columns (time arrays with their types): one
    more column, `UNREADABLE`, says why a row holds a value pitsync cannot store as it is.
    """
    as_text = read_as_text or {}
    selected = [
        as_json(name)
        if name in read_as_json
        else selected_column(name, as_text.get(name), array=name in arrays)
        for name in columns
    ]
    if arrays or decimals or doubles or time_arrays:
        selected.append(unreadable_column(arrays, decimals, doubles, time_arrays or {}))
    query = exp.select(*selected).from_(exp.table_(table, db=schema, quoted=True))
    if lower_bound_column is not None:
        source_type = as_text.get(lower_bound_column)
        bounded = at_or_past(
            lower_bound_column, dialect, source_type=source_type, by_code_point=text_cursor
        )
        query = query.where(bounded)
    return query.sql(dialect=dialect)


def selected_column(name: str, source_type: str | None, *, array: bool = False) -> exp.Expr:
    """The column, or with a source type to read as text, `CAST("a" AS TEXT) AS "a"`.

    PostgreSQL names an array type by its item type with a leading underscore; an array
    is cast to an array of text. An `array` is selected whole as a slice, `"a"[:]`,
    whose subscripts start at 1: the driver refuses the whole read on an array whose
    first subscript is another (`'[2:3]={7,8}'`).
    """
    column: exp.Expr = exp.column(name, quoted=True)
    if array:
        column = exp.Bracket(this=column, expressions=[exp.Slice()])
    if source_type is not None:
        text = "TEXT[]" if source_type.startswith("_") else "TEXT"
        column = exp.cast(column, text)
    return column if isinstance(column, exp.Column) else exp.alias_(column, name, quoted=True)


def as_json(name: str) -> exp.Expr:
    """`TO_JSONB("a") AS "a"`: a PostgreSQL value as the JSON PostgreSQL writes for it."""
    column = exp.column(name, quoted=True)
    return exp.alias_(exp.Anonymous(this="to_jsonb", expressions=[column]), name, quoted=True)


def unreadable_column(
    arrays: Sequence[str],
    decimals: Sequence[str],
    doubles: Sequence[str],
    time_arrays: Mapping[str, str],
) -> exp.Expr:
    """`CASE WHEN array_ndims("a") > 1 THEN '...' WHEN "p" = 'NaN' THEN '...' END`.

    The driver hands `{{1,2},{3,4}}` over flattened, as `[1, 2, 3, 4]`, a numeric(p, s)
    may hold NaN, which no DECIMAL can, a numeric read as a double may be finite past
    any double (it would become an infinity), and an array of times may hold `infinity`,
    which the driver turns into a time some 290,000 years BC: such a row is quarantined,
    not stored or failing the run.
    """
    case = exp.Case()
    for name in arrays:
        column = exp.column(name, quoted=True)
        dimensions = exp.Anonymous(this="array_ndims", expressions=[column])
        reason = exp.Literal.string(f"multi-dimensional array in column {name}")
        case = case.when(exp.GT(this=dimensions, expression=exp.Literal.number(1)), reason)
    for name in decimals:
        column = exp.column(name, quoted=True)
        not_a_number = exp.cast(exp.Literal.string("NaN"), "NUMERIC")
        reason = exp.Literal.string(f"NaN in numeric column {name}")
        case = case.when(exp.EQ(this=column, expression=not_a_number), reason)
    for name in doubles:
        reason = exp.Literal.string(f"number too large for a double in column {name}")
        case = case.when(past_every_double(name), reason)
    for name, postgres_type in time_arrays.items():
        reason = exp.Literal.string(f"infinite or out-of-range time in array column {name}")
        case = case.when(unreadable_time(name, postgres_type), reason)
    return exp.alias_(case, UNREADABLE, quoted=True)


# The least number a double rounds to infinity: halfway from the largest double to 2^1024.
ROUNDS_TO_INFINITY = str(2**1024 - 2**970)


def past_every_double(name: str) -> exp.Expr:
    """True for a finite PostgreSQL numeric that a double would hold as an infinity.

    NaN and the infinities are compared as text: NaN sorts above every number, and
    PostgreSQL before 14 has no infinite numeric to compare with."""
    column = exp.column(name, quoted=True)
    magnitude = exp.Anonymous(this="abs", expressions=[column])
    too_large = exp.GTE(this=magnitude, expression=exp.Literal.number(ROUNDS_TO_INFINITY))
    special = [exp.Literal.string(text) for text in ("NaN", "Infinity", "-Infinity")]
    finite = exp.Not(this=exp.In(this=exp.cast(column.copy(), "TEXT"), expressions=special))
    return exp.and_(too_large, finite)


# Microseconds since 1970 in 64 bits reach 294247-01-10: the driver wraps a later time
# around to one some 290,000 years BC. A date of PostgreSQL's always fits its days.
FIRST_WRAPPED_TIME = "294247-01-01 00:00:00"


def unreadable_time(name: str, postgres_type: str) -> exp.Expr:
    """True for an array of PostgreSQL times holding an infinity or a time past the
    driver's range, which the driver would turn into a time some 290,000 years BC."""
    column = exp.column(name, quoted=True)
    item_type = exp.DataType.build(postgres_type.removeprefix("_"), dialect="postgres")

    def any_item(comparison: type[exp.Binary], value: str) -> exp.Expr:
        return comparison(
            this=exp.cast(exp.Literal.string(value), item_type.copy()),
            expression=exp.Any(this=exp.paren(column.copy())),
        )

    found = [any_item(exp.EQ, infinity) for infinity in ("infinity", "-infinity")]
    if postgres_type != "_date":
        found.append(any_item(exp.LTE, FIRST_WRAPPED_TIME))
    return exp.or_(*found)


def at_or_past(
    column: str, dialect: str, *, source_type: str | None = None, by_code_point: bool = False
) -> exp.Expr:
    """`cursor >= ? OR cursor IS NULL`: rows without a cursor are read to be quarantined.

    A cursor read as text has a watermark that is that text; with `source_type` the
    parameter is cast back to the cursor's own type, which the source can compare (a
    uuid orders as its lower-case hex text does). `by_code_point`: the cursor is text,
    compared as its watermark was found, by code point; under the column's own collation
    (`en-x-icu`, `NOCASE`) a later value could sort below the watermark, and be lost.
    """
    cursor = exp.column(column, quoted=True)
    bound: exp.Expr = first_parameter(dialect)
    if source_type is not None:
        bound = exp.cast(bound, exp.DataType.build(source_type, dialect=dialect))
    compared: exp.Expr = cursor.copy()
    collation = CODE_POINT_COLLATIONS.get(dialect)
    if by_code_point and collation is not None:
        compared = exp.Collate(this=compared, expression=collation.copy())
    return exp.or_(exp.GTE(this=compared, expression=bound), cursor.copy().is_(exp.null()))


# The collation of each dialect that orders text by code point, as DuckDB does.
CODE_POINT_COLLATIONS: dict[str, exp.Expr] = {
    "postgres": exp.Identifier(this="C", quoted=True),
    "sqlite": exp.Var(this="BINARY"),
}


def first_parameter(dialect: str) -> exp.Expression:
    """The first bound parameter as the driver expects it: `$1` for PostgreSQL, else `?`."""
    if dialect == "postgres":
        return exp.Parameter(this=exp.Literal.number(1))
    return exp.Placeholder()


def select_all(dialect: str, table: str, *, schema: str | None) -> str:
    """`SELECT * FROM "schema"."table"`, whose result schema is the table's."""
    query = exp.select(exp.Star()).from_(exp.table_(table, db=schema, quoted=True))
    return query.sql(dialect=dialect)


SAMPLE_MARK = "__pitsync_type_sample"

# A value of each type, for the sample row of a SQLite read.
SAMPLE_VALUES = {
    pa.int64(): exp.Literal.number(0),
    pa.float64(): exp.Literal.number("0.5"),
    pa.bool_(): exp.Literal.number(0),
    pa.string(): exp.Literal.string(""),
    pa.binary(): exp.cast(exp.Literal.string(""), "BLOB"),
}


# The storage classes a SQLite value of each read type may have (besides NULL). SQLite
# keeps any value in any column, and the driver fails the whole read on the first value
# of another class; such a value is read as NULL, and its row quarantined.
STORAGE_CLASSES = {
    pa.string(): ("text", "integer", "real"),  # a blob need not be UTF-8 text
    pa.int64(): ("integer",),
    pa.bool_(): ("integer",),
    pa.float64(): ("integer", "real"),
    pa.binary(): ("blob",),
}
# How a quarantine reason names each of those types.
SQLITE_TYPE_WORDS = {
    pa.string(): "text",
    pa.int64(): "integer",
    pa.bool_(): "boolean",
    pa.float64(): "real",
    pa.binary(): "blob",
}


def sqlite_column(field: pa.Field) -> exp.Expr:
    """A column as read; a text column's numbers are made text by SQLite itself.

    Left to the driver, a REAL in a text column would be printed with six digits
    (1234567.89 as 1.234568e+06); SQLite's own CAST keeps every digit.
    """
    column = exp.column(field.name, quoted=True)
    read = exp.cast(column, "TEXT") if field.type == pa.string() else column
    if field.type in STORAGE_CLASSES:
        checked = exp.Case().when(stored_as_read(field), read)
        return exp.alias_(checked, field.name, quoted=True)
    return column


def stored_as_read(field: pa.Field) -> exp.Expr:
    """`typeof("a") IN ('null', 'integer')`: the value has a storage class of its type."""
    classes = ("null", *STORAGE_CLASSES[field.type])
    kind = exp.Anonymous(this="typeof", expressions=[exp.column(field.name, quoted=True)])
    return exp.In(this=kind, expressions=[exp.Literal.string(name) for name in classes])


def sqlite_unreadable(target: pa.Schema) -> exp.Expr:
    """`CASE WHEN NOT typeof("a") IN (...) THEN 'text value ''abc'' in integer column a'
    END`: the reason names the value, as the row itself keeps it NULL."""
    case = exp.Case()
    for field in (field for field in target if field.type in STORAGE_CLASSES):
        column = exp.column(field.name, quoted=True)
        kind = exp.Anonymous(this="typeof", expressions=[column])
        written = exp.Anonymous(this="quote", expressions=[column.copy()])
        value = exp.Substring(
            this=written, start=exp.Literal.number(1), length=exp.Literal.number(100)
        )
        place = exp.Literal.string(f" in {SQLITE_TYPE_WORDS[field.type]} column {field.name}")
        reason = exp.DPipe(
            this=exp.DPipe(this=kind, expression=exp.Literal.string(" value ")),
            expression=exp.DPipe(this=value, expression=place),
        )
        case = case.when(exp.not_(stored_as_read(field)), reason)
    return exp.alias_(case if case.args.get("ifs") else exp.null(), UNREADABLE, quoted=True)


def sqlite_typed_select(
    table: str, target: pa.Schema, *, lower_bound_column: str | None = None
) -> str:
    """The columns of a SQLite table, after one row of sample values of their types.

    SQLite's ADBC driver takes each result column's type from the first rows it sees; a
    column that begins with NULLs would be guessed as an integer and fail on its first
    text. The sample row, marked by a column of its own, settles every type first; the
    reader drops it by the mark, so row order does not matter. A last column,
    `UNREADABLE`, names a value of another storage class than its column's type.
    """
    sample = exp.select(
        *(exp.alias_(SAMPLE_VALUES[field.type], field.name, quoted=True) for field in target),
        exp.alias_(exp.Literal.string(""), UNREADABLE, quoted=True),
        exp.alias_(exp.Literal.number(1), SAMPLE_MARK),
    )
    rows = exp.select(
        *(sqlite_column(field) for field in target),
        sqlite_unreadable(target),
        exp.alias_(exp.null(), SAMPLE_MARK),
    ).from_(exp.table_(table, quoted=True))
    if lower_bound_column is not None:
        # BINARY applies to text alone: a number still compares as a number.
        rows = rows.where(at_or_past(lower_bound_column, "sqlite", by_code_point=True))
    return exp.union(sample, rows, distinct=False).sql(dialect="sqlite")
