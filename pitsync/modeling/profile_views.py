"""The `user_profiles` and `group_profiles` relations: each profile's latest state.

A profile's properties are those its updates set (engage files, CSV imports, warehouse
profile tables), merged with the value now of every property its history tables hold.
The warehouse's history is the record of truth for the properties it holds: where a
history table holds a property, its current interval decides it, and a NULL there means
the property is undefined (DESIGN rule 3). `now()` is read when a query runs, so a
history row dated tomorrow changes the profile tomorrow (rule 9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pitsync.modeling.profile_operators import USER_KEY
from pitsync.quoting import quote_identifier, quote_string
from pitsync.store import END_TIME, PROFILE_PROPERTIES, PROFILES, START_TIME

if TYPE_CHECKING:  # the catalog module builds these views, so it is imported only for types
    from pitsync.modeling.hidden_events import CatalogEntry

EMPTY_HISTORY = (
    "SELECT CAST(NULL AS VARCHAR) AS profile_id, CAST(NULL AS VARCHAR) AS name, "
    "CAST(NULL AS JSON) AS value WHERE false"
)


def user_profiles_sql(catalog: list[CatalogEntry]) -> str:
    tables = [entry for entry in catalog if entry.kind == "user_history"]
    merged = merged_profiles_sql(USER_KEY, tables)
    return f"SELECT profile_id AS distinct_id, properties, last_seen FROM ({merged})"


def group_profiles_sql(catalog: list[CatalogEntry]) -> str:
    """Every group key's profiles, one UNION part per key that has history or profiles."""
    keys = sorted(
        {entry.group_key for entry in catalog if entry.kind == "group_history" and entry.group_key}
    )
    parts = [
        f"SELECT {quote_string(key)} AS group_key, profile_id AS group_id, properties, "
        f"last_seen FROM ({merged_profiles_sql(key, group_tables(catalog, key))})"
        for key in keys
    ]
    stored_only = (
        "SELECT group_key, profile_id AS group_id, properties, last_seen FROM "
        f"({merged_profiles_sql(None, [])})"
    )
    if keys:
        stored_only += " WHERE group_key NOT IN (" + ", ".join(map(quote_string, keys)) + ")"
    return " UNION ALL ".join([*parts, stored_only])


def group_tables(catalog: list[CatalogEntry], key: str) -> list[CatalogEntry]:
    return [e for e in catalog if e.kind == "group_history" and e.group_key == key]


def merged_profiles_sql(group_key: str | None, tables: list[CatalogEntry]) -> str:
    """(group_key, profile_id, properties, last_seen) of one key; None: every group key.

    One aggregate over every row that names a profile: its properties, its entry in the
    profiles table, and its history's. A profile's properties joined back to the profiles
    would hold both sides in memory at once; an aggregate alone stays within DuckDB's
    memory limit, and so does a sort of its result.
    """
    if group_key is None:
        where = f"group_key <> {quote_string(USER_KEY)}"
    else:
        where = f"group_key = {quote_string(group_key)}"
    history = " UNION ALL ".join(history_now_sql(entry) for entry in tables) or EMPTY_HISTORY
    return f"""
        WITH stored AS (
            SELECT group_key, profile_id, name, value FROM {PROFILE_PROPERTIES} WHERE {where}
        ), history AS (
            SELECT {quote_string(group_key or "")} AS group_key, * FROM ({history})
        ), merged AS (
            SELECT group_key, profile_id, name, value FROM stored
                ANTI JOIN history USING (group_key, profile_id, name)
            UNION ALL
            SELECT group_key, profile_id, name, value FROM history WHERE value IS NOT NULL
        ), named AS (
            -- `listed`: a row of a profile that exists (it was filed, or a history holds it).
            SELECT group_key, profile_id, name, value,
                CAST(NULL AS TIMESTAMPTZ) AS last_seen, false AS listed FROM merged
            UNION ALL
            SELECT group_key, profile_id, NULL, NULL, last_seen, true FROM {PROFILES}
                WHERE {where}
            UNION ALL
            SELECT group_key, profile_id, NULL, NULL, NULL, true FROM history
        )
        -- Sorted after the aggregate, not by it: an aggregate's ORDER BY holds every
        -- group's rows in memory, past any memory limit.
        SELECT group_key, profile_id,
            coalesce(
                to_json(map_from_entries(list_sort(
                    list({{'k': name, 'v': value}}) FILTER (WHERE name IS NOT NULL)
                ))),
                CAST('{{}}' AS JSON)
            ) AS properties,
            max(last_seen) AS last_seen
        FROM named GROUP BY group_key, profile_id HAVING bool_or(listed)
    """


def history_now_sql(entry: CatalogEntry) -> str:
    """(profile_id, name, value) of the interval holding now; NULL values kept."""
    entity = quote_identifier(entry.id_column)
    columns = ", ".join(
        f"to_json({quote_identifier(name)}) AS {quote_identifier(name)}"
        for name in entry.properties
    )
    names = ", ".join(quote_identifier(name) for name in entry.properties)
    if not entry.properties:
        return EMPTY_HISTORY
    return (
        f"SELECT * FROM (SELECT CAST({entity} AS VARCHAR) AS __pitsync_profile_id, {columns} "
        f"FROM {entry.stored_as} "
        f"WHERE {START_TIME} <= now() AND ({END_TIME} IS NULL OR {END_TIME} > now())) "
        f"UNPIVOT INCLUDE NULLS (value FOR name IN ({names})) AS h(profile_id, name, value)"
    )
