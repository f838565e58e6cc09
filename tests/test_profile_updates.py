"""Profile update operators, each rule with a hand-worked profile, and the record checks.

The reported cases C14 and C16 (fixtures/point_in_time_cases.json) are here with their
stated answers, applied one prefix at a time so every intermediate profile they state is
checked too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pitsync.config import load_config
from pitsync.connectors import profile_updates, update_files
from pitsync.connectors.profile_updates import UpdateReport, apply_file
from pitsync.errors import SourceError
from pitsync.queries.execute import QuerySession
from tests.conftest import arrow_held_per_batch, growth_per_batch, unreadable

CASES = Path(__file__).parent / "fixtures" / "point_in_time_cases.json"


class Profiles:
    """A store with nothing but profiles, and helpers to apply records and read them."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.config_path = root / "pitsync.toml"
        self.config_path.write_text(f'[store]\npath = "{root / "store.duckdb"}"\n')
        self.files = 0

    def apply(self, *records: Any, strict: bool = False) -> UpdateReport:
        """Write the records as JSON lines (strings as they are) and apply the file."""
        self.files += 1
        path = self.root / f"updates-{self.files}.jsonl"
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return apply_file(load_config(str(self.config_path)), str(path), strict=strict)

    def rows(self, sql: str) -> list[tuple]:
        with QuerySession(load_config(str(self.config_path)).store_path) as session:
            return session.query(sql).fetchall()

    def user(self, distinct_id: str) -> dict[str, Any] | None:
        rows = self.rows(
            f"SELECT properties FROM user_profiles WHERE distinct_id = '{distinct_id}'"
        )
        return json.loads(rows[0][0]) if rows else None

    def group(self, key: str, group_id: str) -> dict[str, Any] | None:
        rows = self.rows(
            "SELECT properties FROM group_profiles "
            f"WHERE group_key = '{key}' AND group_id = '{group_id}'"
        )
        return json.loads(rows[0][0]) if rows else None

    def last_seen(self, distinct_id: str) -> str | None:
        rows = self.rows(
            "SELECT strftime(last_seen, '%Y-%m-%dT%H:%M:%S') FROM user_profiles "
            f"WHERE distinct_id = '{distinct_id}'"
        )
        return rows[0][0]


@pytest.fixture
def profiles(tmp_path: Path) -> Profiles:
    return Profiles(tmp_path)


def user(operator: str, value: Any, distinct_id: str = "u1", **extra: Any) -> dict[str, Any]:
    return {"$distinct_id": distinct_id, operator: value, **extra}


def case(case_id: str) -> dict[str, Any]:
    cases = json.loads(CASES.read_text(encoding="utf-8"))
    listed = cases if isinstance(cases, list) else cases["cases"]
    return next(entry for entry in listed if entry["id"] == case_id)


def test_set_creates_and_overwrites(profiles: Profiles) -> None:
    profiles.apply(user("$set", {"plan": "free", "seats": 3}), user("$set", {"plan": "pro"}))
    assert profiles.user("u1") == {"plan": "pro", "seats": 3}


def test_set_null_removes_and_set_once_null_does_nothing(profiles: Profiles) -> None:
    profiles.apply(
        user("$set", {"plan": "pro", "seats": 3}),
        user("$set", {"plan": None}),
        user("$set_once", {"seats": None, "region": None}),
    )
    assert profiles.user("u1") == {"seats": 3}


def test_set_once_sets_only_missing_properties(profiles: Profiles) -> None:
    profiles.apply(
        user("$set_once", {"first_source": "ads"}),
        user("$set_once", {"first_source": "newsletter", "first_plan": "free"}),
    )
    assert profiles.user("u1") == {"first_source": "ads", "first_plan": "free"}


def test_add_counts_missing_as_zero_and_keeps_integers_whole(profiles: Profiles) -> None:
    profiles.apply(
        user("$add", {"logins": 2}),
        user("$add", {"logins": 3, "spend": 1.5}),
        user("$add", {"spend": 2, "logins": -1}),
    )
    assert profiles.user("u1") == {"logins": 4, "spend": 3.5}


def test_add_to_a_missing_property_is_a_sum_with_zero(profiles: Profiles) -> None:
    big = 10**40  # past HUGEINT, so 0 + big is a double, as it is onto a stored 0
    profiles.apply(
        '{"$distinct_id": "u1", "$set": {"zero": 0}}',
        f'{{"$distinct_id": "u1", "$add": {{"z": -0.0, "h": 1.50, "big": {big}, "zero": {big}}}}}',
    )

    state = profiles.user("u1")
    assert state == {"z": 0.0, "h": 1.5, "big": 1e40, "zero": 1e40}
    assert type(state["big"]) is float and type(state["zero"]) is float
    assert math.copysign(1.0, state["z"]) == 1.0  # 0 + (-0.0) is 0.0


def test_add_on_a_non_number_is_refused_for_that_property(profiles: Profiles) -> None:
    report = profiles.apply(
        user("$set", {"plan": "pro", "flag": True}),
        user("$add", {"plan": 1, "flag": 1, "logins": 1}),
    )
    assert profiles.user("u1") == {"plan": "pro", "flag": True, "logins": 1}
    assert report.outcome.warning_count == 2
    assert sorted(report.outcome.warnings) == [
        "line 2: $add ignored for flag: flag is not numeric",
        "line 2: $add ignored for plan: plan is not numeric",
    ]


def test_union_adds_only_new_values_in_order(profiles: Profiles) -> None:
    profiles.apply(
        user("$union", {"tags": ["b", "a", "b"]}),
        user("$union", {"tags": ["c", "a", 1, "c"]}),
    )
    assert profiles.user("u1") == {"tags": ["b", "a", "c", 1]}


def test_append_keeps_duplicates_and_creates_a_list(profiles: Profiles) -> None:
    profiles.apply(
        user("$append", {"pages": "home"}),
        user("$append", {"pages": "home"}),
        user("$append", {"pages": ["nested"]}),
    )
    assert profiles.user("u1") == {"pages": ["home", "home", ["nested"]]}


def test_remove_takes_every_copy_and_ignores_a_missing_list(profiles: Profiles) -> None:
    report = profiles.apply(
        user("$set", {"tags": ["a", "b", "a", "c"]}),
        user("$remove", {"tags": "a", "absent": "x"}),
        user("$remove", {"tags": "zzz"}),
    )
    assert profiles.user("u1") == {"tags": ["b", "c"]}
    assert report.outcome.warning_count == 0


def test_list_operators_on_a_non_list_are_refused(profiles: Profiles) -> None:
    report = profiles.apply(
        user("$set", {"plan": "pro", "seats": 3}),
        user("$union", {"plan": ["x"]}),
        user("$append", {"seats": 1}),
        user("$remove", {"plan": "pro"}),
    )
    assert profiles.user("u1") == {"plan": "pro", "seats": 3}
    assert report.outcome.warnings == [
        "line 2: $union ignored for plan: plan is not a list",
        "line 3: $append ignored for seats: seats is not a list",
        "line 4: $remove ignored for plan: plan is not a list",
    ]


def test_unset_removes_the_named_properties(profiles: Profiles) -> None:
    profiles.apply(user("$set", {"a": 1, "b": 2, "c": 3}), user("$unset", ["a", "c", "zz"]))
    assert profiles.user("u1") == {"b": 2}


def test_delete_removes_the_profile_and_a_later_update_starts_anew(profiles: Profiles) -> None:
    profiles.apply(user("$set", {"plan": "pro", "seats": 3}))
    profiles.apply(user("$delete", ""))
    assert profiles.user("u1") is None

    profiles.apply(user("$set", {"plan": "free"}), user("$delete", ""), user("$set", {"a": 1}))
    assert profiles.user("u1") == {"a": 1}


def test_state_carries_across_files(profiles: Profiles) -> None:
    profiles.apply(user("$set", {"tags": ["a"], "n": 1}))
    profiles.apply(user("$union", {"tags": ["a", "b"]}), user("$add", {"n": 41}))
    assert profiles.user("u1") == {"tags": ["a", "b"], "n": 42}


def test_every_other_operator_creates_an_empty_profile(profiles: Profiles) -> None:
    profiles.apply(user("$remove", {"tags": "x"}), user("$unset", ["a"], distinct_id="u2"))
    assert profiles.user("u1") == {}
    assert profiles.user("u2") == {}


def test_group_profiles_take_set_union_remove(profiles: Profiles) -> None:
    group = {"$group_key": "company_id", "$group_id": 42}
    profiles.apply(
        {**group, "$set": {"name": "Acme"}},
        {**group, "$union": {"domains": ["acme.io", "acme.io"]}},
        {**group, "$remove": {"domains": "none"}},
    )
    assert profiles.group("company_id", "42") == {"name": "Acme", "domains": ["acme.io"]}
    assert profiles.user("42") is None  # a group id is not a user


@pytest.mark.parametrize("operator, value", [("$add", {"n": 1}), ("$append", {"tags": "x"})])
def test_group_add_and_append_are_rejected(
    profiles: Profiles, operator: str, value: dict[str, Any]
) -> None:
    group = {"$group_key": "company_id", "$group_id": "7"}
    report = profiles.apply({**group, "$set": {"n": 1}}, {**group, operator: value})
    assert report.rejected == 1
    assert report.rejections == [
        f"line 2: {operator} is not available for group profiles (only for users)"
    ]
    assert profiles.group("company_id", "7") == {"n": 1}


def test_c14_null_in_set_once_and_set(profiles: Profiles) -> None:
    """C14: NULL in $set_once is a no-op; NULL in $set removes the property."""
    entry = case("C14")
    operations = entry["input"]["operations"]
    expected = entry["expected"]
    checkpoints = {"after_seq_1": 1, "after_seq_4": 4, "final_profile": len(operations)}
    for key, upto in checkpoints.items():
        fresh = Profiles(profiles.root / key)
        fresh.apply(*[{"$distinct_id": "u1", **op["op"]} for op in operations[:upto]])
        assert fresh.user("u1") == expected[key], key


def test_c16_lists_numbers_wrong_types_and_delete(tmp_path: Path) -> None:
    """C16: every stated intermediate profile, the final one, and the three warnings."""
    entry = case("C16")
    operations = entry["input"]["operations"]
    expected = entry["expected"]
    for key, wanted in expected.items():
        if not key.startswith("after_seq_"):
            continue
        upto = int(key.removeprefix("after_seq_"))
        fresh = Profiles(tmp_path / key)
        fresh.apply(*[{"$distinct_id": "u1", **op["op"]} for op in operations[:upto]])
        state = fresh.user("u1")
        assert state == (None if wanted == "no profile (deleted)" else wanted), key

    whole = Profiles(tmp_path)
    report = whole.apply(*[{"$distinct_id": "u1", **op["op"]} for op in operations])
    assert whole.user("u1") == expected["final_profile"]
    assert report.outcome.warnings == [
        "line 8: $append ignored for plan: plan is not a list",
        "line 9: $union ignored for plan: plan is not a list",
        "line 10: $add ignored for plan: plan is not numeric",
    ]
    assert len(expected["warnings"]) == report.outcome.warning_count == 3


def test_last_seen_is_the_last_update_time_unless_ignored(profiles: Profiles) -> None:
    profiles.apply(
        user("$set", {"a": 1}, **{"$time": "2024-03-01T10:00:00Z"}),
        user("$set", {"a": 2}, **{"$time": 1709373600000}),  # 2024-03-02T10:00:00Z in ms
        user("$set", {"a": 3}, **{"$time": "2024-03-05T00:00:00Z", "$ignore_time": True}),
    )
    assert profiles.user("u1") == {"a": 3}
    assert profiles.last_seen("u1") == "2024-03-02T10:00:00"

    profiles.apply(user("$add", {"a": 1}, **{"$time": 1709251200}))  # seconds: 2024-03-01
    assert profiles.last_seen("u1") == "2024-03-01T00:00:00"


def test_a_time_outside_the_years_1_to_9999_is_rejected(profiles: Profiles) -> None:
    # -70e9 seconds is the year 249 BC; 1.7e15, microseconds, read as milliseconds, is
    # the year 55840; the year 0 is 1 BC.
    report = profiles.apply(
        user("$set", {"a": 1}, **{"$time": -70_000_000_000}),
        user("$set", {"a": 2}, **{"$time": 1_700_000_000_000_000}),
        user("$set", {"a": 3}, **{"$time": "0000-01-01T00:00:00Z"}),
        user("$set", {"a": 4}, **{"$time": "9999-12-31T23:59:59Z"}),
        user("$set", {"a": 5}, **{"$time": 1e20}),  # past any time DuckDB holds
    )
    assert profiles.user("u1") == {"a": 4}
    assert [line.split(" is outside")[0] for line in report.rejections] == [
        "line 1: $time -70000000000",
        "line 2: $time 1700000000000000",
        'line 3: $time "0000-01-01T00:00:00Z"',
        "line 5: $time 100000000000000000000.0",
    ]


def test_last_seen_without_time_is_the_start_of_its_run(profiles: Profiles) -> None:
    before = dt.datetime.now(dt.UTC)
    profiles.apply(user("$set", {"a": 1}))
    profiles.apply(user("$set", {"a": 2}, distinct_id="u2"), user("$set", {"b": 1}))
    after = dt.datetime.now(dt.UTC)

    seen = profiles.rows(
        "SELECT distinct_id, r.run_id FROM user_profiles AS p JOIN runs AS r "
        "ON p.last_seen = r.started_at ORDER BY distinct_id"
    )
    assert seen == [("u1", 2), ("u2", 2)]  # both last updated by the second run
    [(started,)] = profiles.rows("SELECT started_at FROM runs WHERE run_id = 1")
    assert before <= started <= after


def test_bad_records_are_reported_by_line_and_the_rest_apply(profiles: Profiles) -> None:
    report = profiles.apply(
        user("$set", {"a": 1}),
        "not json at all",
        "[1, 2]",
        {"$set": {"a": 1}},
        user("$bogus", {"a": 1}),
        {"$distinct_id": "u1", "$set": {"a": 1}, "$add": {"b": 1}},
        user("$add", {"b": "five"}),
        user("$union", {"tags": "x"}),
        user("$set", {"a": 9}, **{"$time": "yesterday"}),
        user("$unset", "a"),
        "",
        user("$set", {"b": 2}),
    )
    assert profiles.user("u1") == {"a": 1, "b": 2}
    assert report.records == 11  # the blank line is no record
    assert report.outcome.applied == 2
    assert report.rejected == 9
    lines = [message.split(":")[0] for message in report.rejections]
    assert lines == [f"line {n}" for n in range(2, 11)]
    assert report.rejections[0] == "line 2: not JSON"
    assert report.rejections[1] == "line 3: not a JSON object"
    assert report.rejections[2].startswith("line 4: no id")
    assert report.rejections[3].startswith("line 5: unknown operator or key $bogus")
    assert report.rejections[4].startswith("line 6: one operator a record")
    assert "$add takes numbers" in report.rejections[5]
    assert report.rejections[6].endswith("$union takes a list for each property, and tags is text")
    assert "$time" in report.rejections[7]
    assert "$unset takes a list" in report.rejections[8]

    quarantined = profiles.rows("SELECT count(*) FROM quarantine WHERE table_name = 'profiles'")
    assert quarantined == [(9,)]


def test_a_line_of_only_json_white_space_is_blank(profiles: Profiles) -> None:
    report = profiles.apply(user("$set", {"a": 1}), "\t", " \t  ", user("$set", {"b": 2}))

    assert (report.records, report.rejected) == (2, 0)
    assert profiles.user("u1") == {"a": 1, "b": 2}
    # --strict finds no bad line there either.
    assert profiles.apply(user("$set", {"c": 3}), "\t", strict=True).rejected == 0


def test_strict_applies_nothing_when_a_record_is_bad(profiles: Profiles) -> None:
    from pitsync.errors import StrictModeError

    profiles.apply(user("$set", {"a": 1}))
    with pytest.raises(StrictModeError, match="line 2: not JSON"):
        profiles.apply(user("$set", {"a": 2}), "{oops", strict=True)
    assert profiles.user("u1") == {"a": 1}


def test_a_json_array_file_is_read_as_records(profiles: Profiles) -> None:
    path = profiles.root / "array.json"
    # Written over several lines, so that a record's number is not its line.
    records = [user("$set", {"a": 1}), 5, user("$add", {"a": 2}), user("$set", {"b": "x"})]
    records.append(user("$add", {"b": 1}))  # b is text: a warning
    path.write_text(json.dumps(records, indent=2))
    report = apply_file(load_config(str(profiles.config_path)), str(path))
    assert profiles.user("u1") == {"a": 3, "b": "x"}
    assert report.rejections == ["record 2: not a JSON object"]
    assert [warning.split(":")[0] for warning in report.outcome.warnings] == ["record 5"]
    assert profiles.rows("SELECT reason FROM quarantine") == [("record 2: not a JSON object",)]


def test_property_limit_refuses_exactly_the_record_past_it(profiles: Profiles) -> None:
    two_thousand = {f"p{i}": i for i in range(2000)}
    report = profiles.apply(
        user("$set", two_thousand),
        user("$set", {"one_more": 1}),
        user("$set", {"p0": "changed"}),  # changes a property, adds none: within the limit
        user("$set", {"x": 1}, distinct_id="u2"),
    )
    state = profiles.user("u1")
    assert state is not None and len(state) == 2000
    assert state["p0"] == "changed" and "one_more" not in state
    assert profiles.user("u2") == {"x": 1}
    assert report.outcome.refused == [
        (2, "update refused: user u1 would have 2001 properties, more than 2000")
    ]
    [(row_data,)] = profiles.rows("SELECT row_data FROM quarantine")
    assert json.loads(json.loads(row_data)) == user("$set", {"one_more": 1})  # the line's text

    report = profiles.apply(user("$set", {f"q{i}": i for i in range(2001)}, distinct_id="u3"))
    assert profiles.user("u3") is None
    assert report.outcome.refused[0][1].startswith("update refused: user u3 would have 2001")


def test_names_are_cut_to_255_characters(profiles: Profiles) -> None:
    exact, long = "n" * 255, "m" * 256
    profiles.apply(user("$set", {exact: 1, long: 2}))
    assert profiles.user("u1") == {exact: 1, "m" * 255: 2}


def test_strings_are_cut_to_255_bytes_at_a_character_boundary(profiles: Profiles) -> None:
    fits = "a" * 255
    two_byte = "é" * 200  # 400 bytes: 127 characters (254 bytes) fit
    split = "a" + "€" * 100  # 301 bytes: 1 + 84 * 3 = 253 fit, the 85th would need 256
    profiles.apply(user("$set", {"fits": fits, "two": two_byte, "three": split}))
    state = profiles.user("u1")
    assert state == {"fits": fits, "two": "é" * 127, "three": "a" + "€" * 84}
    assert all(len(value.encode()) <= 255 for value in state.values())


def test_a_list_item_holding_a_long_string_is_the_same_item_for_every_operator(
    profiles: Profiles,
) -> None:
    # A string item of a list is cut; a string inside an item that is itself a list is
    # kept whole, whether the item came by $set, $union, $append or $remove.
    long = "e" * 300
    profiles.apply(
        user("$union", {"nested": [[long], "x"]}),
        user("$remove", {"nested": [long]}),
        user("$append", {"appended": [long]}),
        user("$union", {"appended": [[long]]}),
        user("$set", {"flat": [long]}),
        user("$remove", {"flat": long}),
    )
    assert profiles.user("u1") == {"nested": ["x"], "appended": [[long]], "flat": []}


def test_lists_and_objects_up_to_256_kb(profiles: Profiles) -> None:
    item = "x" * 100
    within = [item] * 2000  # about 204 KB of JSON
    beyond = [item] * 2700  # about 275 KB
    report = profiles.apply(user("$set", {"within": within}), user("$set", {"beyond": beyond}))
    assert profiles.user("u1") == {"within": within}
    assert report.rejections == ["line 2: the value of beyond is larger than 256 KB"]


def engaged_from_standard_input(root: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """`pitsync engage -` as a command, with `data` on its standard input."""
    Profiles(root)
    command = [sys.executable, "-m", "pitsync.cli", "--config", str(root / "pitsync.toml")]
    return subprocess.run([*command, "engage", "-"], input=data, capture_output=True)


def test_standard_input_is_read_with_a_dash(tmp_path: Path) -> None:
    records = "\n".join(json.dumps(user("$set", {"n": n})) for n in range(3))

    result = engaged_from_standard_input(tmp_path, records.encode())

    assert result.returncode == 0
    assert "3 of 3 records applied to 1 profile (0 deleted)" in result.stdout.decode()
    assert Profiles(tmp_path).user("u1") == {"n": 2}


def test_a_refusal_of_standard_input_names_it_not_its_passing_copy(tmp_path: Path) -> None:
    array = b'[{"$distinct_id": "u1", "$set": {"a": "\xff"}}]'

    result = engaged_from_standard_input(tmp_path, array)

    assert result.returncode == 1
    assert result.stderr.decode() == (
        "pitsync: error: standard input is not UTF-8 text, and a JSON array is read whole, "
        "so none of it was applied; save the file as UTF-8\n"
    )


def test_an_update_file_that_cannot_be_read_is_one_line_and_no_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    profiles = Profiles(tmp_path)
    path = tmp_path / "updates.jsonl"
    path.write_text(json.dumps(user("$set", {"a": 1})) + "\n")
    prefix = unreadable(path)
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "pitsync.cli", "--config", str(profiles.config_path)]
        + ["engage", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"pitsync: error: cannot read {path}: permission denied" in result.stderr
    assert not (tmp_path / "store.duckdb").exists()


def test_the_limit_holds_at_every_record_not_only_at_the_end(profiles: Profiles) -> None:
    report = profiles.apply(
        user("$set", {f"k{i}": i for i in range(2000)}),
        user("$set", {"extra": 1}),  # 2001 here, whatever the next record does
        user("$unset", ["k1"]),
        user("$set", {"fits": 1}),  # 2000 again: applied
    )
    state = profiles.user("u1")
    assert state is not None and len(state) == 2000
    assert "extra" not in state and "k1" not in state and state["fits"] == 1
    assert [line for line, _ in report.outcome.refused] == [2]
    assert report.outcome.profiles_changed == 1


def test_a_list_that_would_grow_past_256_kb_is_left_as_it_was(profiles: Profiles) -> None:
    items = ["x" * 100] * 2540  # 2540 * 102 + 2539 commas + 2 brackets = 261,621 bytes
    z, w, v = "z" * 255, "w" * 255, "v" * 255  # each adds a comma and 257 bytes
    report = profiles.apply(
        user("$set", {"l": items}),
        user("$append", {"l": "y"}),  # 261,625
        user("$append", {"l": z}),  # 261,883
        user("$union", {"l": [w]}),  # 262,141: still within 262,144
        user("$append", {"l": v}),  # would be 262,399
        user("$union", {"l": [v]}),
    )
    assert profiles.user("u1") == {"l": [*items, "y", z, w]}
    assert report.outcome.warnings == [
        "line 5: $append ignored for l: l would pass 256 KB",
        "line 6: $union ignored for l: l would pass 256 KB",
    ]


def test_a_line_that_is_not_utf8_is_one_bad_record(profiles: Profiles) -> None:
    path = profiles.root / "latin1.jsonl"
    path.write_bytes(
        b'{"$distinct_id": "ok", "$set": {"x": 1}}\n'
        b'{"$distinct_id": "caf\xe9", "$set": {"x": 1}}\n'
        b'{"$distinct_id": "ok", "$add": {"x": 1}}\n'
    )
    report = apply_file(load_config(str(profiles.config_path)), str(path))
    assert profiles.user("ok") == {"x": 2}
    assert report.rejections == ["line 2: not UTF-8 text: save the file as UTF-8"]
    # The quarantine keeps the line, the byte that is no UTF-8 written as a blob's byte.
    [(row_data,)] = profiles.rows("SELECT row_data FROM quarantine")
    assert json.loads(row_data) == '{"$distinct_id": "caf\\xE9", "$set": {"x": 1}}'


def test_a_json_array_may_start_with_a_byte_order_mark(profiles: Profiles) -> None:
    path = profiles.root / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([user("$set", {"a": 1})]).encode())
    apply_file(load_config(str(profiles.config_path)), str(path))
    assert profiles.user("u1") == {"a": 1}


def test_a_json_array_that_is_not_utf8_is_refused_as_such(profiles: Profiles) -> None:
    path = profiles.root / "latin1.json"
    path.write_bytes(json.dumps([user("$set", {"a": "caf\u00e9"})]).encode("latin-1"))
    path.write_bytes(path.read_bytes().replace(b"\\u00e9", b"\xe9"))

    with pytest.raises(SourceError, match="is not UTF-8 text") as refused:
        apply_file(load_config(str(profiles.config_path)), str(path))

    assert "not one JSON array" not in str(refused.value)
    assert profiles.rows("SELECT count(*) FROM user_profiles") == [(0,)]


def test_a_line_arrow_cannot_split_stops_the_file_in_one_line(profiles: Profiles) -> None:
    # A raw unit separator together with bytes that are not UTF-8 on one line.
    path = profiles.root / "mixed.jsonl"
    path.write_bytes(b'{"$distinct_id": "u1", "$set": {"a": 1}}\n\x1f\xd8\n')

    with pytest.raises(SourceError, match="line 2 holds a raw 0x1F byte and bytes that"):
        apply_file(load_config(str(profiles.config_path)), str(path))

    assert profiles.rows("SELECT count(*) FROM user_profiles") == [(0,)]


def test_a_failed_run_is_recorded_and_leaves_the_relations(profiles: Profiles) -> None:
    from pitsync.errors import StrictModeError

    with pytest.raises(StrictModeError):
        profiles.apply(user("$set", {"a": 1}), "{", strict=True)
    assert profiles.rows("SELECT mode, status FROM runs") == [("engage", "failed")]
    assert profiles.rows("SELECT count(*) FROM user_profiles") == [(0,)]


def test_a_key_given_twice_rejects_the_record(profiles: Profiles) -> None:
    report = profiles.apply(
        '{"$distinct_id": "a", "$distinct_id": "b", "$set": {"x": 1}}',
        '{"$distinct_id": "a", "$set": {"x": 1, "y": 2, "x": 3}}',
    )
    assert report.rejections == [
        "line 1: a key appears twice: $distinct_id",
        "line 2: a property appears twice in $set: x",
    ]
    assert profiles.rows("SELECT count(*) FROM user_profiles") == [(0,)]


def test_an_integer_id_past_64_bits_is_asked_for_as_text(profiles: Profiles) -> None:
    report = profiles.apply(
        '{"$distinct_id": 12345678901234567890123, "$set": {"a": 1}}',
        '{"$distinct_id": "12345678901234567890123", "$set": {"a": 2}}',
    )
    assert report.rejections == [
        "line 1: no id: $distinct_id must be a non-empty string, or an integer of at most "
        "64 bits (give a longer one as a string)"
    ]
    assert profiles.user("12345678901234567890123") == {"a": 2}


def test_a_blank_group_key_rejects_the_record(profiles: Profiles) -> None:
    # No command could name such a group: --group-key refuses a blank key.
    report = profiles.apply(
        '{"$group_key": " ", "$group_id": "g1", "$set": {"a": 1}}',
        '{"$group_key": "\\t\\u00a0\\u3000", "$group_id": "g1", "$set": {"a": 1}}',
        '{"$group_key": " company_id", "$group_id": "g1", "$set": {"a": 1}}',
    )
    reason = 'no id: $group_key is blank; name the group key, such as "company_id"'
    assert report.rejections == [f"line 1: {reason}", f"line 2: {reason}"]
    assert profiles.rows("SELECT group_key, group_id FROM group_profiles") == [
        (" company_id", "g1")
    ]


def test_last_seen_is_kept_by_pitsync_and_set_by_no_record(profiles: Profiles) -> None:
    report = profiles.apply(
        '{"$distinct_id": "u1", "$set": {"$last_seen": "1999-01-01"}, "$ignore_time": true}',
        '{"$distinct_id": "u1", "$set_once": {"a": 1, "$last_seen": "1999-01-01"}}',
        '{"$distinct_id": "u2", "$set": {"a": 1}, "$ignore_time": true}',
    )
    reason = (
        "reserved property $last_seen: pitsync sets it to the time of the last update; "
        "leave it out, and give the record that $time instead"
    )
    assert report.rejections == [f"line 1: {reason}", f"line 2: {reason}"]
    assert profiles.rows("SELECT distinct_id, properties, last_seen FROM user_profiles") == [
        ("u2", '{"a":1}', None)
    ]

    report = profiles.apply(
        '{"$distinct_id": "u3", "$set": {"a": 1}, "$time": "2024-01-01T00:00:00Z"}',
        '{"$distinct_id": "u3", "$unset": ["a", "$last_seen"], "$ignore_time": true}',
    )
    assert report.rejections == [
        "line 2: reserved property $last_seen: pitsync sets it to the time of the last "
        "update, and no update removes it"
    ]
    assert profiles.user("u3") == {"a": 1}
    assert profiles.last_seen("u3") == "2024-01-01T00:00:00"


def test_a_long_string_is_cut_without_reading_it_again_and_again(profiles: Profiles) -> None:
    long = "é" * 3_000_000  # 6 MB
    profiles.apply(user("$set", {"s": long}), user("$append", {"l": "€" * 1_000_000}))
    assert profiles.user("u1") == {"s": "é" * 127, "l": ["€" * 85]}


def test_nan_and_infinite_numbers_are_rejected(profiles: Profiles) -> None:
    report = profiles.apply(
        '{"$distinct_id": "u1", "$set": {"x": NaN}}',
        '{"$distinct_id": "u1", "$add": {"n": 1e999}}',
        user("$add", {"n": 1.5}),
    )
    assert profiles.user("u1") == {"n": 1.5}
    assert report.rejections == [
        "line 1: wrong value type: x is not a finite number",
        "line 2: wrong value type: n is not a finite number",
    ]


def test_many_properties_beside_one_long_value(profiles: Profiles) -> None:
    """Each property's row carries its own value only, not the whole record."""
    properties: dict[str, Any] = {f"p{i}": i for i in range(500)}
    properties["long"] = "y" * 5_000_000
    profiles.apply(user("$set", properties), user("$remove", {"p0": None}))
    state = profiles.user("u1")
    assert state is not None and len(state) == 501
    assert state["long"] == "y" * 255 and state["p499"] == 499


def test_blocks_gather_into_batches_and_every_line_keeps_its_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 100 bytes, batches of at least 1000; one line is longer than a block.
    monkeypatch.setattr(update_files, "READ_BYTES", 100)
    monkeypatch.setattr(update_files, "BATCH_BYTES", 1000)
    lines = [json.dumps({"$distinct_id": f"u{i}", "$set": {"n": i}}) for i in range(1, 301)]
    lines[9] = ""
    lines[200] = json.dumps({"$distinct_id": "long", "$set": {"a": "x" * 300}})
    path = tmp_path / "updates.jsonl"
    path.write_text("\n".join(lines) + "\n")

    batches = list(update_files.line_batches(path))

    assert len(batches) > 5
    assert all(batch.nbytes >= 1000 for batch in batches[:-1])
    numbers = [n for batch in batches for n in batch.column("line").to_pylist()]
    texts = [t.decode() for batch in batches for t in batch.column("text").to_pylist()]
    assert (numbers, texts) == (list(range(1, 301)), lines)


def test_memory_held_between_batches_does_not_grow_with_the_file(
    profiles: Profiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2000 records of about 1 kB in batches of 20 kB: some 100 batches, 2 MB in all. What
    # is held is the batch at hand, the one being gathered, and 32 blocks read ahead; a
    # batch kept to the end would add 20 kB each time.
    monkeypatch.setattr(update_files, "BATCH_BYTES", 20_000)
    monkeypatch.setattr(update_files, "READ_BYTES", 2_000)
    held = arrow_held_per_batch(monkeypatch)

    report = profiles.apply(*(user("$set", {"a": "x" * 1000}, f"u{i}") for i in range(2000)))

    assert report.outcome.applied == 2000 and len(held) > 75
    assert max(held) < 500_000
    assert growth_per_batch(held) < 2_000


@pytest.mark.parametrize("batch_bytes", [None, 60])
def test_deleted_counts_the_profiles_the_file_found_and_removed_however_it_is_cut(
    profiles: Profiles, monkeypatch: pytest.MonkeyPatch, batch_bytes: int | None
) -> None:
    # u0 existed before the file and goes; u1 is made and removed by the file itself, so
    # the store lost nothing of it; u2 existed, goes, and comes back. With 60-byte
    # batches every record is a batch of its own.
    profiles.apply(user("$set", {"a": 1}, "u0"), user("$set", {"a": 1}, "u2"))
    if batch_bytes is not None:
        monkeypatch.setattr(update_files, "BATCH_BYTES", batch_bytes)

    report = profiles.apply(
        user("$set", {"a": 2}, "u1"),
        user("$delete", "", "u0"),
        user("$delete", "", "u1"),
        user("$delete", "", "u2"),
        user("$set", {"a": 3}, "u2"),
    )

    assert (report.outcome.profiles_deleted, report.outcome.profiles_changed) == (1, 1)
    assert [profiles.user(name) for name in ("u0", "u1", "u2")] == [None, None, {"a": 3}]
    # The run changed two entities: u0 (deleted) and u2 (changed).
    [run] = profiles.rows(
        f"SELECT updated, deleted, entities_changed FROM runs WHERE run_id = {report.run_id}"
    )
    assert run == (1, 1, 2)


@contextmanager
def interrupted_as_it_ends() -> Iterator[None]:
    """A Ctrl-C that lands as the commit's block is left: the commit has happened."""
    yield
    raise KeyboardInterrupt


def test_ctrl_c_just_after_the_commit_leaves_the_run_as_committed(
    profiles: Profiles, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    profiles.apply(user("$set", {"a": 1}))
    monkeypatch.setattr(profile_updates, "held_while_committing", interrupted_as_it_ends)

    with pytest.raises(KeyboardInterrupt):
        profiles.apply(user("$set", {"b": 2}))

    monkeypatch.undo()
    assert profiles.user("u1") == {"a": 1, "b": 2}
    assert profiles.rows("SELECT status FROM runs ORDER BY run_id") == [
        ("succeeded",),
        ("succeeded",),
    ]
    assert "could not be recorded" not in caplog.text


def test_running_out_of_memory_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    # A 10 MB value takes DuckDB many times its size to check and stage: more than 64 MB.
    (tmp_path / "pitsync.toml").write_text(
        '[store]\npath = "store.duckdb"\nmemory_limit = "64MB"\n', encoding="utf-8"
    )
    record = {"$distinct_id": "u1", "$set": {"notes": "y" * 10_000_000}}
    (tmp_path / "big.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "pitsync", "engage", "big.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("pitsync: error: Out of Memory Error: ")
    assert line.endswith(
        "raise `memory_limit` in [store] (or remove it, to let DuckDB take "
        "most of the machine's memory), or give the command less at a time"
    )
