"""Quoting for DuckDB SQL text: any name is only ever a name, any string only a string."""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """A DuckDB identifier in double quotes, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(text: str) -> str:
    """A DuckDB string literal in single quotes, inner quotes doubled."""
    return "'" + text.replace("'", "''") + "'"
