"""Engage records: JSON update records read and checked in SQL, then staged for the fold.

A record is one JSON object: `{"$distinct_id": ID, "$set": {...}}` for a user, or
`{"$group_key": KEY, "$group_id": ID, "$set": {...}}` for a group, with one operator and
optionally `$time` and `$ignore_time`. A record that cannot be applied whole (not JSON,
not an object, no id, no or two operators, an unknown key, a value of the wrong type) is
rejected with the first reason found; the other records of the batch still apply.

Input: LINES (line BIGINT, text VARCHAR). Output: the fold's UPDATES and OPERATIONS, and
REJECTED (line, reason, text).
"""

from __future__ import annotations

import duckdb

from pitsync.config import TableConfig
from pitsync.errors import ConfigError
from pitsync.modeling.profile_operators import MAX_NESTED_BYTES, OPERATIONS, UPDATES, USER_KEY
from pitsync.modeling.timestamps import beyond_moments_sql, text_sql
from pitsync.quoting import quote_identifier, quote_string

LINES = "__pitsync_lines"
RECORDS = "__pitsync_records"
REJECTED = "__pitsync_rejected"
# JSON's white space (space, tab, line feed, carriage return): a line of only these is blank.
JSON_BLANKS = "' ' || chr(9) || chr(10) || chr(13)"

# White space as Python's str.isspace knows it: a group key of only these is refused,
# as the command line and the configuration refuse one (no command could name it).
BLANK_TEXT = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\p{Z}]*"

OBJECT_OPERATORS = ("$set", "$set_once", "$add", "$union", "$append", "$remove")
OPERATORS = (*OBJECT_OPERATORS, "$unset", "$delete")
GROUP_REFUSED = ("$add", "$append")
IDS = ("$distinct_id", "$group_key", "$group_id")
# Clients send $token and $ip with every record; they say nothing about the profile.
META = ("$time", "$ignore_time", "$token", "$ip")

# Kept by pitsync beside the properties (the time of the last update); never set by one.
LAST_SEEN = "$last_seen"
MAX_NAME_CHARACTERS = 255
MAX_STRING_BYTES = 255
SECONDS_BELOW = 100_000_000_000  # a numeric $time below this is seconds, above it ms


def refuse_last_seen_column(table: TableConfig, properties: list[str]) -> None:
    """A warehouse table's column may not become a profile property named `$last_seen`:
    the profile would show it as the time of its last update, which it is not."""
    if LAST_SEEN in properties:
        raise ConfigError(
            f"table `{table.name}`: source column `{LAST_SEEN}` would be a property, but "
            f"pitsync keeps {LAST_SEEN} as the time of a profile's last update (a sync leaves "
            "it alone); rename it in the source or a view",
            table=table.name,
        )


def stage_records(con: duckdb.DuckDBPyConnection) -> None:
    """Check every line of LINES; stage the good ones, reject the rest with a reason."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {RECORDS} AS {records_sql()}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __pitsync_exploded AS {exploded_sql()}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REJECTED} AS {rejected_sql()}")
    con.execute(f"INSERT INTO {UPDATES} {updates_sql()}")
    con.execute(f"INSERT INTO {OPERATIONS} {operations_sql()}")


def sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(quote_string(value) for value in values) + "]"


def record_shape() -> str:
    """Every key a record may have, each read as JSON: one parse gives them all."""
    keys = (*IDS, *META, *OPERATORS)
    return quote_string("{" + ", ".join(f'"{key}": "JSON"' for key in keys) + "}")


def field(name: str) -> str:
    """A top-level field of the parsed record (NULL when missing or null)."""
    return f"fields.{quote_identifier(name)}"


def records_sql() -> str:
    """Each line parsed, with its operator, ids and time, and the first problem found."""
    operators = "list_filter(keys, lambda k: list_contains(" + sql_list(OPERATORS) + ", k))"
    unknown = (
        "list_filter(keys, lambda k: NOT list_contains("
        + sql_list((*OPERATORS, *IDS, *META))
        + ", k))"
    )
    payload = " ".join(f"WHEN {quote_string(op)} THEN {field(op)}" for op in OPERATORS)
    return f"""
        WITH parsed AS (
            SELECT line, text, CASE WHEN json_valid(text) THEN json(text) END AS record
            FROM {LINES} WHERE text IS NULL OR trim(text, {JSON_BLANKS}) <> ''
        ), keyed AS (
            SELECT line, text, record,
                CASE WHEN json_type(record) = 'OBJECT' THEN json_keys(record) END AS keys,
                CASE WHEN json_type(record) = 'OBJECT'
                     THEN json_transform(record, {record_shape()}) END AS fields
            FROM parsed
        ), named AS (
            SELECT line, text, record, keys,
                {operators} AS operators, {unknown} AS unknown,
                {field("$distinct_id")} AS distinct_id,
                {field("$group_key")} AS group_key,
                {field("$group_id")} AS group_id,
                {field("$time")} AS update_time,
                {field("$ignore_time")} AS ignore_time,
                {time_sql(field("$time"))} AS parsed_time,
                CASE operators[1] {payload} END AS payload
            FROM keyed
        )
        SELECT *, operators[1] AS operator,
            {problem_sql()} AS problem,
            {profile_id_sql()} AS profile_id,
            CASE WHEN distinct_id IS NULL THEN json_extract_string(group_key, '$')
                 ELSE {quote_string(USER_KEY)} END AS profile_key
        FROM named
    """


ID_RULE = (
    "must be a non-empty string, or an integer of at most 64 bits (give a longer one as a string)"
)


def is_id(value: str) -> str:
    return f"(json_type({value}) IN ('BIGINT', 'UBIGINT') OR " + non_empty_text(value) + ")"


def non_empty_text(value: str) -> str:
    return f"(json_type({value}) = 'VARCHAR' AND json_extract_string({value}, '$') <> '')"


def profile_id_sql() -> str:
    return "json_extract_string(coalesce(distinct_id, group_id), '$')"


def time_sql(value: str) -> str:
    """$time: milliseconds (or seconds) since 1970, or ISO 8601 text; naive text is UTC."""
    number = f"CAST({value} AS DOUBLE)"
    text = f"json_extract_string({value}, '$')"
    return f"""CASE
        WHEN {value} IS NULL THEN now()
        WHEN json_type({value}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN
            try(to_timestamp(CASE WHEN abs({number}) < {SECONDS_BELOW} THEN {number}
                                  ELSE {number} / 1000 END))
        WHEN json_type({value}) = 'VARCHAR' THEN {text_sql(text, "'UTC'")}
        END"""


def problem_sql() -> str:
    """The first reason a record cannot be applied, or NULL."""
    group_refused = sql_list(GROUP_REFUSED)
    return f"""CASE
        WHEN text IS NULL THEN 'not UTF-8 text: save the file as UTF-8'
        WHEN record IS NULL THEN 'not JSON'
        WHEN keys IS NULL THEN 'not a JSON object'
        WHEN len(keys) > len(list_distinct(keys)) THEN 'a key appears twice: ' ||
            list_filter(keys, lambda k, i: list_position(keys, k) < i)[1]
        WHEN len(unknown) > 0 THEN 'unknown operator or key ' || unknown[1] ||
            ': the operators are {", ".join(OPERATORS)}'
        WHEN len(operators) = 0 THEN 'no operator: give one of {", ".join(OPERATORS)}'
        WHEN len(operators) > 1 THEN 'one operator a record, and this one has ' ||
            array_to_string(operators, ' and ')
        WHEN distinct_id IS NOT NULL AND (group_key IS NOT NULL OR group_id IS NOT NULL) THEN
            'both $distinct_id and $group_key/$group_id: a record updates one profile'
        WHEN distinct_id IS NULL AND group_key IS NULL AND group_id IS NULL THEN
            'no id: give $distinct_id, or $group_key and $group_id'
        WHEN distinct_id IS NULL AND (group_key IS NULL OR group_id IS NULL) THEN
            'a group update needs both $group_key and $group_id'
        WHEN distinct_id IS NOT NULL AND NOT {is_id("distinct_id")} THEN
            'no id: $distinct_id {ID_RULE}'
        WHEN group_key IS NOT NULL AND NOT {non_empty_text("group_key")} THEN
            'no id: $group_key must be a non-empty string'
        WHEN regexp_full_match(json_extract_string(group_key, '$'), '{BLANK_TEXT}') THEN
            'no id: $group_key is blank; name the group key, such as "company_id"'
        WHEN group_id IS NOT NULL AND NOT {is_id("group_id")} THEN
            'no id: $group_id {ID_RULE}'
        WHEN group_key IS NOT NULL AND list_contains({group_refused}, operators[1]) THEN
            operators[1] || ' is not available for group profiles (only for users)'
        WHEN ignore_time IS NOT NULL AND json_type(ignore_time) <> 'BOOLEAN' THEN
            'wrong value type: $ignore_time must be true or false'
        WHEN update_time IS NOT NULL AND parsed_time IS NULL
             AND json_type(update_time) NOT IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN
            'wrong value type: $time must be milliseconds since 1970 or ISO 8601 text'
        WHEN (update_time IS NOT NULL AND parsed_time IS NULL)
             OR {beyond_moments_sql("parsed_time")} THEN
            '$time ' || update_time || ' is outside the years 1 to 9999 (seconds or ' ||
            'milliseconds since 1970, or ISO 8601 text)'
        WHEN list_contains({sql_list(OBJECT_OPERATORS)}, operators[1])
             AND coalesce(json_type(payload), 'NULL') <> 'OBJECT' THEN
            'wrong value type: ' || operators[1] || ' takes an object of properties'
        WHEN json_type(payload) = 'OBJECT' AND list_contains(json_keys(payload), '{LAST_SEEN}')
            THEN 'reserved property {LAST_SEEN}: pitsync sets it to the time of the last ' ||
            'update; leave it out, and give the record that $time instead'

        -- Items by json_extract: a cast would make a null item SQL NULL, and let it pass.
        WHEN operators[1] = '$unset' AND NOT CASE
            WHEN json_type(payload) = 'ARRAY' THEN coalesce(list_bool_and(
                list_transform(json_extract(payload, '$[*]'),
                               lambda e: json_type(e) = 'VARCHAR')), true)
            ELSE false END THEN
            'wrong value type: $unset takes a list of property names'
        WHEN operators[1] = '$unset'
             AND list_contains(json_extract_string(payload, '$[*]'), '{LAST_SEEN}') THEN
            'reserved property {LAST_SEEN}: pitsync sets it to the time of the last ' ||
            'update, and no update removes it'
        END"""


def exploded_sql() -> str:
    """One row per property an operator names, with its name and value cut to the limits.

    The payload becomes a list of (key, value) in one parse, then unnested: a lateral
    join over json_each would copy the whole payload to every property's row, which for
    a record of many properties and one long value is that value many times over.
    """
    entries = (
        "CASE WHEN operator = '$unset' THEN list_transform("
        "json_extract_string(payload, '$[*]'), lambda n: {'key': n, 'value': NULL::JSON}) "
        """ELSE map_entries(json_transform(payload, '"MAP(VARCHAR, JSON)"')) END"""
    )
    # An object with a key twice makes no map: such a record gets one row, naming the key.
    twice = "list_filter(json_keys(payload), lambda k, i: list_position(json_keys(payload), k) < i)"
    return f"""
        WITH named AS (
            SELECT line, profile_key, profile_id, operator, payload, {entries} AS entries
            FROM {RECORDS} WHERE problem IS NULL AND operator <> '$delete'
        ), unnested AS (
            SELECT line, profile_key, profile_id, operator,
                generate_subscripts(entries, 1) AS position, unnest(entries) AS entry
            FROM named WHERE entries IS NOT NULL
        )
        SELECT line, profile_key, profile_id, operator, position, entry.key AS full_name,
            -- The map reads a JSON null as NULL; as an operation's value it is JSON null.
            CASE WHEN operator = '$unset' THEN NULL
                 ELSE coalesce(entry.value, CAST('null' AS JSON)) END AS raw_value,
            false AS duplicated
        FROM unnested
        UNION ALL
        SELECT line, profile_key, profile_id, operator, 0, {twice}[1], NULL, true
        FROM named WHERE entries IS NULL
    """


def value_problem_sql() -> str:
    """Per property: a value its operator cannot take."""
    return f"""CASE
        WHEN duplicated THEN 'a property appears twice in ' || operator || ': ' || full_name
        WHEN full_name = '' THEN 'a property name is empty'
        WHEN json_type(raw_value) = 'DOUBLE' AND NOT isfinite(CAST(raw_value AS DOUBLE))
            THEN 'wrong value type: ' || left(full_name, 80) || ' is not a finite number'
        WHEN operator = '$add' AND json_type(raw_value) NOT IN ('BIGINT', 'UBIGINT', 'DOUBLE')
            THEN 'wrong value type: $add takes numbers, and ' || full_name || ' is ' ||
                 {json_kind_sql("raw_value")}
        WHEN operator = '$union' AND json_type(raw_value) <> 'ARRAY'
            THEN 'wrong value type: $union takes a list for each property, and ' ||
                 full_name || ' is ' || {json_kind_sql("raw_value")}
        WHEN json_type(raw_value) IN ('ARRAY', 'OBJECT') AND strlen(raw_value) > {MAX_NESTED_BYTES}
            THEN 'the value of ' || left(full_name, 80) || ' is larger than 256 KB'
        END"""


def json_kind_sql(value: str) -> str:
    """What a JSON value is, in words: `a number`, `text`, `a list`..."""
    return f"""CASE json_type({value})
        WHEN 'BIGINT' THEN 'a number' WHEN 'UBIGINT' THEN 'a number'
        WHEN 'DOUBLE' THEN 'a number' WHEN 'VARCHAR' THEN 'text'
        WHEN 'BOOLEAN' THEN 'a boolean' WHEN 'ARRAY' THEN 'a list'
        WHEN 'OBJECT' THEN 'an object' ELSE 'null' END"""


def rejected_sql() -> str:
    """Records with a problem of their own or in one of their values: first reason wins."""
    return f"""
        SELECT line, problem AS reason, text FROM {RECORDS} WHERE problem IS NOT NULL
        UNION ALL
        SELECT r.line, v.reason, r.text FROM {RECORDS} r JOIN (
            SELECT line, arg_min(reason, position) AS reason FROM (
                SELECT line, position, {value_problem_sql()} AS reason
                FROM __pitsync_exploded
            ) WHERE reason IS NOT NULL GROUP BY line
        ) v USING (line)
    """


def updates_sql() -> str:
    return f"""
        SELECT line, profile_key, profile_id, operator, parsed_time,
            coalesce(CAST(ignore_time AS BOOLEAN), false)
        FROM {RECORDS} ANTI JOIN {REJECTED} USING (line)
        WHERE problem IS NULL
    """


def operations_sql() -> str:
    return f"""
        SELECT e.line, e.profile_key, e.profile_id, e.operator, e.position,
            left(e.full_name, {MAX_NAME_CHARACTERS}), {cut_value_sql("e.raw_value", "e.operator")}
        FROM __pitsync_exploded e ANTI JOIN {REJECTED} USING (line)
    """


def cut_value_sql(value: str, operator: str) -> str:
    """Strings are cut to 255 bytes, at a character boundary; so are the string items of a
    list. The value of `$append` or `$remove` is one item: a list there is an item that
    holds a list, whose strings are kept whole, as in a list `$set` or `$union` stores."""
    items = f"list_transform(CAST({value} AS JSON[]), lambda item: {cut_string_sql('item')})"
    return (
        f"CASE WHEN json_type({value}) = 'ARRAY' AND {operator} NOT IN ('$append', '$remove') "
        f"THEN to_json({items}) ELSE {cut_string_sql(value)} END"
    )


def finite_sql(value: str) -> str:
    """A JSON number that is NaN or infinite is no JSON at all: as a value it is undefined."""
    return (
        f"CASE WHEN json_type({value}) = 'DOUBLE' AND NOT isfinite(CAST({value} AS DOUBLE)) "
        f"THEN NULL ELSE {value} END"
    )


def cut_string_sql(value: str) -> str:
    """A JSON string past MAX_STRING_BYTES cut to the longest prefix of whole characters
    that fits.

    Counted over the first 255 characters only, with a fold over their byte lengths that
    captures nothing: an expression a lambda captures is computed again for every item,
    which for a string of many megabytes would be read as many times."""
    text = f"json_extract_string({value}, '$')"
    head = f"left({text}, {MAX_STRING_BYTES})"
    widths = f"list_transform(string_split({head}, ''), lambda c: strlen(c))"
    step = (
        f"lambda acc, w: CASE WHEN acc.full OR acc.bytes + w > {MAX_STRING_BYTES} "
        "THEN {'bytes': acc.bytes, 'chars': acc.chars, 'full': true} "
        "ELSE {'bytes': acc.bytes + w, 'chars': acc.chars + 1, 'full': false} END"
    )
    start = "{'bytes': 0, 'chars': 0, 'full': false}"
    fits = f"list_reduce({widths}, {step}, {start}).chars"
    return (
        f"CASE WHEN json_type({value}) = 'VARCHAR' AND strlen({text}) > {MAX_STRING_BYTES} "
        f"THEN to_json(left({head}, {fits})) ELSE {value} END"
    )
