"""JSON whose numbers with a fraction pass through Python as they were written.

DuckDB writes a DECIMAL into JSON with every digit (`123456789012345.125`); Python's `json`
would read it as a double and write back `123456789012345.12`. Here such a number is read
as its text (`NumberText`) and written back as that text, so a value shown by `profile`
or `history` is the value `query` shows.
"""

from __future__ import annotations

import json
from typing import Any


class NumberText(str):
    """A JSON number with a fraction or an exponent, as its text."""


def loads(text: str) -> Any:
    return json.loads(text, parse_float=NumberText)


def dumps(value: Any, *, indent: int | None = None, ensure_ascii: bool = True) -> str:
    """JSON text as `json.dumps` writes it, with a `NumberText` written as the number it is."""
    return written(value, indent, ensure_ascii, depth=0)


def written(value: Any, indent: int | None, ensure_ascii: bool, *, depth: int) -> str:
    if isinstance(value, NumberText):
        return str(value)
    if isinstance(value, dict):
        items = [
            f"{json.dumps(key, ensure_ascii=ensure_ascii)}: "
            f"{written(item, indent, ensure_ascii, depth=depth + 1)}"
            for key, item in value.items()
        ]
        return enclosed("{", items, "}", indent, depth)
    if isinstance(value, list):
        items = [written(item, indent, ensure_ascii, depth=depth + 1) for item in value]
        return enclosed("[", items, "]", indent, depth)
    return json.dumps(value, ensure_ascii=ensure_ascii)


def enclosed(opening: str, items: list[str], closing: str, indent: int | None, depth: int) -> str:
    """Items between brackets: on one line, or each on its own line `indent` deeper."""
    if not items:
        return opening + closing
    if indent is None:
        return opening + ", ".join(items) + closing
    inner = "\n" + " " * (indent * (depth + 1))
    return opening + inner + ("," + inner).join(items) + "\n" + " " * (indent * depth) + closing
