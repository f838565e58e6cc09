"""Quoting for DuckDB SQL text: any name is only ever a name, any string only a string."""

from __future__ import annotations


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
