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
    """(group_key, profile_id, properties, last_seen) of one key; None: every group key."""
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
        ), ids AS (
            SELECT group_key, profile_id FROM {PROFILES} WHERE {where}
            UNION SELECT group_key, profile_id FROM history
        )
        SELECT ids.group_key, ids.profile_id,
            coalesce(m.properties, CAST('{{}}' AS JSON)) AS properties, p.last_seen
        FROM ids
        LEFT JOIN (
            -- Sorted after the aggregate, not by it: an aggregate's ORDER BY holds every
            -- group's rows in memory, past any memory limit.
            SELECT group_key, profile_id,
                to_json(map_from_entries(list_sort(list({{'k': name, 'v': value}}))))
                AS properties
            FROM merged GROUP BY ALL
        ) m USING (group_key, profile_id)
        LEFT JOIN {PROFILES} p USING (group_key, profile_id)
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
