"""Profile updates against an oracle: any sequence of engage records, applied by
`apply_file`, must leave exactly the profiles, last_seen times and warnings that a small
pure-Python model of the operator rules gives when it applies them one record at a time.

Ids and property names are few, so operators meet each other's values often: `$add` onto a
string, `$union` onto a number, a `$delete` between two updates, a `$set_once` after a
`$set`. A few names and strings are longer than the limits, so cutting them is checked too.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitsync.config import Config, load_config
from pitsync.connectors import update_files
from pitsync.connectors.profile_updates import UpdateReport, apply_file
from pitsync.queries.execute import QuerySession

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

# ----------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Now:
    """last_seen of a record without `$time`: the moment of the run that applied it."""

    run: int


@dataclass
class Profile:
    properties: dict[str, Any] = field(default_factory=dict)
    last_seen: dt.datetime | Now | None = None


@dataclass
class Model:
    """An independent model of the engage rules, applied record by record, in file order.

    Written from the rules alone: a profile is a dict of properties and a last_seen; each
    record either is rejected (an operator groups may not use) or changes one profile.
    """

    profiles: dict[tuple[str, str], Profile] = field(default_factory=dict)
    warnings: int = 0
    rejected: int = 0
    applied: int = 0
    changed: int = 0  # over the runs: profiles a run left other than it found them
    deleted: int = 0  # over the runs: profiles a run found and left gone

    def apply(self, record: dict[str, Any], run: int = 0) -> None:
        group = "$group_key" in record
        if group:
            key = (record["$group_key"], str(record["$group_id"]))
        else:
            key = ("", str(record["$distinct_id"]))
        operator = next(name for name in OPERATORS if name in record)
        if group and operator in ("$add", "$append"):
            self.rejected += 1
            return
        self.applied += 1
        if operator == "$delete":
            self.profiles.pop(key, None)
            return
        profile = self.profiles.setdefault(key, Profile())
        payload = record[operator]
        if operator == "$unset":
            for name in payload:
                profile.properties.pop(cut_name(name), None)
        else:
            refused = set()
            for name, value in payload.items():
                item = cut_item(value) if operator in ONE_ITEM else cut(value)
                if not apply_operator(profile.properties, operator, cut_name(name), item):
                    refused.add(cut_name(name))
            self.warnings += len(refused)
        if not record.get("$ignore_time", False):
            profile.last_seen = instant(record["$time"]) if "$time" in record else Now(run)


def apply_operator(properties: dict[str, Any], operator: str, name: str, value: Any) -> bool:
    """One property of one record; False if the operator refuses the value it finds."""
    missing = name not in properties
    current = properties.get(name)
    if operator == "$set":
        if value is None:
            properties.pop(name, None)
        else:
            properties[name] = value
    elif operator == "$set_once":
        if missing and value is not None:
            properties[name] = value
    elif operator == "$add":
        if missing:
            properties[name] = value
        elif not is_number(current):
            return False
        elif isinstance(current, int) and isinstance(value, int):
            properties[name] = current + value
        else:
            properties[name] = float(current) + float(value)
    elif operator == "$union":
        if not missing and not isinstance(current, list):
            return False
        items = [] if missing else list(current)
        for item in value:
            if not any(same(item, kept) for kept in items):
                items.append(item)
        properties[name] = items
    elif operator == "$append":
        if missing:
            properties[name] = [value]
        elif not isinstance(current, list):
            return False
        else:
            properties[name] = [*current, value]
    elif operator == "$remove":
        if not missing and not isinstance(current, list):
            return False
        if not missing:
            properties[name] = [item for item in current if not same(item, value)]
    return True


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def minified(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def same(a: Any, b: Any) -> bool:
    return minified(a) == minified(b)


def cut_name(name: str) -> str:
    return name[:255]


def cut_string(text: str) -> str:
    while len(text.encode("utf-8")) > 255:
        text = text[:-1]
    return text


# The value of these operators is one item of a list: cut if it is a string; a list
# there is an item whose strings are no items of the property's list.
ONE_ITEM = ("$append", "$remove")


def cut_item(value: Any) -> Any:
    return cut_string(value) if isinstance(value, str) else value


def cut(value: Any) -> Any:
    """Strings, and the strings that are items of a list, cut to 255 UTF-8 bytes."""
    if isinstance(value, str):
        return cut_string(value)
    if isinstance(value, list):
        return [cut_string(item) if isinstance(item, str) else item for item in value]
    return value


def instant(value: int | float | str) -> dt.datetime:
    """$time: ISO text (naive is UTC), else milliseconds from 1e11 on, else seconds."""
    if isinstance(value, str):
        moment = dt.datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if value >= 100_000_000_000:
        return EPOCH + dt.timedelta(milliseconds=value)
    return EPOCH + dt.timedelta(seconds=value)


# ----------------------------------------------------------------------------------------
# Records

OPERATORS = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete")

LONG_NAMES = ["p" * 255, "p" * 260, "é" * 256]  # the last two are cut; the first two collide
names = st.sampled_from(["plan", "plan", "seats", "seats", "tags", "tags", *LONG_NAMES])
LONG_STRINGS = ["x" * 300, "y" + "é" * 200, "😀" * 70, "€" * 90]
texts = st.sampled_from(["a", "b", "", "pro", *LONG_STRINGS])
whole = st.sampled_from([0, 1, -2, 7, 2**63 - 1, -(2**63)])
scalars = st.one_of(whole, texts, st.booleans())
items = st.one_of(scalars, st.none())
lists = st.lists(items, max_size=4)
objects = st.dictionaries(st.sampled_from(["k", "j"]), st.one_of(whole, st.booleans()), max_size=2)
values = st.one_of(scalars, lists, objects)
numbers = st.one_of(whole, st.sampled_from([0.5, -1.25, 0.1]))

PAYLOADS = {
    "$set": st.dictionaries(names, st.one_of(values, st.none()), max_size=3),
    "$set_once": st.dictionaries(names, st.one_of(values, st.none()), max_size=3),
    "$add": st.dictionaries(names, numbers, max_size=3),
    "$union": st.dictionaries(names, lists, max_size=3),
    "$append": st.dictionaries(names, items | lists, max_size=3),
    "$remove": st.dictionaries(names, items, max_size=3),
    "$unset": st.lists(names, max_size=3),
    "$delete": st.just(""),
}

TIMES = [
    1_700_000_000,  # seconds
    1_700_000_000_123,  # milliseconds
    1_600_000_000.5,
    99_999_999_999,  # the largest number read as seconds
    100_000_000_000,  # the smallest read as milliseconds
    "2024-01-02T03:04:05Z",
    "2024-01-02T03:04:05.250Z",
    "2024-01-02T05:04:06+02:00",
    "2024-01-02 03:04:07",  # naive: UTC
]

ids = st.one_of(
    st.tuples(st.just("$distinct_id"), st.sampled_from(["u1", "u2", 3])),
    st.tuples(st.just("$group_key"), st.sampled_from([("company", "c1"), ("company", 7)])),
    st.tuples(st.just("$group_key"), st.just(("team", "c1"))),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    kind, who = draw(ids)
    record: dict[str, Any] = (
        {"$distinct_id": who}
        if kind == "$distinct_id"
        else {"$group_key": who[0], "$group_id": who[1]}
    )
    operator = draw(st.sampled_from(OPERATORS))
    record[operator] = draw(PAYLOADS[operator])
    time = draw(st.sampled_from([None, *TIMES]))
    if time is not None:
        record["$time"] = time
    ignore_time = draw(st.sampled_from([None, None, True, False]))
    if ignore_time is not None:
        record["$ignore_time"] = ignore_time
    return record


# ----------------------------------------------------------------------------------------
# Running the engine


@dataclass
class Store:
    """A store of its own, and the time window of every run applied to it."""

    root: Path
    runs: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)
    warnings: int = 0
    rejected: int = 0
    applied: int = 0
    changed: int = 0
    deleted: int = 0

    @property
    def config(self) -> Config:
        path = self.root / "pitsync.toml"
        if not path.exists():
            path.write_text(f'[store]\npath = "{(self.root / "store.duckdb").as_posix()}"\n')
        return load_config(str(path))

    def apply(self, lines: list[dict[str, Any]]) -> UpdateReport:
        path = self.root / f"updates-{len(self.runs)}.json"
        # Every other line escapes what is not ASCII, the others write it as UTF-8.
        text = "".join(
            json.dumps(line, ensure_ascii=i % 2 == 0) + "\n" for i, line in enumerate(lines)
        )
        path.write_text(text, encoding="utf-8")
        before = dt.datetime.now(UTC)
        report = apply_file(self.config, str(path))
        self.runs.append((before, dt.datetime.now(UTC)))
        self.warnings += report.outcome.warning_count
        self.rejected += report.rejected
        self.applied += report.outcome.applied
        self.changed += report.outcome.profiles_changed
        self.deleted += report.outcome.profiles_deleted
        return report

    def state(self) -> dict[tuple[str, str], tuple[dict[str, str], Any]]:
        """Every profile: its properties as minified JSON, and last_seen (a run, if now)."""
        with QuerySession(self.config.store_path) as session:
            users = session.query(
                "SELECT '', distinct_id, properties, last_seen FROM user_profiles"
            )
            groups = session.query(
                "SELECT group_key, group_id, properties, last_seen FROM group_profiles"
            )
            rows = users.fetchall() + groups.fetchall()
        return {
            (key, profile_id): (canonical(json.loads(properties)), self.run_of(last_seen))
            for key, profile_id, properties, last_seen in rows
        }

    def run_of(self, moment: dt.datetime | None) -> dt.datetime | Now | None:
        for run, (start, end) in enumerate(self.runs):
            if moment is not None and start <= moment <= end:
                return Now(run)
        return moment


def canonical(properties: dict[str, Any]) -> dict[str, str]:
    """Properties compared by their minified JSON, so 1, 1.0 and true stay apart."""
    return {name: minified(value) for name, value in properties.items()}


def expected_state(model: Model) -> dict[tuple[str, str], tuple[dict[str, str], Any]]:
    return {
        key: (canonical(profile.properties), profile.last_seen)
        for key, profile in model.profiles.items()
    }


def modelled(runs: list[list[dict[str, Any]]]) -> Model:
    model = Model()
    for run, lines in enumerate(runs):
        before = expected_state(model)
        for record in lines:
            model.apply(record, run)
        after = expected_state(model)
        model.changed += sum(1 for key, state in after.items() if before.get(key) != state)
        model.deleted += len(before.keys() - after.keys())
    return model


def check(store: Store, model: Model) -> None:
    assert store.state() == expected_state(model)
    assert (store.warnings, store.rejected, store.applied) == (
        model.warnings,
        model.rejected,
        model.applied,
    )
    assert (store.changed, store.deleted) == (model.changed, model.deleted)


def applied_in_runs(root: Path, runs: list[list[dict[str, Any]]]) -> Store:
    root.mkdir()
    store = Store(root)
    for lines in runs:
        store.apply(lines)
    return store


# ----------------------------------------------------------------------------------------
# The properties

EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.slow
@EXAMPLES
@given(lines=st.lists(records(), min_size=1, max_size=30), split=st.floats(0, 1))
def test_engage_files_apply_as_the_model_of_the_rules(
    lines: list[dict[str, Any]], split: float
) -> None:
    middle = round(len(lines) * split)
    with tempfile.TemporaryDirectory() as folder:
        whole_file = applied_in_runs(Path(folder) / "one", [lines])
        check(whole_file, modelled([lines]))
        halves = [lines[:middle], lines[middle:]]
        two_files = applied_in_runs(Path(folder) / "two", halves)
        check(two_files, modelled(halves))


def many_records() -> list[dict[str, Any]]:
    """Records for few profiles, every operator, clashes and deletes among them; a few
    lines are longer than a small batch."""
    cycle: list[dict[str, Any]] = [
        {"$set": {"plan": "free", "seats": 1}},
        {"$add": {"seats": 2, "visits": 1}},
        {"$union": {"tags": ["a", "b", "a"]}},
        {"$append": {"tags": "c"}},
        {"$add": {"plan": 1}},
        {"$union": {"seats": [1]}},
        {"$remove": {"tags": "a"}},
        {"$set_once": {"plan": "pro", "first": True}},
        {"$unset": ["first"]},
        {"$delete": ""},
        {"$set": {"plan": "team"}, "$ignore_time": True},
        {"$set": {"bio": "é" * 40}},
        {"$union": {"tags": ["x" * 300]}},
    ]
    lines = []
    for i in range(120):
        record = dict(cycle[i % len(cycle)])
        if "$add" in record or "$append" in record or i % 3:
            record["$distinct_id"] = f"u{i % 4}"
        else:
            record |= {"$group_key": "company", "$group_id": f"c{i % 2}"}
        record["$time"] = 1_700_000_000 + i
        lines.append(record)
    return lines


def test_records_spread_over_many_batches_apply_as_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = many_records()
    model = modelled([lines])
    one_batch = applied_in_runs(tmp_path / "one", [lines])
    check(one_batch, model)
    monkeypatch.setattr(update_files, "BATCH_BYTES", 200)
    assert len(list(update_files.line_batches(tmp_path / "one" / "updates-0.json"))) > 5
    many_batches = applied_in_runs(tmp_path / "many", [lines])
    check(many_batches, model)
    assert many_batches.state() == one_batch.state()


# ----------------------------------------------------------------------------------------
# Cases the model found, kept as they were first seen


def applied(root: Path, *runs: list[dict[str, Any]]) -> Store:
    store = applied_in_runs(root, list(runs))
    check(store, modelled(list(runs)))
    return store


def test_union_and_remove_keep_null_items(tmp_path: Path) -> None:
    lines = [
        {"$distinct_id": "u1", "$set": {"a": [1], "b": [None, 1, 2, None]}},
        {"$distinct_id": "u1", "$union": {"a": [None, 2]}},
        {"$distinct_id": "u1", "$remove": {"b": 1}},
    ]
    state = applied(tmp_path / "store", lines).state()
    assert state[("", "u1")][0] == {"a": "[1,null,2]", "b": "[null,2,null]"}


def test_whole_numbers_add_exactly_past_64_bits(tmp_path: Path) -> None:
    big, low = 2**63 - 1, -(2**63)
    lines = [{"$distinct_id": "u1", "$add": {"a": big, "b": low}} for _ in range(3)]
    later = [{"$distinct_id": "u1", "$add": {"a": 1, "b": 1}}]
    state = applied(tmp_path / "store", lines, later).state()
    assert state[("", "u1")][0] == {"a": str(3 * big + 1), "b": str(3 * low + 1)}


def test_a_profile_a_run_leaves_as_it_found_it_is_not_counted_changed(tmp_path: Path) -> None:
    first = [
        {"$distinct_id": "u1", "$set": {"plan": "pro"}, "$ignore_time": True},
        {"$distinct_id": "u2", "$set": {"plan": "free"}, "$time": 1_700_000_000},
        {"$distinct_id": "u4", "$set": {"seats": 1}, "$ignore_time": True},
    ]
    again = [
        # u1 is set to what it holds; u2 keeps its plan and its last_seen (same $time).
        {"$distinct_id": "u1", "$set": {"plan": "pro"}, "$ignore_time": True},
        {"$distinct_id": "u2", "$set_once": {"plan": "team"}, "$time": 1_700_000_000},
        # u4 is deleted and made again as it was.
        {"$distinct_id": "u4", "$delete": ""},
        {"$distinct_id": "u4", "$set": {"seats": 1}, "$ignore_time": True},
        # u3 is new, with nothing in it; u5 was never there to delete.
        {"$distinct_id": "u3", "$unset": ["plan"], "$ignore_time": True},
        {"$distinct_id": "u5", "$delete": ""},
    ]
    store = applied(tmp_path / "store", first, again)
    assert (store.changed, store.deleted) == (3 + 1, 0)


def test_two_names_cut_to_one_property_are_warned_about_once(tmp_path: Path) -> None:
    lines = [
        {"$distinct_id": "u1", "$set": {"p" * 255: "text"}},
        {"$distinct_id": "u1", "$add": {"p" * 255: 1, "p" * 256: 2}},
    ]
    assert applied(tmp_path / "store", lines).warnings == 1


def test_an_empty_file_applies_nothing(tmp_path: Path) -> None:
    lines = [{"$distinct_id": "u1", "$set": {"a": 1}}]
    store = applied(tmp_path / "store", [], lines, [])
    bom_only = tmp_path / "bom.json"
    bom_only.write_bytes(b"\xef\xbb\xbf")
    assert apply_file(store.config, str(bom_only)).records == 0
    assert store.state()[("", "u1")][0] == {"a": "1"}


def test_unset_of_a_name_that_is_no_text_is_rejected(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = tmp_path / "updates.json"
    lines = [
        {"$distinct_id": "u1", "$set": {"a": 1}},
        {"$distinct_id": "u1", "$unset": ["a", None]},
        {"$distinct_id": "u1", "$unset": [None]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = apply_file(store.config, str(path))
    assert report.rejected == 2
    assert store.state()[("", "u1")][0] == {"a": "1"}


@pytest.mark.parametrize("batch_bytes", [update_files.BATCH_BYTES, 100])
def test_lines_longer_than_a_batch_or_split_by_a_unit_separator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes: int
) -> None:
    monkeypatch.setattr(update_files, "BATCH_BYTES", batch_bytes)
    path = tmp_path / "updates.json"
    records = [
        json.dumps({"$distinct_id": "u1", "$set": {"a": "x" * 500}, "$ignore_time": True}),
        "not json \x1f with a unit separator",
        json.dumps({"$distinct_id": "u2", "$set": {"a": "y" * 2000}, "$ignore_time": True}),
        "",
        json.dumps({"$distinct_id": "u3", "$set": {"a": 1}, "$ignore_time": True}),
    ]
    path.write_text("\n".join(records) + "\n")
    store = Store(tmp_path)
    report = apply_file(store.config, str(path))
    assert (report.records, report.rejections) == (4, ["line 2: not JSON"])
    assert store.state() == {
        ("", "u1"): ({"a": minified("x" * 255)}, None),
        ("", "u2"): ({"a": minified("y" * 255)}, None),
        ("", "u3"): ({"a": "1"}, None),
    }
