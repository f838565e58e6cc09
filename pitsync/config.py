"""Read and validate pitsync.toml before any data moves.

Found as `--config PATH`, else the `PITSYNC_CONFIG` environment variable, else
./pitsync.toml. Relative paths inside it are read from the config file's folder.

    [store]
    path = "pitsync.duckdb"

    [sources.warehouse]
    type = "duckdb"
    path = "sample_warehouse/warehouse.duckdb"

    [tables.company_plan_history]
    source = "warehouse"
    kind = "group_history"
    id_column = "company_id"
    group_key = "company_id"
    start_time = "start_timestamp"
    tie_breaker = "updated_at"
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, cast, get_args

import duckdb
from croniter import CroniterBadDateError, croniter

from pitsync.errors import ConfigError
from pitsync.modeling.timestamps import OFFSET_ABBREVIATION_ZONES, is_ambiguous_zone_name
from pitsync.paths import FILE, FOLDER, MISSING, path_kind, reason
from pitsync.quoting import fold_name
from pitsync.store import INTERNAL_SCHEMA

CONFIG_ENV = "PITSYNC_CONFIG"
DEFAULT_CONFIG = "pitsync.toml"

SourceType = Literal["duckdb", "parquet", "csv", "sqlite", "postgres", "snowflake", "bigquery"]
TableKind = Literal["group_history", "user_history", "events", "user_profiles", "group_profiles"]
HISTORY_KINDS = ("user_history", "group_history")
PROFILE_KINDS = ("user_profiles", "group_profiles")
SyncMode = Literal["full", "append", "mirror"]
TimeUnit = Literal["s", "ms", "us"]

STORE_KEYS = {"path", "memory_limit"}
SOURCE_KEYS = {"type", "path", "uri", "uri_env", "schema"}
FILE_SOURCE_TYPES = {"duckdb", "parquet", "csv", "sqlite"}  # read from `path`
ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what `uri_env` may hold
DATABASE_SOURCE_TYPES = {"postgres", "snowflake", "bigquery"}  # reached by `uri`
TABLE_KEYS = {
    "source",
    "kind",
    "id_column",
    "group_key",
    "start_time",
    "time_column",
    "event_column",
    "timezone",
    "time_unit",
    "tie_breaker",
    "from",
    "mode",
    "cursor",
    "lookback",
    "insert_id",
    "schedule",
}
HISTORY_ONLY_KEYS = {"group_key", "start_time", "tie_breaker"}
EVENTS_ONLY_KEYS = {"time_column", "event_column"}
# A profile row sets properties now: it has no start, no event time, no tie to break.
NOT_FOR_PROFILES = {"start_time", "tie_breaker", "time_column", "event_column", "timezone"}
NOT_FOR_PROFILES |= {"time_unit", "insert_id"}

# Names the store gives its own relations; a history table (stored under its own name) may
# not take them. Events tables are stored apart, so `events` is a fine name for one.
RESERVED_TABLE_NAMES = {
    "events",
    "all_events",
    "quarantine",
    "runs",
    "user_profiles",
    "group_profiles",
}
INTERNAL_PREFIX = "__pitsync_"  # a run's temporary tables and derived columns
# The table name runs of profile updates (engage, import-csv) are recorded under.
PROFILES_TABLE = "profiles"


@dataclass(frozen=True)
class SourceConfig:
    """One warehouse pitsync reads from: a file (`path`) or a database server (`uri`, or
    the environment variable `uri_env` that holds it).

    `uri` may hold a password, so it is kept out of `repr` and never put in a message.
    """

    name: str
    type: SourceType
    path: Path | None = None
    uri: str | None = field(default=None, repr=False)
    schema: str | None = None
    uri_env: str | None = None

    def connection_uri(self) -> str | None:
        """The URI to connect with. A `uri_env` variable is read only now, as the source
        is opened: commands that do not read this source run without it."""
        if self.uri_env is None:
            return self.uri
        value = os.environ.get(self.uri_env)
        if not value:
            raise ConfigError(
                f"[sources.{self.name}]: environment variable {self.uri_env} (from "
                "`uri_env`) is not set or empty; export it with the connection URI",
                key="uri_env",
            )
        return value


@dataclass(frozen=True)
class TableConfig:
    """One table to sync, and how its rows become history or events."""

    name: str
    source: str
    kind: TableKind
    id_column: str
    source_table: str
    group_key: str | None = None
    start_time: str | None = None
    time_column: str = "time"
    event_column: str = "event"
    timezone: str = "UTC"
    time_unit: TimeUnit | None = None
    tie_breaker: str | None = None
    mode: SyncMode = "full"
    cursor: str | None = None  # append: the column whose rising values say what is new
    lookback_seconds: int = 0  # append: re-read this far behind the watermark
    insert_id: str | None = None  # events in append mode: the column naming each event
    schedule: str | None = None  # cron syntax, for `pitsync schedule`
    # Where its rows come from, as a watermark keeps it: another place has other cursors.
    read_from: str = ""

    @property
    def is_history(self) -> bool:
        return self.kind in HISTORY_KINDS

    @property
    def is_profiles(self) -> bool:
        return self.kind in PROFILE_KINDS

    @property
    def time_source_column(self) -> str:
        """The source column that holds each row's moment: start time or event time."""
        return cast(str, self.start_time) if self.is_history else self.time_column


@dataclass(frozen=True)
class Config:
    """The whole configuration: where the store is, what to read, and how."""

    path: Path
    store_path: Path
    # DuckDB's buffer limit for syncs and queries ("1GB"); past it DuckDB spills to disk.
    memory_limit: str | None = None
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    tables: dict[str, TableConfig] = field(default_factory=dict)

    def configures(self, name: str) -> bool:
        """Whether a table of this name is configured, in any case, as the store compares
        table names."""
        return fold_name(name) in {fold_name(configured) for configured in self.tables}

    def table(self, name: str) -> TableConfig:
        """The table named `name` in any case, as the store compares names (no two
        configured tables differ in case only), or a clear error listing the configured
        ones."""
        for configured, table in self.tables.items():
            if fold_name(configured) == fold_name(name):
                return table
        raise ConfigError(
            f"table `{name}` is not configured in {self.path}; "
            f"configured tables are: {', '.join(sorted(self.tables)) or '(none)'}",
            table=name,
        )

    def tables_named(self, names: list[str]) -> list[TableConfig]:
        """The tables of these names, each once however often (or in what case) it is
        named, in the order first named."""
        chosen = {table.name: table for table in map(self.table, names)}
        return list(chosen.values())


def find_config_path(explicit: str | None) -> Path:
    """The config file to use: the explicit path, else $PITSYNC_CONFIG, else ./pitsync.toml."""
    if not explicit and os.environ.get(CONFIG_ENV) == "":
        # Most often a variable meant to be set and left empty: it must not mean the default.
        raise ConfigError(
            f"{CONFIG_ENV} is set but empty; set it to the config file's path, or unset it"
        )
    chosen = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    path = Path(chosen)
    how = "--config" if explicit else (CONFIG_ENV if os.environ.get(CONFIG_ENV) else "default")
    kind = path_kind(path)
    if kind == FOLDER:
        raise ConfigError(
            f"config file {path} is a folder ({how}); name the .toml file itself, "
            f"such as {path / DEFAULT_CONFIG}"
        )
    if kind == MISSING:
        raise ConfigError(
            f"config file {path} not found ({how}); pass --config PATH, set {CONFIG_ENV}, "
            f"or create {DEFAULT_CONFIG} in the current folder"
        )
    if kind != FILE:
        raise ConfigError(
            f"cannot read config file {path} ({how}): {kind}; name a .toml file you may read"
        )
    return path


def load_config(explicit: str | None = None) -> Config:
    """Find, parse and validate the configuration."""
    path = find_config_path(explicit)
    try:
        raw = tomllib.loads(config_text(path))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    return parse_config(raw, path)


# Editors on Windows may start a UTF-8 file with this mark; TOML itself does not allow it.
BYTE_ORDER_MARK = b"\xef\xbb\xbf"


def config_text(path: Path) -> str:
    """The file's text, a leading byte order mark left out."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"cannot read config file {path}: {reason(error)}; check that it is a file you may read"
        ) from error
    body = data.removeprefix(BYTE_ORDER_MARK)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + len(data) - len(body)
        raise ConfigError(
            f"{path} is not UTF-8 text (at byte offset {offset}); save it as UTF-8"
        ) from error


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    """Validate a parsed TOML document; every problem names the key and the fix."""
    check_no_password_outside_uri(raw)
    check_keys(raw, {"store", "sources", "tables"}, where="the top level")
    base = path.resolve().parent

    store = section(raw, "store")
    check_keys(store, STORE_KEYS, where="[store]")
    stored_at = text_value(store, "path", where="[store]", default="pitsync.duckdb")
    store_path = setting_path(base, stored_at)
    memory_limit = memory_limit_value(store)

    sources = {
        name: parse_source(name, section(section(raw, "sources"), name, "sources."), base)
        for name in section(raw, "sources")
    }
    tables = {
        name: parse_table(name, section(section(raw, "tables"), name, "tables."), sources)
        for name in section(raw, "tables")
    }
    check_table_names_differ_beyond_case(tables)
    check_group_keys_spelled_alike(tables)
    check_store_is_no_source(store_path, sources)
    check_store_name(store_path)
    return Config(
        path=path,
        store_path=store_path,
        memory_limit=memory_limit,
        sources=sources,
        tables=tables,
    )


# A password in a connection URL (`://user:secret@`, blanks and all) or in libpq's key words.
PASSWORD = re.compile(r"://[^/\s@]*:[^/@]*@|password\s*=", re.IGNORECASE)


def check_no_password_outside_uri(raw: dict[str, Any], where: str = "the top level") -> None:
    """Refuse a password anywhere but in a source's `uri`, the one setting no message
    shows: a connection string put in a path or a name by mistake would be printed by the
    first message to name that setting, and kept in the run record of a scheduled run."""
    for key, value in raw.items():
        if PASSWORD.search(key):
            refuse_password(f"{where}: a section or key name")
        items = value if isinstance(value, list) else [value]
        if key != "uri" and any(isinstance(item, str) and PASSWORD.search(item) for item in items):
            refuse_password(f"{where}: `{key}`", uri_env=key == "uri_env")
        if isinstance(value, dict):
            check_no_password_outside_uri(value, f"[{section_name(where, key)}]")


def refuse_password(setting: str, *, uri_env: bool = False) -> NoReturn:
    if uri_env:  # the URI itself, where the name of the variable holding it goes
        raise ConfigError(
            f"{setting} holds a password (not shown): it must be the name of an environment "
            "variable, which holds the URI; set the variable to the URI and name it here"
        )
    raise ConfigError(
        f"{setting} holds a password (not shown); only a source's `uri` may hold one, or "
        "better the environment variable its `uri_env` names"
    )


def section_name(where: str, key: str) -> str:
    """`sources.w` for the key `w` inside [sources]."""
    return f"{where.strip('[]')}.{key}" if where.startswith("[") else key


# ASCII only: DuckDB reads no other digits or spaces, and would refuse them only later.
MEMORY_SIZE = re.compile(
    r"[0-9]+(\.[0-9]+)? *(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE | re.ASCII
)


MEMORY_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
MEMORY_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
# Below this DuckDB cannot hold even one run's sort buffers; above it, no machine.
MEMORY_BOUNDS = (64 * 10**6, 2**50)


def setting_path(base: Path, text: str) -> Path:
    """A path setting: `~` and `~name` are home folders, as a shell reads them (not
    folders named `~`); a relative path is read from the config file's folder, and so is
    `~name` of no user, as a shell leaves it."""
    try:
        return base / Path(text).expanduser()
    except RuntimeError:  # `~name` of no user, or no home folder to be found
        return base / text


def memory_limit_value(store: dict[str, Any]) -> str | None:
    """A size DuckDB understands, checked here so a typo fails before any data moves."""
    value = text_value(store, "memory_limit", where="[store]", default=None)
    if value is None:
        return None
    size = MEMORY_SIZE.fullmatch(value.strip(" "))
    if not size:
        raise ConfigError(
            f"[store]: `memory_limit` = {shown(value)} is not a size; write it like "
            '"1GB" or "512MB"',
            key="memory_limit",
        )
    number = float(value.strip(" ")[: size.start(2)])
    if not MEMORY_BOUNDS[0] <= number * MEMORY_UNITS[size.group(2).lower()] <= MEMORY_BOUNDS[1]:
        raise ConfigError(
            f"[store]: `memory_limit` = {shown(value)} is out of range; "
            'give between "64MB" and "1024TiB"',
            key="memory_limit",
        )
    return value


def check_table_names_differ_beyond_case(tables: dict[str, TableConfig]) -> None:
    """The store names relations without regard to case, so `Plans` and `plans` collide."""
    seen: dict[str, str] = {}
    for name in tables:
        if fold_name(name) in seen:
            raise ConfigError(
                f"[tables.{name}] and [tables.{seen[fold_name(name)]}] differ only in case, which "
                "the store cannot tell apart; rename one (set `from` to keep its source table)",
                table=name,
            )
        seen[fold_name(name)] = name


def check_group_keys_spelled_alike(tables: dict[str, TableConfig]) -> None:
    """A group key is a name, compared without case as the store compares names: tables
    that spell one key in two ways would file its groups under two keys."""
    spelled: dict[str, tuple[str, str]] = {}
    for name, table in tables.items():
        if not table.group_key:
            continue
        key, first = spelled.setdefault(fold_name(table.group_key), (table.group_key, name))
        if key != table.group_key:
            raise ConfigError(
                f"[tables.{name}] spells the group key `{table.group_key}`, and "
                f"[tables.{first}] `{key}`; a key differing only in case is the same key: "
                "spell it alike in both",
                key="group_key",
                table=name,
            )


def check_store_is_no_source(store_path: Path, sources: dict[str, SourceConfig]) -> None:
    """pitsync writes the store and only reads sources; one file cannot be both."""
    for source in sources.values():
        if source.path is not None and source.path.resolve() == store_path.resolve():
            raise ConfigError(
                f"[store] path {store_path} is also the path of [sources.{source.name}]; the "
                "store must be a file of its own: set [store] path to a new file",
                key="path",
            )


def check_store_name(store_path: Path) -> None:
    """DuckDB names a database after its file, up to the first dot: a store file named
    like the store's internal schema makes every name in that schema ambiguous."""
    if fold_name(store_path.name.split(".")[0]) == INTERNAL_SCHEMA:
        raise ConfigError(
            f"[store] path {store_path}: DuckDB would name the database after the file, "
            f"`{INTERNAL_SCHEMA}`, the name of the store's internal schema; name the file "
            "otherwise (for example pitsync.duckdb)",
            key="path",
        )


def parse_source(name: str, raw: dict[str, Any], base: Path) -> SourceConfig:
    """One [sources.NAME] section: files take `path`, database servers `uri` or `uri_env`."""
    where = f"[sources.{name}]"
    check_has_no_nul(name, "source")
    check_keys(raw, SOURCE_KEYS, where=where)
    source_type = cast(SourceType, choice(raw, "type", get_args(SourceType), where=where))
    schema = text_value(raw, "schema", where=where, default=None)
    if source_type in FILE_SOURCE_TYPES:
        reads_path = f'type = "{source_type}" reads `path`'
        refuse_keys(raw, {"uri", "uri_env"}, where=where, reason=reads_path)
        if source_type != "duckdb":
            refuse_keys(raw, {"schema"}, where=where, reason=f"{reads_path}, which has no schemas")
        path = setting_path(base, text_value(raw, "path", where=where))
        return SourceConfig(name=name, type=source_type, path=path, schema=schema)
    refuse_keys(raw, {"path"}, where=where, reason=f'type = "{source_type}" connects by `uri`')
    check_uri_keys(raw, where=where)
    return SourceConfig(
        name=name,
        type=source_type,
        uri=text_value(raw, "uri", where=where, default=None),
        uri_env=text_value(raw, "uri_env", where=where, default=None),
        schema=schema,
    )


def check_uri_keys(raw: dict[str, Any], *, where: str) -> None:
    """A database source has its URI in the file, or names the variable holding it."""
    if ("uri" in raw) == ("uri_env" in raw):
        raise ConfigError(
            f'{where}: set exactly one of `uri` ("postgresql://...") or `uri_env` (the name of '
            "an environment variable holding it, so a password need not sit in the file)",
            key="uri",
        )
    if "uri" in raw:
        return
    if not ENVIRONMENT_NAME.fullmatch(text_value(raw, "uri_env", where=where)):
        # Not echoed: what sits here by mistake is most often the URI, password and all.
        raise ConfigError(
            f"{where}: `uri_env` must be the name of an environment variable (letters, "
            "digits and _), not its value; put the URI in a variable, e.g. "
            'PITSYNC_WAREHOUSE_URI, and set uri_env = "PITSYNC_WAREHOUSE_URI"',
            key="uri_env",
        )


def refuse_keys(raw: dict[str, Any], keys: set[str], *, where: str, reason: str) -> None:
    for key in sorted(keys & raw.keys()):
        raise ConfigError(f"{where}: `{key}` does not apply: {reason}; remove it", key=key)


def parse_table(name: str, raw: dict[str, Any], sources: dict[str, SourceConfig]) -> TableConfig:
    """One [tables.NAME] section, checked against its kind."""
    where = f"[tables.{name}]"
    check_has_no_nul(name, "table")
    check_keys(raw, TABLE_KEYS, where=where)
    kind = cast(TableKind, choice(raw, "kind", get_args(TableKind), where=where))
    if not name.strip():
        raise ConfigError(
            f'[tables."{name}"]: a table needs a name, which the store gives its relation; name it '
            "(for example [tables.plans]) and set `from` to the source table",
            table=name,
        )
    if fold_name(name).startswith(INTERNAL_PREFIX):
        raise ConfigError(
            f"{where}: names starting with `{INTERNAL_PREFIX}` are kept for pitsync's own "
            "tables; rename the table and set `from` to keep reading the same source table",
            table=name,
        )
    if kind in HISTORY_KINDS and fold_name(name) in RESERVED_TABLE_NAMES:
        raise ConfigError(
            f"{where}: `{name}` is a name the store keeps for its own relations "
            f"({', '.join(sorted(RESERVED_TABLE_NAMES))}); rename the history table and set "
            f'from = "{name}" to keep reading the same source table',
            table=name,
        )
    if fold_name(name) == PROFILES_TABLE:
        raise ConfigError(
            f"{where}: `{name}` is the name the runs and quarantined records of profile "
            f"updates (engage, import-csv) are kept under; rename the table and set "
            f'from = "{name}" to keep reading the same source table',
            table=name,
        )
    check_kind_keys(raw, kind, where=where)

    source = text_value(raw, "source", where=where)
    if source not in sources:
        raise ConfigError(
            f"{where}: source {named(source)} is not configured; "
            f"configured sources are: {', '.join(sorted(sources)) or '(none)'}",
            key="source",
            table=name,
        )
    source_table = text_value(raw, "from", where=where, default=name)
    table = TableConfig(
        name=name,
        source=source,
        kind=kind,
        source_table=source_table,
        read_from=place_read(sources[source], source_table),
        **mode_fields(raw, kind, where=where),
        schedule=schedule_value(raw, where=where),
        timezone=timezone_value(raw, where=where),
        time_unit=cast(
            TimeUnit | None, choice(raw, "time_unit", get_args(TimeUnit), where=where, default=None)
        ),
        **kind_fields(raw, kind, where=where),
    )
    check_insert_id_apart(table, where=where)
    return table


LOOKBACK = re.compile(r"(\d+)\s*(s|m|h|d)")
SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def mode_fields(raw: dict[str, Any], kind: TableKind, *, where: str) -> dict[str, Any]:
    """The sync mode and what it needs: append reads by a cursor column."""
    mode = cast(SyncMode, choice(raw, "mode", get_args(SyncMode), where=where, default="full"))
    if mode == "mirror" and kind == "events":
        raise ConfigError(
            f'{where}: events tables sync in mode "full" or "append" (by a cursor; '
            "events are keyed by insert_id, or by their values without one); "
            '"mirror" compares history rows by their key',
            key="mode",
        )
    if mode == "mirror" and kind in PROFILE_KINDS:
        raise ConfigError(
            f'{where}: profile tables sync in mode "full" or "append": each row sets its '
            "profile's properties, and a row gone from the source deletes nothing",
            key="mode",
        )
    if mode != "append":
        reason = f'mode = "{mode}" reads the whole table'
        refuse_keys(raw, {"cursor", "lookback", "insert_id"}, where=where, reason=reason)
        return {"mode": mode}
    if kind != "events":
        refuse_keys(
            raw, {"insert_id"}, where=where, reason="history rows are keyed by id and start"
        )
    return {
        "mode": mode,
        "cursor": text_value(raw, "cursor", where=where),
        "lookback_seconds": lookback_value(raw, where=where),
        "insert_id": text_value(raw, "insert_id", where=where, default=None),
    }


def place_read(source: SourceConfig, table: str) -> str:
    """Where a table's rows come from: a file source's kind and path, or a database
    source's name and schema (its URI may hold a password), and the table in it."""
    if source.path is not None:
        where = f"{source.type} {source.path}"
    else:
        where = f"{source.type} source `{source.name}`"
        if source.schema:
            where += f", schema `{source.schema}`"
    return f"{where}, table `{fold_name(table)}`"


def check_insert_id_apart(table: TableConfig, *, where: str) -> None:
    """Refuse an insert id that is the events' name, user or time column: those are
    stored as the event's own fields (the time as a time, where insert ids are text),
    and an insert id is a column of its own."""
    if table.insert_id is None:
        return
    own = {
        "event_column": table.event_column,
        "id_column": table.id_column,
        "time_column": table.time_column,
    }
    for key, column in own.items():
        if fold_name(column) == fold_name(table.insert_id):
            raise ConfigError(
                f"{where}: `insert_id` = {named(table.insert_id)} is the events' `{key}`; "
                "an insert id tells events apart by a column of its own: name that column "
                "(a view can copy one), or leave insert_id out to know events by their "
                "name, user, time and properties",
                key="insert_id",
                table=table.name,
            )


def schedule_value(raw: dict[str, Any], *, where: str) -> str | None:
    """A cron expression: five fields (or a sixth for seconds), or @hourly, @daily..."""
    text = text_value(raw, "schedule", where=where, default=None)
    # Blanks around it are no part of it: croniter takes " 0 * * * * " but not " @hourly ".
    text = text.strip() if text is not None else None
    # croniter would also take a seventh field, for years, which nothing here promises.
    fields = len(text.split()) if text is not None else 0
    if text is not None and (not croniter.is_valid(text) or fields > 6):
        raise ConfigError(
            f"{where}: `schedule` = {shown(text)} is not a cron expression; write it like "
            '"0 * * * *" (hourly), "*/15 * * * *" or "@daily"',
            key="schedule",
        )
    if text is not None and any(part.upper().startswith("R") for part in text.split()):
        raise ConfigError(
            f"{where}: `schedule` = {shown(text)} has a random field (R), which would be drawn "
            "again for every slot; write the minute (or hour) itself",
            key="schedule",
        )
    if text is not None:
        try:
            croniter(text).get_next(float)
        except CroniterBadDateError:
            raise ConfigError(
                f"{where}: `schedule` = {shown(text)} names no moment that ever comes "
                "(such as 30 February); check the day and month fields",
                key="schedule",
            ) from None
    return text


def lookback_value(raw: dict[str, Any], *, where: str) -> int:
    """`lookback = "2h"`: seconds (s), minutes (m), hours (h) or days (d)."""
    text = text_value(raw, "lookback", where=where, default=None)
    if text is None:
        return 0
    match = LOOKBACK.fullmatch(text.strip())
    if not match:
        raise ConfigError(
            f'{where}: `lookback` = {shown(text)} is not a duration; write it like "90s", "15m", '
            '"2h" or "1d"',
            key="lookback",
        )
    return int(match.group(1)) * SECONDS_PER[match.group(2)]


def kind_fields(raw: dict[str, Any], kind: TableKind, *, where: str) -> dict[str, Any]:
    """The settings that depend on the kind of table."""
    if kind == "events":
        return {
            "id_column": text_value(raw, "id_column", where=where, default="distinct_id"),
            "time_column": text_value(raw, "time_column", where=where, default="time"),
            "event_column": text_value(raw, "event_column", where=where, default="event"),
        }
    if kind in PROFILE_KINDS:
        fields = {"id_column": text_value(raw, "id_column", where=where)}
        if kind == "group_profiles":
            fields["group_key"] = group_key_value(raw, where=where)
        return fields
    fields = {
        "id_column": text_value(raw, "id_column", where=where),
        "start_time": text_value(raw, "start_time", where=where),
        "tie_breaker": text_value(raw, "tie_breaker", where=where, default=None),
    }
    check_tie_breaker(fields, where=where)
    if kind == "group_history":
        fields["group_key"] = group_key_value(raw, where=where)
    return fields


def check_tie_breaker(fields: dict[str, Any], *, where: str) -> None:
    """Tied rows share their id and start time: neither can tell them apart."""
    tie_breaker = fields["tie_breaker"]
    for key in ("id_column", "start_time"):
        if tie_breaker is not None and fold_name(tie_breaker) == fold_name(fields[key]):
            raise ConfigError(
                f"{where}: `tie_breaker` = {shown(tie_breaker)} is the `{key}`, which every "
                "tied row shares, so it decides no tie; name another column (such as an "
                "updated-at time), or remove tie_breaker",
                key="tie_breaker",
            )


def group_key_value(raw: dict[str, Any], *, where: str) -> str:
    """The group key's name, which commands take as `--group-key KEY`: not blank."""
    value = text_value(raw, "group_key", where=where)
    if not value.strip():
        raise ConfigError(
            f"{where}: `group_key` = {shown(value)} is blank; name the group key, such as "
            '"company_id"',
            key="group_key",
        )
    return str(value)


def check_kind_keys(raw: dict[str, Any], kind: TableKind, *, where: str) -> None:
    """Refuse keys that mean nothing for this kind of table."""
    wrong = EVENTS_ONLY_KEYS if kind != "events" else HISTORY_ONLY_KEYS
    if kind in PROFILE_KINDS:
        wrong = NOT_FOR_PROFILES
    if kind in ("user_history", "user_profiles"):
        wrong = wrong | {"group_key"}
    for key in sorted(wrong & raw.keys()):
        raise ConfigError(f'{where}: `{key}` does not apply to kind = "{kind}"; remove it', key=key)


def check_has_no_nul(name: str, kind: str) -> None:
    """A section name is a name in the store and on the command line, which hold no NUL."""
    if "\x00" in name:
        shown_name = name.replace("\x00", "\\u0000")
        raise ConfigError(
            f'[{kind}s."{shown_name}"]: the {kind} name holds a NUL character (\\u0000), '
            "which no name can hold; remove it"
        )


def check_keys(raw: dict[str, Any], allowed: set[str], *, where: str) -> None:
    """Refuse unknown keys, suggesting the closest known one."""
    for key in raw:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = (
            f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(sorted(allowed))}"
        )
        raise ConfigError(f"{where}: unknown key `{key}`; {hint}", key=key)


def section(raw: dict[str, Any], key: str, parent: str = "") -> dict[str, Any]:
    """A sub-table of the document; absent means empty. `parent` ("tables.") names the
    section it sits in, so the message names the section as it is written."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(
            f"`{key}` must be a table ([{parent}{key}]), got {toml_kind(value)}", key=key
        )
    return value


HIDDEN = "a connection string (not shown)"


def shown(text: str) -> str:
    """A setting's text in a message, quoted; not a connection string put there by
    mistake, which may hold a password."""
    return HIDDEN if is_connection_string(text) else repr(text)


def named(text: str) -> str:
    """A name from a setting in a message, `quoted`; not a connection string."""
    return HIDDEN if is_connection_string(text) else f"`{text}`"


def is_connection_string(text: str) -> bool:
    return bool(re.search(r"://|:[^\s@]*@|password\s*=", text, flags=re.IGNORECASE))


def toml_kind(value: Any) -> str:
    """What a misplaced value is: a number or boolean itself, else its kind (`a string`),
    never the text: any setting may be where a connection URI was put by mistake,
    password and all."""
    if isinstance(value, bool):
        return "true" if value else "false"  # as TOML writes it
    if isinstance(value, int | float):
        return repr(value)
    kinds = [(str, "a string"), (list, "an array"), (dict, "a table")]
    return next((name for kind, name in kinds if isinstance(value, kind)), "a date or time")


_REQUIRED = object()


def text_value(raw: dict[str, Any], key: str, *, where: str, default: Any = _REQUIRED) -> Any:
    """A string setting; a missing required one names the key to set."""
    if key not in raw:
        if default is _REQUIRED:
            raise ConfigError(f'{where}: `{key}` is required; add {key} = "..."', key=key)
        return default
    value = raw[key]
    if not isinstance(value, str) or not value:
        given = toml_kind(value) if value != "" else "an empty one"
        raise ConfigError(f"{where}: `{key}` must be a non-empty string, got {given}", key=key)
    if "\x00" in value:
        raise ConfigError(
            f"{where}: `{key}` holds a NUL character (\\u0000), which no name or path can "
            "hold; remove it",
            key=key,
        )
    return value


def choice(
    raw: dict[str, Any], key: str, allowed: tuple[str, ...], *, where: str, default: Any = _REQUIRED
) -> Any:
    """A setting that takes one of a few words."""
    value = text_value(raw, key, where=where, default=default)
    if value is not None and value not in allowed:
        raise ConfigError(
            f"{where}: `{key}` = {shown(value)} is not one of: {', '.join(allowed)}", key=key
        )
    return value


@functools.cache
def known_zone_names() -> set[str]:
    """The zones DuckDB converts with; the system's list may hold more (`localtime`)."""
    with duckdb.connect(":memory:") as con:
        return {str(row[0]) for row in con.sql("SELECT name FROM pg_timezone_names()").fetchall()}


def timezone_value(raw: dict[str, Any], *, where: str) -> str:
    """The IANA zone naive timestamps of this table are read in."""
    name = text_value(raw, "timezone", where=where, default="UTC")
    region = OFFSET_ABBREVIATION_ZONES.get(name.lower())
    if region is not None:
        raise ConfigError(
            f"{where}: timezone {shown(name)} is also an abbreviation of one offset all year, "
            "as PostgreSQL reads it, while DuckDB gives it summer time; give the IANA zone "
            f'name of a region (for example "{region}")',
            key="timezone",
        )
    if is_ambiguous_zone_name(name):
        # DuckDB's list keeps Java's old abbreviations (`BST` is Bangladesh there).
        raise ConfigError(
            f"{where}: timezone {shown(name)} is an abbreviation, which names several zones; "
            'give the IANA zone name (for example "Europe/London")',
            key="timezone",
        )
    if name != "UTC" and name not in known_zone_names():
        raise ConfigError(
            f"{where}: timezone {shown(name)} is not a known IANA zone name "
            '(for example "UTC" or "Europe/Berlin")',
            key="timezone",
        )
    return name
