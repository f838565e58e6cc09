"""Attribution: an entity's properties at a moment, and its timeline of intervals.

A user's history tables are those of kind `user_history`; a group's are the
`group_history` tables of its group key. Each owns its properties (DESIGN rule 11), so an
entity's profile at t is the union of one interval per table: the one holding t.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pitsync.errors import StoreError
from pitsync.modeling.hidden_events import CatalogEntry, read_catalog
from pitsync.modeling.profile_operators import OPERATIONS, UPDATES, USER_KEY
from pitsync.quoting import fold_name_sql, quote_identifier
from pitsync.store import CATALOG, END_TIME, PROFILES, RUNS, START_TIME

SPELLINGS = "__pitsync_group_key_spellings"


@dataclass(frozen=True)
class Entity:
    """A user (no group key) or a group (its key name and id); ids are strings."""

    entity_id: str
    group_key: str | None = None

    def describe(self) -> str:
        return f"{self.group_key} {self.entity_id}" if self.group_key else f"user {self.entity_id}"


def stored_group_keys_sql() -> str:
    """Every spelling of a group key the store holds, as (key, rank, place): a synced
    table's (rank 0, as configured) and the stored profiles' (rank 1)."""
    # Of tables spelling a key in two ways, the one synced last spells it: the other one is
    # a table left over from an older configuration.
    latest = (
        f"SELECT table_name, max(run_id) AS run_id FROM {RUNS} "
        "WHERE status = 'succeeded' GROUP BY ALL"
    )
    return (
        f"SELECT c.group_key AS key, 0 AS rank, -coalesce(r.run_id, 0) AS place FROM {CATALOG} "
        f"AS c LEFT JOIN ({latest}) AS r USING (table_name) WHERE c.group_key <> '' "
        f"UNION ALL SELECT DISTINCT group_key, 1, 0 FROM {PROFILES} WHERE group_key <> ''"
    )


def known_group_keys_sql(*more: str) -> str:
    """Each group key the store knows, by its folded form (`fold_name`), with the spelling
    it is known by: a synced table's, else that of the stored profiles; `more` adds
    queries of (key, place) pairs, spellings met in that order, known after those.

    Names compare without case in the store, so a key given in another case is that key.
    """
    spellings = [stored_group_keys_sql(), *(f"SELECT key, 2, place FROM ({q})" for q in more)]
    return (
        f"SELECT {fold_name_sql('key')} AS folded, arg_min(key, (rank, place, key)) AS spelled "
        "FROM (" + " UNION ALL ".join(spellings) + ") GROUP BY ALL"
    )


def spelled_group_key(con: duckdb.DuckDBPyConnection, group_key: str | None) -> str | None:
    """The group key as the store spells it (see `known_group_keys_sql`). A spelling the
    store holds is kept as it is: profiles filed under it before a table spelled the key
    otherwise are reached by it still. A key the store does not know, as given."""
    if not group_key:
        return group_key
    rows = con.execute(
        f"SELECT CASE WHEN ? IN (SELECT key FROM ({stored_group_keys_sql()})) THEN ? "
        f"ELSE spelled END FROM ({known_group_keys_sql()}) WHERE folded = {fold_name_sql('?')}",
        [group_key, group_key, group_key],
    ).fetchall()
    return str(rows[0][0]) if rows else group_key


def respell_staged_group_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Each staged update's group key (UPDATES, OPERATIONS) as the store spells it, as
    `spelled_group_key` gives it; a key new to the store, as its first update spells it.
    Every producer of updates (engage, import-csv, delete-profiles) passes through here."""
    # A `$delete` files no profile, so it spells no key (only finds one spelled already).
    given = (
        f"SELECT group_key AS key, line AS place FROM {UPDATES} "
        "WHERE group_key <> '' AND operator <> '$delete'"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {SPELLINGS} AS {known_group_keys_sql(given)}")
    held = f"SELECT key FROM ({stored_group_keys_sql()})"
    for staged in (UPDATES, OPERATIONS):
        con.execute(
            f"UPDATE {staged} AS u SET group_key = k.spelled FROM {SPELLINGS} AS k "
            f"WHERE {fold_name_sql('u.group_key')} = k.folded AND u.group_key <> k.spelled "
            f"AND u.group_key NOT IN ({held})"
        )


def entity_tables(con: duckdb.DuckDBPyConnection, entity: Entity) -> list[CatalogEntry]:
    """The history tables that hold this entity; an unknown one is an error, not silence."""
    catalog = read_catalog(con)
    kind = "group_history" if entity.group_key else "user_history"
    tables = [
        entry for entry in catalog if entry.kind == kind and entry.group_key == entity.group_key
    ]
    if not tables:
        what = f"group key `{entity.group_key}`" if entity.group_key else "users"
        hint = group_key_hint(catalog, given=entity.group_key is not None)
        found = f"no history table for {what} has been synced"
        raise NoHistory(f"{found}; {hint}", found=found)
    if not any(holds_entity(con, entry, entity) for entry in tables):
        names = ", ".join(entry.table_name for entry in tables)
        # A user id may be a group's: point at the group keys, where there are any.
        groups = not entity.group_key and any(
            entry.group_key and entry.is_history for entry in catalog
        )
        raise NoHistory(
            f"{entity.describe()} has no rows in {names}; check the id"
            + (f", or {group_key_hint(catalog)}" if groups else ""),
            found=f"it has no rows in {names}",
        )
    return tables


class NoHistory(StoreError):
    """An entity without history rows to answer from; `found` says what was found, in
    words that fit after "and"."""

    def __init__(self, message: str, *, found: str):
        super().__init__(message)
        self.found = found


def group_key_hint(catalog: list[CatalogEntry], *, given: bool = False) -> str:
    """What --group-key can name; `given`: the user passed one that names no history."""
    keys = sorted({entry.group_key for entry in catalog if entry.group_key and entry.is_history})
    if not keys:
        return "sync a history table first"
    named = " or ".join(f"`{key}`" for key in keys)
    if given:
        return f"the synced group keys are {named}"
    return f"for a group pass --group-key {named}"


def check_group_key_known(con: duckdb.DuckDBPyConnection, group_key: str) -> None:
    """Refuse a group key no group in the store has: a typo would list no group, as if
    there were none."""
    keys = {entry.group_key for entry in read_catalog(con) if entry.group_key}
    stored = con.execute(
        f"SELECT DISTINCT group_key FROM {PROFILES} WHERE group_key <> ?", [USER_KEY]
    ).fetchall()
    keys |= {key for (key,) in stored}
    if group_key not in keys:
        known = " or ".join(f"`{key}`" for key in sorted(keys))
        raise StoreError(
            f"no group of key `{group_key}` is in the store; "
            + (f"the group keys are {known}" if keys else "it holds no group yet")
        )


def holds_entity(con: duckdb.DuckDBPyConnection, entry: CatalogEntry, entity: Entity) -> bool:
    rows = con.execute(
        f"SELECT 1 FROM {entry.stored_as} WHERE {quote_identifier(entry.id_column)} = ? LIMIT 1",
        [entity.entity_id],
    ).fetchall()
    return bool(rows)


def interval_at_sql(entry: CatalogEntry) -> str:
    """The one interval of an entity holding a moment (parameters: id, moment, moment)."""
    return (
        f"SELECT * FROM {entry.stored_as} WHERE {quote_identifier(entry.id_column)} = ? "
        f"AND {START_TIME} <= CAST(? AS TIMESTAMPTZ) "
        f"AND ({END_TIME} IS NULL OR {END_TIME} > CAST(? AS TIMESTAMPTZ))"
    )


def timeline_sql(entry: CatalogEntry) -> str:
    """Every interval of an entity, oldest first (parameter: id)."""
    return (
        f"SELECT * FROM {entry.stored_as} WHERE {quote_identifier(entry.id_column)} = ? "
        f"ORDER BY {START_TIME}"
    )
