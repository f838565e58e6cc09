"""The read-only guard: parse a query, refuse anything that is not a plain read.

A query passes only when it is one SELECT (WITH, UNION and FROM-first included) whose
every relation is a relation of the store, a CTE, or one of a few table functions that
compute rows without touching files. This is the first wall; the second is the store
connection itself, opened read-only with external access off and its settings locked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, TokenError
from sqlglot.parsers.duckdb import DuckDBParser
from sqlglot.tokens import Token, TokenType

from pitsync.errors import QueryRefused
from pitsync.quoting import fold_name
from pitsync.store import INTERNAL_SCHEMA

# The schemas of the store's relations: its public views, and pitsync's own tables.
STORE_SCHEMAS = {"main", INTERNAL_SCHEMA}

# Table functions that generate rows from their arguments alone.
PURE_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}

WRITE_NODES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Command,
    exp.Pragma,
    exp.Set,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Into,
)

# The clauses that end a query, which sqlglot does not read after a PIVOT statement.
ENDING_CLAUSES = {TokenType.ORDER_BY, TokenType.LIMIT, TokenType.OFFSET, TokenType.FETCH}
# Statements that read but are no SELECT: refused with a message that says so.
READ_WORDS = {"EXPLAIN", "DESCRIBE", "DESC", "SUMMARIZE", "SHOW"}
# Statements that change something: one sqlglot cannot parse (EXPORT, or a CREATE
# SECRET it does not know) is refused as a write rather than as bad syntax.
WRITE_WORDS = {
    *("ABORT", "ALTER", "ANALYZE", "ATTACH", "BEGIN", "CALL", "CHECKPOINT", "COMMENT"),
    *("COMMIT", "COPY", "CREATE", "DEALLOCATE", "DELETE", "DETACH", "DROP", "END"),
    *("EXECUTE", "EXPORT", "FORCE", "GRANT", "IMPORT", "INSERT", "INSTALL", "LOAD"),
    *("MERGE", "PRAGMA", "PREPARE", "RESET", "REVOKE", "ROLLBACK", "SET", "START"),
    *("TRUNCATE", "UPDATE", "UPSERT", "USE", "VACUUM"),
}
# The same, as sqlglot reads them inside a query (`FROM (SUMMARIZE 'file.csv')`).
READ_NODES: dict[type[exp.Expr], str] = {exp.Describe: "DESCRIBE", exp.Summarize: "SUMMARIZE"}

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
LEADING_WORD = re.compile(r"\s*([A-Za-z]+)")


class JsonArrowParser(DuckDBParser):
    """DuckDB's grammar as sqlglot reads it, except that `->` is always the JSON arrow.

    sqlglot takes `x -> e` among a function's arguments for a lambda, so
    `json_type(properties -> 'plan')` would run as `json_type(LAMBDA properties : 'plan')`.
    DuckDB 2.0 writes lambdas `lambda x: e` only (a separate rule of the parser, kept), so
    the arrow can only be json_extract, read with the same precedence as anywhere else.

    PostgreSQL's json_extract_path(_text) are left as the calls they are: sqlglot would
    turn them into an arrow and drop every key but the first; DuckDB has neither, and
    says so.
    """

    LAMBDAS = {
        token: build for token, build in DuckDBParser.LAMBDAS.items() if token != TokenType.ARROW
    }
    FUNCTIONS = {
        name: build
        for name, build in DuckDBParser.FUNCTIONS.items()
        if name not in {"JSON_EXTRACT_PATH", "JSON_EXTRACT_PATH_TEXT"}
    }

    # Set while a typed literal is read: the next operators after its text wait for it.
    literal_operators_wait = False

    def _parse_type(
        self, parse_interval: bool = True, fallback_to_identifier: bool = False
    ) -> exp.Expr | None:
        """A typed literal whole, then what follows it.

        sqlglot applies an operator after a typed literal's text to the text alone:
        `TIMESTAMPTZ '... +05'::DATE` would cast the text to a date first, dropping the
        offset and the time. DuckDB casts the typed literal, and so does this parser.
        """
        if not self.typed_literal_ahead():
            return super()._parse_type(parse_interval, fallback_to_identifier)
        self.literal_operators_wait = True
        try:
            literal = super()._parse_type(parse_interval, fallback_to_identifier)
        finally:
            self.literal_operators_wait = False
        return self._parse_column_ops(literal)

    def _parse_column_ops(self, this: exp.Expr | None) -> exp.Expr | None:
        if self.literal_operators_wait and isinstance(this, exp.Literal):
            self.literal_operators_wait = False
            return this  # the typed literal takes them, once it is built
        return super()._parse_column_ops(this)

    def typed_literal_ahead(self) -> bool:
        """Whether the next tokens are a type (not INTERVAL, read apart) and a string."""
        if self._curr is None or self._curr.token_type == TokenType.INTERVAL:
            return False
        start = self._index
        try:
            kind = self._parse_types(check_func=True, allow_identifiers=False)
            return kind is not None and self._match(TokenType.STRING, advance=False) is True
        finally:
            self._retreat(start)


class StoreDuckDB(DuckDB):
    """DuckDB's dialect, with JSON paths kept as written.

    sqlglot reads `properties ->> 'utm.source'` as the path `$.utm.source` (a key `utm`,
    then `source`), where DuckDB reads a path without `$` or `/` as one whole key; and
    `'$email'` as the key `email`. Kept as written, the path means what DuckDB says.
    """

    def to_json_path(self, path: exp.Expr | None) -> exp.Expr | None:
        return path


def tokens_of(dialect: DuckDB, sql: str) -> list[Token]:
    """The tokens of `sql`; text that cannot be split into tokens (an unclosed quote or
    comment) is a ParseError like any other."""
    try:
        return dialect.tokenize(sql)
    except TokenError as error:
        raise ParseError(f"is a quote or a comment left open? ({error})") from error


def parse_duckdb(sql: str) -> list[exp.Expr]:
    """The statements of `sql` as sqlglot trees, `->` read as the JSON arrow throughout."""
    dialect = StoreDuckDB()
    trees = JsonArrowParser(dialect=dialect).parse(tokens_of(dialect, sql), sql)
    # A comment after the last `;` is a statement of nothing but that comment.
    return [tree for tree in trees if tree is not None and not isinstance(tree, exp.Semicolon)]


def parse_condition(sql: str) -> exp.Expr:
    """One SQL condition (a WHERE clause's body) as a sqlglot tree, or ParseError."""
    dialect = StoreDuckDB()
    parser = JsonArrowParser(dialect=dialect)
    trees = parser.parse_into(exp.Condition, tokens_of(dialect, sql), sql)
    if len(trees) != 1 or trees[0] is None:
        raise ParseError(f"expected one condition in {sql!r}")
    return trees[0]


def parse_read_query(sql: str) -> exp.Query:
    """One SELECT statement as a sqlglot tree, or QueryRefused saying why not."""
    # sqlglot warns on stderr about syntax it passes through as a raw command; such a
    # statement is refused below anyway, with a message of ours.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        statements = parse_duckdb(sql)
    except ParseError as error:
        if first_word(sql) in WRITE_WORDS:
            raise not_a_read(sql) from None
        raise QueryRefused(
            f"cannot parse the query: {parse_problem(error)}{keyword_hint(sql, error)}"
            f"{pivot_hint(sql)}",
            sql=sql,
        ) from error
    if len(statements) != 1:
        raise QueryRefused(
            f"pass exactly one statement, got {len(statements)}; queries are read one at a time",
            sql=sql,
        )
    tree = statements[0]
    if isinstance(tree, (exp.Values, exp.Pivot)):
        tree = as_select(tree)
    if first_word(sql) in READ_WORDS:
        raise no_select(first_word(sql), sql)
    if not isinstance(tree, exp.Query):
        raise no_statement(sql) if is_bare_expression(tree, sql) else not_a_read(sql)
    for node in tree.walk():
        if isinstance(node, WRITE_NODES):
            raise QueryRefused(
                f"only reads are allowed: the query contains {statement_word(node)}", sql=sql
            )
        if type(node) in READ_NODES:
            raise no_select(READ_NODES[type(node)], sql, inside=True)
    return tree


def is_bare_expression(tree: exp.Expr, sql: str) -> bool:
    """Whether the text is a value, not a statement (`'b' AS x`, `events`, `42`); a word
    that starts a statement is one, though sqlglot may read it as a column name."""
    statement = first_word(sql) in WRITE_WORDS | READ_WORDS
    return isinstance(tree, exp.Alias | exp.Condition) and not statement


def no_statement(sql: str) -> QueryRefused:
    return QueryRefused(
        f"the query is no statement: it begins with `{sql.split()[0]}`; write a SELECT "
        "(or a FROM, WITH or VALUES) that reads the store, as in `SELECT * FROM events`",
        sql=sql,
    )


def not_a_read(sql: str) -> QueryRefused:
    return QueryRefused(
        f"only reads are allowed, and this statement is {first_word(sql)}; "
        "the store is changed only by pitsync's own commands (sync, engage, import-csv, "
        "delete-profiles, drop-table)",
        sql=sql,
    )


def parse_problem(error: ParseError) -> str:
    """sqlglot's reason, on one line: without the quote of the SQL it adds on the next
    lines, the terminal escape codes that underline the bad token there, or the names
    of sqlglot's own classes."""
    problem = ANSI_ESCAPE.sub("", str(error)).strip().splitlines()[0]
    problem = END_TOKEN.sub("the end of the query", problem)
    problem = TOKEN.sub(lambda found: f"`{found.group(1)}`", problem)
    problem = MISSING_PART.sub("an unfinished expression", problem)
    return problem.rstrip(".")


END_TOKEN = re.compile(r"<Token token_type: TokenType\.SENTINEL.*?comments: \[.*?\]>")
TOKEN = re.compile(r"<Token token_type: TokenType\.\w+, text: (.*?), line: .*?comments: \[.*?\]>")
MISSING_PART = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*'>")
# Words DuckDB reads as a type or a function where a column of that name is meant.
KEYWORD_NAMES = {"range", "list", "map", "struct", "nullable"}
# How many tokens before the one a parse failed at may be the keyword to blame.
NEAR_FAILURE = 3


def keyword_hint(sql: str, error: ParseError) -> str:
    """A hint when the query failed to parse just after a bare column name DuckDB reads
    as a type or a function (`range < 5`, `SELECT map FROM t`)."""
    failed = next(iter(error.errors), {})
    line, column = failed.get("line"), failed.get("col")
    if not isinstance(line, int) or not isinstance(column, int):
        return ""
    try:
        tokens = sqlglot.tokenize(sql, read="duckdb")
    except TokenError:
        return ""
    reached = sum(1 for token in tokens if (token.line, token.col) <= (line, column))
    for position in reversed(range(max(reached - NEAR_FAILURE, 0), reached)):
        if is_bare_keyword_name(tokens, position):
            return (
                f"; a column named `{tokens[position].text}` is read as a keyword: write it "
                "in double quotes"
            )
    return ""


def pivot_hint(sql: str) -> str:
    """A hint for a PIVOT or UNPIVOT statement that sorts or limits its rows, which
    sqlglot cannot read (DuckDB can)."""
    word = first_word(sql)
    if word not in ("PIVOT", "UNPIVOT"):
        return ""
    try:
        tokens = sqlglot.tokenize(sql, read="duckdb")
    except TokenError:
        return ""
    if not any(token.token_type in ENDING_CLAUSES for token in tokens):
        return ""
    return (
        f"; ORDER BY and LIMIT cannot follow a {word} statement here: wrap it in a query, "
        f"SELECT * FROM ({word} ...) ORDER BY ... LIMIT ..."
    )


def is_bare_keyword_name(tokens: list[Token], position: int) -> bool:
    """A keyword of KEYWORD_NAMES neither called (`range(`) nor qualified (`t.range`)."""
    token = tokens[position]
    if token.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
        return False
    if token.text.lower() not in KEYWORD_NAMES:
        return False
    after = tokens[position + 1].token_type if position + 1 < len(tokens) else None
    before = tokens[position - 1].token_type if position > 0 else None
    return after != TokenType.L_PAREN and before != TokenType.DOT


def no_select(word: str, sql: str, *, inside: bool = False) -> QueryRefused:
    """The refusal of a read that is no SELECT (DESCRIBE, SUMMARIZE, SHOW, EXPLAIN)."""
    where = " (not even inside a query)" if inside else ""
    return QueryRefused(
        f"`pitsync query` runs SELECT queries (WITH, FROM-first, VALUES and PIVOT "
        f"included), and {word} is not one{where}; select from the relation instead",
        sql=sql,
    )


def check_relations(
    tree: exp.Query, relations: set[str], sql: str, *, public: set[str] | None = None
) -> None:
    """Every table the query reads must be a store relation, a CTE or a pure function.

    `public` names the relations an error message lists (the store's own are left out).
    """
    folded = {fold_name(name) for name in relations}  # CTE names come folded
    for table in tree.find_all(exp.Table):
        # A CTE is named without a schema: `information_schema.tables` is no CTE `tables`.
        ctes = set() if table.db else ctes_in_scope(table)
        check_table(table, folded | ctes, sql, listed=(public or relations) | ctes)
    for lateral in tree.find_all(exp.Lateral):
        # `LATERAL f(...)` calls a table function as FROM does, outside any table node.
        if isinstance(lateral.this, exp.Func):
            check_table_function(lateral.this, sql)
    for function in tree.find_all(exp.Func):
        if isinstance(function.parent, exp.Table):
            continue
        name = function_name(function)
        if name in FILE_FUNCTIONS:
            raise QueryRefused(
                f"`{name}` reads files, and queries may read only the store", sql=sql
            )


def as_select(statement: exp.Values | exp.Pivot) -> exp.Select:
    """A VALUES or PIVOT statement, a read of its own, as the rows of a SELECT. The CTEs
    of `WITH x AS (...) PIVOT x ...` go to the SELECT, outside the pivot (see
    `check_pivots`)."""
    ctes = statement.args.get("with_")
    statement.set("with_", None)
    select = exp.select("*").from_(exp.paren(statement))
    if ctes is not None:
        select.set("with_", ctes)
    return select


def check_pivots(tree: exp.Query, sql: str) -> None:
    """Refuse a PIVOT or UNPIVOT that names a column by its table (`e.time`) anywhere
    inside it: sqlglot prints such a pivot back with every table name left out, so
    `x.event = e.event` would run as `event = event`. (An as-of join inside one adds such
    names too.) A CTE the pivot reads keeps its names."""
    for pivot in tree.find_all(exp.Pivot):
        qualified = next((c for c in pivot.find_all(exp.Column) if c.table), None)
        if qualified is not None:
            raise QueryRefused(
                f"inside a PIVOT or UNPIVOT, columns may not be named by their table "
                f"(`{qualified.sql('duckdb')}`); select them in a CTE and pivot that "
                "(WITH x AS (SELECT ...) PIVOT x ON ...)",
                sql=sql,
            )


def ctes_in_scope(table: exp.Table) -> set[str]:
    """The CTEs a table reference can name: those of the WITH clauses around it. Beyond
    them the name would be looked up in DuckDB's own catalog (`pg_settings`).

    Inside a CTE's own body only the CTEs before it are names, and the CTE itself only
    in the recursive part of a WITH RECURSIVE (after its UNION, not UNION BY NAME):
    elsewhere DuckDB reads `WITH pg_settings AS (SELECT * FROM pg_settings)` as its
    catalog's table.
    """
    names: set[str] = set()
    within: exp.CTE | None = None  # the CTE whose body the reference sits in, if any
    for scope in ancestors(table):
        if isinstance(scope, exp.CTE):
            within = scope
        with_clause = scope.args.get("with_")
        if isinstance(with_clause, exp.With):
            names |= visible_ctes(with_clause, within, table)
            within = None
    return names


def ancestors(node: exp.Expr) -> Iterator[exp.Expr]:
    """The nodes around `node`, nearest first."""
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def visible_ctes(with_clause: exp.With, within: exp.CTE | None, table: exp.Table) -> set[str]:
    """The names of `with_clause` a table reference in `within` (None: in the query the
    WITH belongs to) can use."""
    ctes = list(with_clause.expressions)
    position = next((index for index, cte in enumerate(ctes) if cte is within), None)
    if within is None or position is None:
        return {fold_name(cte.alias_or_name) for cte in ctes}
    names = {fold_name(cte.alias_or_name) for cte in ctes[:position]}
    body = within.this
    # DuckDB makes no CTE recursive through UNION BY NAME: there the name is its catalog's.
    by_position = isinstance(body, exp.Union) and not body.args.get("by_name")
    recursive_part = body.expression if by_position else None
    recursive = with_clause.args.get("recursive") and recursive_part is not None
    if recursive and any(node is recursive_part for node in ancestors(table)):
        names.add(fold_name(within.alias_or_name))
    return names


FILE_FUNCTIONS = {
    "read_csv",
    "read_csv_auto",
    "read_parquet",
    "parquet_scan",
    "read_json",
    "read_json_auto",
    "read_ndjson",
    "read_text",
    "read_blob",
    "glob",
    "sniff_csv",
    "parquet_metadata",
    "parquet_schema",
    "parquet_file_metadata",
    "parquet_kv_metadata",
    "sqlite_scan",
    "postgres_scan",
    "iceberg_scan",
    "delta_scan",
    "getenv",
    "read_xlsx",
}


def check_table(table: exp.Table, known: set[str], sql: str, *, listed: set[str]) -> None:
    """A table reference is a known relation (`known`: names folded as DuckDB folds them),
    or a table function that reads no files; `listed` are the names an error lists."""
    if isinstance(table.this, exp.Func):
        check_table_function(table.this, sql)
        return
    if table.catalog:
        raise QueryRefused(
            f"`{table.sql('duckdb')}` names another database; queries read only the store",
            sql=sql,
        )
    if table.db and fold_name(table.db) not in STORE_SCHEMAS:
        raise QueryRefused(
            f"`{table.sql('duckdb')}` names schema `{table.db}`; queries read only the store's "
            "relations: name them without a schema",
            sql=sql,
        )
    if fold_name(table.name) not in known:
        raise QueryRefused(
            f"unknown relation `{table.name}`; the store has: {', '.join(sorted(listed))}",
            sql=sql,
        )


def check_table_function(function: exp.Func, sql: str) -> None:
    name = function_name(function)
    if name not in PURE_TABLE_FUNCTIONS:
        raise QueryRefused(
            f"the table function `{name}` is not allowed: queries may read only the "
            f"store's relations (and {', '.join(sorted(PURE_TABLE_FUNCTIONS))})",
            sql=sql,
        )


def function_name(function: exp.Func) -> str:
    if isinstance(function, exp.Anonymous):
        return str(function.this).lower()
    return function.sql_name().lower()


def statement_word(node: exp.Expression) -> str:
    return type(node).__name__.upper()


def first_word(sql: str) -> str:
    """The statement's keyword as the user wrote it (comments skipped)."""
    try:
        tokens = sqlglot.tokenize(sql, read="duckdb")
    except TokenError:  # a quote or comment left open further on
        word = LEADING_WORD.match(sql)
        return word.group(1).upper() if word else "unreadable"
    for token in tokens:
        return token.text.upper()
    return "empty"
