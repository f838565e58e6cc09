"""Quoting for DuckDB SQL text: any name is only ever a name, any string only a string."""

from __future__ import annotations

import string


def quote_identifier(name: str) -> str:
    """A DuckDB identifier in double quotes, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def unquote_identifier(text: str) -> str:
    """The name a DuckDB identifier stands for: one quoted by `quote_identifier`, or a bare
    one. Only the enclosing pair of quotes is taken off, so a name may end in a quote."""
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"')
    return text


def quote_string(text: str) -> str:
    """A DuckDB string literal in single quotes, inner quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold_name(name: str) -> str:
    """A name in the case DuckDB compares names in: its ASCII letters lowered, and only
    those (`İ` and `Σ` stay as they are, where Python's lower() would change them)."""
    return name.translate(ASCII_FOLD)


def spelled_as_in(columns: list[str], name: str) -> str:
    """`name` as `columns` spell it: the column so named, else one that matches it in
    another case (`COMPANY_ID` for `company_id`), as DuckDB compares names; else `name`
    itself."""
    if name in columns:
        return name
    return next((column for column in columns if fold_name(column) == fold_name(name)), name)


def fold_name_sql(expression: str) -> str:
    """`fold_name` in DuckDB SQL: its lower() would lower every letter."""
    upper, lower = quote_string(string.ascii_uppercase), quote_string(string.ascii_lowercase)
    return f"translate({expression}, {upper}, {lower})"


def escaped_bytes_sql(expression: str) -> str:
    """Bytes (a BLOB) as text, each byte outside printable ASCII (and a backslash, so that
    the text reads back unambiguously) written as DuckDB writes a blob's (`\\xFF`); quotes,
    which DuckDB writes so too, stay themselves."""
    return f"replace(replace(CAST({expression} AS VARCHAR), '\\x27', ''''), '\\x22', '\"')"
