"""Profile updates: the operators ($set, $set_once, $add, $union, $append, $remove,
$unset, $delete) applied to stored profiles, as SQL over a whole batch at once.

A batch is two staged relations. UPDATES holds one row per accepted update record, in the
order given (`line`); OPERATIONS holds one row per property an update names. Every
producer (engage files, CSV imports, warehouse profile tables) stages these two, and this
module folds them into the store:

1. Per profile, a `$delete` wipes what came before it: the stored properties and the
   values of the batch's earlier operations (which are still folded, for their warnings).
2. Per property, the remaining operations are folded in order with `list_reduce`, starting
   from the stored value. The fold keeps the value and the operations it refused (a list
   operator on a non-list, `$add` on a non-number), so the refusals become warnings.
3. A profile that might pass MAX_PROPERTIES properties at some record of the batch (it
   holds, with every name the batch could create on it, more than the limit) is taken
   out of the batch and its records are applied one by one, so that exactly the record
   that would pass the limit is refused, whole. Only such profiles pay that cost.

Values are JSON. A missing property is SQL NULL; a JSON null in `$set` removes the
property, and in `$set_once` does nothing (a NULL means undefined, as everywhere in
pitsync). Lists compare their items as minified JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from pitsync.modeling.staging import count as count_rows
from pitsync.store import PROFILE_PROPERTIES, PROFILES

UPDATES = "__pitsync_updates"
OPERATIONS = "__pitsync_operations"
DELETES = "__pitsync_deletes"
FOLDED = "__pitsync_folded"
CHANGES = "__pitsync_changes"
HELD_UPDATES = "__pitsync_held_updates"
HELD_OPERATIONS = "__pitsync_held_operations"
OVER_LIMIT = "__pitsync_over_limit"
RUN_BEFORE = "__pitsync_run_before"  # each touched profile as the run found it
RUN_BEFORE_PROPERTIES = "__pitsync_run_before_properties"  # and each property it changed
RUN_DELETED = "__pitsync_run_deleted"
RUN_CREATED = "__pitsync_run_created"

MAX_PROPERTIES = 2000
MAX_NESTED_BYTES = 256 * 1024  # a list or object value, as minified JSON
USER_KEY = ""  # the group_key column of user profiles, so one key covers both kinds
MAX_MESSAGES = 100  # warnings kept as text per batch; all of them are counted

# Staged relations, created empty by stage_schema; producers insert into them.
UPDATES_COLUMNS = (
    "line BIGINT, group_key VARCHAR, profile_id VARCHAR, operator VARCHAR, "
    "update_time TIMESTAMPTZ, ignore_time BOOLEAN"
)
OPERATIONS_COLUMNS = (
    "line BIGINT, group_key VARCHAR, profile_id VARCHAR, operator VARCHAR, position BIGINT, "
    "name VARCHAR, value JSON"
)


@dataclass
class UpdateOutcome:
    """What a batch (or several) did, for the summary and the run record."""

    applied: int = 0
    profiles_changed: int = 0
    profiles_deleted: int = 0
    warning_count: int = 0
    warnings: list[str] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    # What a record's number counts: lines of a file, or records of a JSON array.
    place: str = "line"

    def warn(self, messages: list[str], count: int) -> None:
        self.warning_count += count
        self.warnings.extend(messages[: max(0, MAX_MESSAGES - len(self.warnings))])


def refused_table(refused: list[tuple[int, str]]) -> pa.Table:
    """Records refused for the property limit, (line, reason), as a table to join with."""
    return pa.table({"line": [line for line, _ in refused], "reason": [r for _, r in refused]})


def stage_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Empty UPDATES and OPERATIONS for a producer to fill."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {UPDATES} ({UPDATES_COLUMNS})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {OPERATIONS} ({OPERATIONS_COLUMNS})")


def apply_updates(con: duckdb.DuckDBPyConnection, outcome: UpdateOutcome) -> None:
    """Fold the staged batch into the stored profiles (inside the caller's transaction)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {OVER_LIMIT} AS {may_pass_limit_sql()}")
    if count(con, OVER_LIMIT):
        hold_back_over_limit(con)
        fold(con)
        write(con, outcome)
        apply_held_one_by_one(con, outcome)
        return
    fold(con)
    write(con, outcome)


def fold(con: duckdb.DuckDBPyConnection) -> None:
    """CHANGES: each touched property's new value, from FOLDED, the fold of every epoch."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {DELETES} AS SELECT group_key, profile_id, "
        f"max(line) AS deleted_at, count(*) AS deletes FROM {UPDATES} "
        "WHERE operator = '$delete' GROUP BY ALL"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {FOLDED} AS {folded_sql()}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHANGES} AS SELECT f.group_key, f.profile_id, f.name, "
        f"f.result, f.stored FROM {FOLDED} f LEFT JOIN {DELETES} d USING (group_key, profile_id) "
        "WHERE f.epoch = coalesce(d.deletes, 0)"
    )


def folded_sql() -> str:
    """Per (profile, property, epoch): the fold of its operations in order.

    A profile's epoch is the number of its `$delete` records before an update: epoch 0
    starts from the stored value, every later one from nothing. Only the last epoch's
    values are kept, but every epoch's refusals are warned about, as they happened.
    """
    return f"""
        WITH epochs AS (
            SELECT line, sum(CAST(operator = '$delete' AS INTEGER)) OVER (
                PARTITION BY group_key, profile_id ORDER BY line) AS epoch
            FROM {UPDATES}
        ), steps AS (
            SELECT o.group_key, o.profile_id, o.name, e.epoch,
                -- Sorting the list afterwards is much faster than list(... ORDER BY).
                list_sort(list({{'line': o.line, 'position': o.position,
                                 'operator': o.operator, 'value': o.value}})) AS steps
            FROM {OPERATIONS} o JOIN epochs e USING (line) GROUP BY ALL
        )
        SELECT s.group_key, s.profile_id, s.name, s.epoch, p.value AS stored,
            list_reduce(s.steps, lambda acc, x: {step_sql()},
                {{'value': CASE WHEN s.epoch = 0 THEN p.value END,
                  'refused': []::STRUCT(line BIGINT, operator VARCHAR, reason VARCHAR)[]}}
            ) AS result
        FROM steps s
        LEFT JOIN {PROFILE_PROPERTIES} p USING (group_key, profile_id, name)
    """


def step_sql() -> str:
    """One operator applied to the accumulated {value, refused}; `x` is the operation."""
    current = "acc.value"
    as_list = items_sql(current)
    payload = items_sql("x.value")
    # A union's own duplicates count once: keep each item where it first appears.
    unique_payload = f"list_filter({payload}, lambda e, i: list_position({payload}, e) = i)"
    new_items = f"list_filter({unique_payload}, lambda e: NOT list_contains({as_list}, e))"
    appended = f"to_json(list_append({as_list}, x.value))"
    united = f"to_json(list_concat({as_list}, {new_items}))"
    given = "CASE WHEN json_type(x.value) = 'NULL' THEN NULL ELSE x.value END"
    once = f"CASE WHEN {current} IS NULL THEN {given} ELSE {current} END"
    return f"""CASE x.operator
        WHEN '$set' THEN {kept(given)}
        WHEN '$unset' THEN {kept("NULL")}
        WHEN '$set_once' THEN {kept(once)}
        WHEN '$add' THEN CASE
            WHEN {current} IS NULL THEN {kept(added_to_nothing("x.value"))}
            WHEN {is_number(current)} THEN {kept(sum_sql(current, "x.value"))}
            ELSE {refused("is not numeric")} END
        WHEN '$append' THEN CASE
            WHEN {current} IS NULL THEN {within_limit("to_json([x.value])")}
            WHEN {is_list(current)} THEN {within_limit(appended)}
            ELSE {refused("is not a list")} END
        WHEN '$union' THEN CASE
            WHEN {current} IS NULL THEN {kept(f"to_json({unique_payload})")}
            WHEN {is_list(current)} THEN {within_limit(united)}
            ELSE {refused("is not a list")} END
        WHEN '$remove' THEN CASE
            WHEN {current} IS NULL THEN {kept("NULL")}
            WHEN {is_list(current)} THEN {kept(without_sql(as_list))}
            ELSE {refused("is not a list")} END
        END"""


def items_sql(value: str) -> str:
    """A JSON list as its items, a JSON `null` item kept as one (a cast makes it SQL NULL,
    which no comparison finds, so `$union` and `$remove` would lose it)."""
    return f"json_extract({value}, '$[*]')"


def without_sql(items: str) -> str:
    """`$remove` takes out every copy of the value."""
    return f"to_json(list_filter({items}, lambda e: e <> x.value))"


def within_limit(grown: str) -> str:
    """A list that grows past MAX_NESTED_BYTES keeps its value, with a warning.

    The grown list is at most the old one, a comma and the operation's value long; only
    a list that this bound puts near the limit is measured.
    """
    bound = f"strlen(acc.value) + strlen(x.value) + 1 <= {MAX_NESTED_BYTES}"
    return (
        f"CASE WHEN {bound} OR strlen({grown}) <= {MAX_NESTED_BYTES} THEN {kept(grown)} "
        f"ELSE {refused('would pass 256 KB')} END"
    )


def kept(value: str) -> str:
    return f"{{'value': CAST({value} AS JSON), 'refused': acc.refused}}"


def refused(reason: str) -> str:
    entry = f"{{'line': x.line, 'operator': x.operator, 'reason': '{reason}'}}"
    return f"{{'value': acc.value, 'refused': list_append(acc.refused, {entry})}}"


def is_number(value: str) -> str:
    return f"json_type({value}) IN ('BIGINT', 'UBIGINT', 'DOUBLE')"


def is_list(value: str) -> str:
    return f"json_type({value}) = 'ARRAY'"


def sum_sql(left: str, right: str) -> str:
    """Whole numbers add exactly (HUGEINT); anything else adds as DOUBLE.

    JSON reads a whole number past the 64-bit range as DOUBLE, so a number is whole by
    its text: no fraction, no exponent. Only a sum past HUGEINT (about 1.7e38) is DOUBLE.
    """
    whole = f"{is_whole(left)} AND {is_whole(right)}"
    exact = f"to_json(try(CAST({left} AS HUGEINT) + CAST({right} AS HUGEINT)))"
    inexact = f"to_json(CAST({left} AS DOUBLE) + CAST({right} AS DOUBLE))"
    return f"CASE WHEN {whole} THEN coalesce({exact}, {inexact}) ELSE {inexact} END"


def added_to_nothing(value: str) -> str:
    """A missing property counts as 0, and is added to as 0 is: -0.0 becomes 0.0, 1.50 is
    1.5, and a whole number past HUGEINT a double."""
    return sum_sql("CAST('0' AS JSON)", value)


def is_whole(value: str) -> str:
    return (
        f"(json_type({value}) <> 'DOUBLE' "
        f"OR regexp_full_match(CAST({value} AS VARCHAR), '-?[0-9]+'))"
    )


def may_pass_limit_sql() -> str:
    """Profiles that might pass the limit at some record of the batch.

    The count after any record is at most what the profile holds plus every name the batch
    could create on it, so a profile under that bound is safe whatever the order. Only the
    rest are applied a record at a time, each checked exactly.
    """
    creating = (
        "operator IN ('$add', '$append', '$union') OR "
        "(operator IN ('$set', '$set_once') AND json_type(value) <> 'NULL')"
    )
    return f"""
        WITH created AS (
            SELECT DISTINCT group_key, profile_id, name FROM {OPERATIONS} WHERE {creating}
        ), new_names AS (
            SELECT group_key, profile_id, count(*) AS n FROM created
            ANTI JOIN {PROFILE_PROPERTIES} USING (group_key, profile_id, name) GROUP BY ALL
        ), held AS (
            SELECT p.group_key, p.profile_id, count(*) AS n FROM {PROFILE_PROPERTIES} p
            SEMI JOIN new_names USING (group_key, profile_id) GROUP BY ALL
        )
        SELECT group_key, profile_id, new_names.n + coalesce(held.n, 0) AS properties
        FROM new_names LEFT JOIN held USING (group_key, profile_id)
        WHERE new_names.n + coalesce(held.n, 0) > {MAX_PROPERTIES}
    """


def over_limit_sql() -> str:
    """Profiles whose properties after the batch would number more than the limit (exact
    for a batch of one record, as the one-by-one path applies them)."""
    return f"""
        WITH defined AS (
            SELECT group_key, profile_id, count(*) AS n FROM {CHANGES}
            WHERE result.value IS NOT NULL GROUP BY ALL
        ), untouched AS (
            SELECT p.group_key, p.profile_id, count(*) AS n
            FROM {PROFILE_PROPERTIES} p
            SEMI JOIN defined USING (group_key, profile_id)
            ANTI JOIN {DELETES} USING (group_key, profile_id)
            ANTI JOIN {CHANGES} USING (group_key, profile_id, name)
            GROUP BY ALL
        )
        SELECT group_key, profile_id, defined.n + coalesce(untouched.n, 0) AS properties
        FROM defined LEFT JOIN untouched USING (group_key, profile_id)
        WHERE defined.n + coalesce(untouched.n, 0) > {MAX_PROPERTIES}
    """


def write(con: duckdb.DuckDBPyConnection, outcome: UpdateOutcome) -> None:
    """Replace the changed properties and the touched profiles; count what happened."""
    collect_warnings(con, outcome)
    remember_before(con)
    con.execute(
        f"DELETE FROM {PROFILE_PROPERTIES} p USING {DELETES} d "
        "WHERE p.group_key = d.group_key AND p.profile_id = d.profile_id"
    )
    con.execute(
        f"DELETE FROM {PROFILE_PROPERTIES} p USING {CHANGES} c WHERE p.group_key = c.group_key "
        "AND p.profile_id = c.profile_id AND p.name = c.name"
    )
    con.execute(
        f"INSERT INTO {PROFILE_PROPERTIES} SELECT group_key, profile_id, name, result.value "
        f"FROM {CHANGES} WHERE result.value IS NOT NULL"
    )
    write_profiles(con, outcome)


def write_profiles(con: duckdb.DuckDBPyConnection, outcome: UpdateOutcome) -> None:
    """Every update but a final `$delete` leaves a profile; `$last_seen` is the last time."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __pitsync_profile_changes AS
        WITH live AS (
            SELECT u.* FROM {UPDATES} u LEFT JOIN {DELETES} d USING (group_key, profile_id)
            WHERE u.operator <> '$delete' AND (d.deleted_at IS NULL OR u.line > d.deleted_at)
        ), seen AS (
            SELECT group_key, profile_id,
                arg_max(update_time, line) FILTER (WHERE NOT ignore_time) AS last_seen
            FROM live GROUP BY ALL
        )
        SELECT s.group_key, s.profile_id,
            coalesce(s.last_seen, CASE WHEN d.deleted_at IS NULL THEN p.last_seen END)
                AS last_seen
        FROM seen s
        LEFT JOIN {DELETES} d USING (group_key, profile_id)
        LEFT JOIN {PROFILES} p USING (group_key, profile_id)
    """)
    # Remembered for the run's counts: a profile may be touched by several batches. A
    # profile an earlier batch created is no loss when deleted: the store did not hold
    # it before the run, so the count is the same however the file is cut.
    con.execute(
        f"INSERT INTO {RUN_DELETED} SELECT group_key, profile_id FROM {DELETES} "
        f"SEMI JOIN {PROFILES} USING (group_key, profile_id) "
        f"ANTI JOIN {RUN_CREATED} USING (group_key, profile_id)"
    )
    con.execute(
        f"INSERT INTO {RUN_CREATED} SELECT group_key, profile_id FROM __pitsync_profile_changes "
        f"ANTI JOIN {PROFILES} USING (group_key, profile_id)"
    )
    con.execute(
        f"DELETE FROM {PROFILES} p USING (SELECT group_key, profile_id FROM {DELETES} "
        "UNION SELECT group_key, profile_id FROM __pitsync_profile_changes) t "
        "WHERE p.group_key = t.group_key AND p.profile_id = t.profile_id"
    )
    con.execute(f"INSERT INTO {PROFILES} SELECT * FROM __pitsync_profile_changes")
    outcome.applied += count(con, UPDATES)


def begin_run(con: duckdb.DuckDBPyConnection) -> None:
    """Empty the run's record of the profiles it touched, deleted and created."""
    for table in (RUN_DELETED, RUN_CREATED):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (group_key VARCHAR, profile_id VARCHAR)")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {RUN_BEFORE} "
        "(group_key VARCHAR, profile_id VARCHAR, existed BOOLEAN, last_seen TIMESTAMPTZ)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {RUN_BEFORE_PROPERTIES} "
        "(group_key VARCHAR, profile_id VARCHAR, name VARCHAR, value JSON)"
    )


def remember_before(con: duckdb.DuckDBPyConnection) -> None:
    """What the batch is about to change, as the run first found it (a later batch of the
    run finds it remembered): each profile it touches, each property it folds a value for,
    and every property of a profile it deletes. The run's count of changed profiles
    compares the profiles with this."""
    con.execute(
        f"INSERT INTO {RUN_BEFORE} SELECT t.group_key, t.profile_id, "
        "p.profile_id IS NOT NULL, p.last_seen "
        f"FROM (SELECT DISTINCT group_key, profile_id FROM {UPDATES}) t "
        f"ANTI JOIN {RUN_BEFORE} USING (group_key, profile_id) "
        f"LEFT JOIN {PROFILES} p USING (group_key, profile_id)"
    )
    not_remembered = f"ANTI JOIN {RUN_BEFORE_PROPERTIES} USING (group_key, profile_id, name)"
    con.execute(
        f"INSERT INTO {RUN_BEFORE_PROPERTIES} SELECT group_key, profile_id, name, stored "
        f"FROM {CHANGES} {not_remembered}"
    )
    con.execute(
        f"INSERT INTO {RUN_BEFORE_PROPERTIES} SELECT group_key, profile_id, name, value "
        f"FROM {PROFILE_PROPERTIES} SEMI JOIN {DELETES} USING (group_key, profile_id) "
        f"{not_remembered}"
    )


def count_profiles(con: duckdb.DuckDBPyConnection, outcome: UpdateOutcome) -> None:
    """Profiles the run left changed (they exist, and differ from what the run found), and
    those it deleted (they are gone). A record that sets what a profile holds already
    changes nothing."""
    # Values compare as their JSON text, as the store keeps them.
    differing = (
        f"SELECT DISTINCT b.group_key, b.profile_id FROM {RUN_BEFORE_PROPERTIES} b "
        f"LEFT JOIN {PROFILE_PROPERTIES} p USING (group_key, profile_id, name) "
        "WHERE CAST(b.value AS VARCHAR) IS DISTINCT FROM CAST(p.value AS VARCHAR)"
    )
    outcome.profiles_changed = count_rows(
        con,
        f"SELECT count(*) FROM {RUN_BEFORE} b JOIN {PROFILES} p USING (group_key, profile_id) "
        f"LEFT JOIN ({differing}) d USING (group_key, profile_id) "
        "WHERE NOT b.existed OR p.last_seen IS DISTINCT FROM b.last_seen "
        "OR d.profile_id IS NOT NULL",
    )
    outcome.profiles_deleted = count_rows(
        con,
        f"SELECT count(*) FROM (SELECT DISTINCT * FROM {RUN_DELETED}) "
        f"ANTI JOIN {PROFILES} USING (group_key, profile_id)",
    )


def collect_warnings(con: duckdb.DuckDBPyConnection, outcome: UpdateOutcome) -> None:
    """The refused operations, as `line N: $append ignored for plan: plan is not a list`."""
    # One warning per record and property, even where two names of a record are one
    # property once cut to the limit, so that property is refused twice.
    refusals = f"""
        SELECT DISTINCT r.line, r.operator, c.name, r.reason
        FROM (SELECT name, unnest(result.refused) AS r FROM {FOLDED}) c
    """
    total = count_rows(con, f"SELECT count(*) FROM ({refusals})")
    if not total:
        return
    rows = con.execute(
        f"SELECT line, operator, name, reason FROM ({refusals}) ORDER BY line, name LIMIT ?",
        [MAX_MESSAGES],
    ).fetchall()
    messages = [
        f"{outcome.place} {line}: {operator} ignored for {name}: {name} {why}"
        for line, operator, name, why in rows
    ]
    outcome.warn(messages, total)


def hold_back_over_limit(con: duckdb.DuckDBPyConnection) -> None:
    """Move the over-limit profiles' records out of the batch, to apply them one by one."""
    for staged, held in ((UPDATES, HELD_UPDATES), (OPERATIONS, HELD_OPERATIONS)):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {held} AS SELECT * FROM {staged} "
            f"SEMI JOIN {OVER_LIMIT} USING (group_key, profile_id)"
        )
        con.execute(
            f"DELETE FROM {staged} s USING {OVER_LIMIT} o "
            "WHERE s.group_key = o.group_key AND s.profile_id = o.profile_id"
        )


def apply_held_one_by_one(con: duckdb.DuckDBPyConnection, outcome: UpdateOutcome) -> None:
    """Each held record alone: applied if the profile stays within the limit, else refused."""
    lines = con.execute(f"SELECT line FROM {HELD_UPDATES} ORDER BY line").fetchall()
    for (line,) in lines:
        for staged, held in ((UPDATES, HELD_UPDATES), (OPERATIONS, HELD_OPERATIONS)):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {staged} AS SELECT * FROM {held} WHERE line = ?",
                [line],
            )
        fold(con)
        over = con.execute(f"SELECT group_key, profile_id, properties FROM ({over_limit_sql()})")
        rows = over.fetchall()
        if not rows:
            write(con, outcome)
            continue
        group_key, profile_id, properties = rows[0]
        outcome.refused.append(
            (
                line,
                f"update refused: {describe_profile(group_key, profile_id)} would have "
                f"{properties} properties, more than {MAX_PROPERTIES}",
            )
        )


def describe_profile(group_key: str, profile_id: str) -> str:
    if group_key == USER_KEY:
        return f"user {profile_id}"
    return f"{group_key} {profile_id}"


def count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    return count_rows(con, f"SELECT count(*) FROM {relation}")
