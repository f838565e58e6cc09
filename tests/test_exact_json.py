"""JSON numbers with a fraction pass through `profile` and `history` as they were written."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pitsync.queries import exact_json

# JSON values as `json.loads` gives them (floats left out: theirs is the text below).
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(VALUES, st.sampled_from([None, 0, 2]), st.booleans())
def test_values_are_written_as_json_dumps_writes_them(
    value: object, indent: int | None, ensure_ascii: bool
) -> None:
    expected = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    assert exact_json.dumps(value, indent=indent, ensure_ascii=ensure_ascii) == expected


# A number with a fraction or an exponent, as JSON may spell one.
NUMBER_TEXTS = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["", "-"]),
    st.from_regex(r"0|[1-9][0-9]{0,40}", fullmatch=True),
    st.from_regex(r"\.[0-9]{1,40}", fullmatch=True) | st.just(""),
    st.from_regex(r"[eE][+-]?[0-9]{1,3}", fullmatch=True),
) | st.from_regex(r"-?(0|[1-9][0-9]{0,40})\.[0-9]{1,40}", fullmatch=True)


@given(NUMBER_TEXTS)
def test_a_number_with_a_fraction_comes_back_as_its_text(text: str) -> None:
    document = f'{{"n": {text}, "list": [{text}]}}'

    assert exact_json.dumps(exact_json.loads(document)) == document
