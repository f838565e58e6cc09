"""The sync job: read one table from its source and apply it to the store as one run.

Order of steps, and why:

1. read the source's schema and plan the modeling: every configuration mistake (a
   missing column, an integer time without `time_unit`) is raised here, before any row
   moves and before the store is touched;
2. open the store and check that no other history table of the same entity owns one of
   this table's properties (DESIGN rule 11);
3. in one transaction: stream the rows in, model them, write quarantine, catalog, views
   and the run record, then commit. Any failure rolls all of it back, and a `failed`
   run record is written on its own.
"""

from __future__ import annotations

import logging
import re
import shlex
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import duckdb
import pyarrow as pa

from pitsync.config import Config, TableConfig
from pitsync.connectors.progress import ReadProgress
from pitsync.connectors.runs import RunRecord, next_run_id, utc_now, write_run
from pitsync.connectors.sources import (
    NOT_A_CURSOR,
    UNTYPED,
    LowerBound,
    Source,
    open_source,
)
from pitsync.connectors.watermarks import (
    CURSOR_KINDS,
    Watermark,
    advance_watermark,
    cursor_kind,
    forget_watermark,
    read_watermark,
    stored_watermark,
)
from pitsync.errors import (
    ConfigError,
    PitsyncError,
    SourceError,
    StoreError,
    StrictModeError,
    first_line,
    with_memory_advice,
)
from pitsync.interrupts import (
    held_while_committing,
    is_interrupt,
    on_ctrl_c,
    raise_held_interrupt,
)
from pitsync.modeling.events import EventsModel, plan_events
from pitsync.modeling.hidden_events import (
    CatalogEntry,
    read_catalog,
    record_in_catalog,
    refresh_views,
)
from pitsync.modeling.increments import apply_run
from pitsync.modeling.intervals import HistoryModel, ModelCounts, plan_history
from pitsync.modeling.loads import forget_loads, keeps_loads, remember_loads
from pitsync.modeling.profile_tables import ProfilesModel, plan_profiles
from pitsync.modeling.staging import SOURCE_ROWS
from pitsync.quoting import fold_name, spelled_as_in
from pitsync.store import (
    DEFAULT_WAIT_SECONDS,
    StoreInUse,
    has_public_views,
    open_for_writing,
    roll_back,
)

log = logging.getLogger(__name__)

# How DuckDB reports an exception raised by a Python stream it was reading.
STREAM_FAILURE = re.compile(r"registered as '\w+' failed: (?:Unknown error: )?(.*?)\. Detail:")
# How DuckDB opens the message of a COMMIT that could not write the store.
COMMIT_FAILED = "TransactionContext Error: Failed to commit: "

Model = HistoryModel | EventsModel | ProfilesModel


@dataclass(frozen=True)
class SyncOptions:
    """How a run treats bad rows, and how it waits for the store."""

    strict: bool = False
    dry_run: bool = False
    wait_seconds: float = DEFAULT_WAIT_SECONDS  # for another process to release the store
    progress: bool | None = False  # a live bar; None: when standard error is a terminal
    # The scheduled job's stop: once set, the store is neither waited for nor opened, so
    # no new run starts (StoreGivenUp).
    stop: threading.Event | None = None


@dataclass(frozen=True)
class Plan:
    """A table's modeling plan, and its append cursor's column as the source gives it (the
    watermark must be of its type to be compared), both from one read of the schema."""

    model: Model
    cursor: pa.Field | None = None
    text_columns: tuple[str, ...] = ()  # as the source spells them (see `text_columns`)


@dataclass(frozen=True)
class RunOutcome:
    """One table's result in a multi-table sync: its committed record, or why it failed."""

    table_name: str
    record: RunRecord | None = None
    error: PitsyncError | None = None


def sync_tables(
    config: Config, tables: list[TableConfig], options: SyncOptions
) -> list[RunOutcome]:
    """Plan every table first, then run each; one table's failure does not stop the rest,
    but a busy store does: its outcome, the last, names the tables left unsynced.

    Planning reads only schemas, so a configuration mistake in any table stops the whole
    command before any table changes. Each source is opened once for the whole command.
    """
    with ExitStack() as stack:
        sources = open_sources(config, tables, stack)
        plans = [plan_model(config, table, sources[table.source]) for table in tables]
        check_ownership_among([plan.model for plan in plans])
        outcomes = []
        for index, plan in enumerate(plans):
            raise_held_interrupt()  # Ctrl-C while the last table committed: stop here
            try:
                outcomes.append(
                    run_or_report(config, plan, sources[plan.model.table.source], options)
                )
            except StoreInUse as error:  # every table left would wait for the same store
                unsynced = [later.model.table.name for later in plans[index:]]
                busy = not_synced(error, unsynced) if len(plans) > 1 else error
                outcomes.append(RunOutcome(plan.model.table.name, error=busy))
                break
        return outcomes


def not_synced(error: StoreInUse, tables: list[str]) -> StoreInUse:
    """The same error, naming the tables of the command it leaves unsynced."""
    names = ", ".join(f"`{name}`" for name in tables)
    return type(error)(f"table{'s' if len(tables) > 1 else ''} {names} not synced: {error}")


def run_or_report(config: Config, plan: Plan, source: Source, options: SyncOptions) -> RunOutcome:
    model = plan.model
    try:
        return RunOutcome(model.table.name, record=run_model(config, plan, source, options))
    except StoreInUse:
        raise  # every other table would wait for the same store: the caller stops
    except PitsyncError as error:  # the caller reports it, once
        log.debug("table %s: the run failed", model.table.name)
        return RunOutcome(model.table.name, error=error)


def sync_table(config: Config, table: TableConfig, options: SyncOptions) -> RunRecord:
    """Run one full sync of `table`; return its committed run record, or raise."""
    with ExitStack() as stack:
        source = open_sources(config, [table], stack)[table.source]
        return run_model(config, plan_model(config, table, source), source, options)


def open_sources(config: Config, tables: list[TableConfig], stack: ExitStack) -> dict[str, Source]:
    """The sources these tables read, each opened once and closed when the stack ends."""
    sources: dict[str, Source] = {}
    for name in dict.fromkeys(table.source for table in tables):
        sources[name] = open_source(config.sources[name])
        stack.callback(sources[name].close)
    return sources


def run_model(config: Config, plan: Plan, source: Source, options: SyncOptions) -> RunRecord:
    """Stream the table's rows from its source into the store as one run."""
    model, table = plan.model, plan.model.table
    log.debug("table %s: reading %s from source %s", table.name, table.source_table, table.source)
    # A dry run before the first sync must not create the store: it runs in memory.
    fresh_dry_run = options.dry_run and not config.store_path.exists()
    store = Path(":memory:") if fresh_dry_run else config.store_path
    con = open_for_writing(store, config.memory_limit, options.wait_seconds, given_up=options.stop)
    try:
        watermark, bound = checked_against_store(con, config, plan, options)
        as_text = list(plan.text_columns)
        if bound is not None:
            log.debug("table %s: reading rows with %s >= %s", table.name, bound.column, bound.text)

        def read() -> pa.RecordBatchReader:
            return source.read(table.source_table, model.source_columns, as_text, bound)

        with reads_stopped_by_ctrl_c(source):
            return run_once(con, model, read, options, watermark)
    finally:
        with held_while_committing():  # closing writes the committed run into the file
            con.close()


def reads_stopped_by_ctrl_c(source: Source) -> AbstractContextManager[None]:
    """Ctrl-C stops the source's read at once where Ctrl-C stops the command: a database
    sending rows slowly would hold it until its next batch. The scheduled job's own
    handler lets a run finish, its read included."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return nullcontext()
    return on_ctrl_c(source.cancel)


def checked_against_store(
    con: duckdb.DuckDBPyConnection, config: Config, plan: Plan, options: SyncOptions
) -> tuple[Watermark | None, LowerBound | None]:
    """The table's watermark and the rows to read from it, once what the store holds
    (its spelling, the properties other tables own) allows the run; a refusal is a failed
    run, recorded (unless a dry run) so that `runs` shows why the table stands still."""
    table = plan.model.table
    watermark = None
    try:
        if table.mode == "append" and plan.cursor is not None:
            watermark = read_watermark(con, table, plan.cursor)
        catalog = read_catalog(con)
        check_stored_spelling(catalog, table)
        check_property_ownership(catalog, plan.model, config)
        return watermark, watermark.lower_bound(con, table) if watermark else None
    except PitsyncError as error:
        if not options.dry_run:
            record = RunRecord(next_run_id(con), table.name, table.mode)
            record.watermark_before = watermark.value if watermark else None
            record_failure(con, record, error, watermark=watermark_held(con, table))
        raise


def watermark_held(con: duckdb.DuckDBPyConnection, table: TableConfig) -> str | None:
    """The watermark an append table stands at in the store: also one a run cannot use
    (its cursor changed), which the store keeps until a run commits."""
    return stored_watermark(con, table) if table.mode == "append" else None


def plan_model(config: Config, table: TableConfig, source: Source) -> Plan:
    """The modeling plan for this kind of table, from its schema alone (no rows read).

    Raises ConfigError on any mismatch between the configuration and the columns.
    """
    group_keys = group_keys_of(config)
    as_text = text_columns(table, group_keys)
    schema = source.schema(table.source_table, as_text)
    spelled = text_columns(table, group_keys, schema.names)
    if spelled != as_text:  # a group key the source spells in another case
        as_text, schema = spelled, source.schema(table.source_table, spelled)
    check_lookback(table, schema)
    check_cursor(table, schema)
    model: Model
    if table.is_history:
        model = plan_history(table, schema)
    elif table.is_profiles:
        model = plan_profiles(table, schema)
    else:
        model = plan_events(table, schema, group_keys)
    # Each plan has checked that the cursor, when one is set, is a column of the schema.
    cursor = schema.field(table.cursor) if table.cursor else None
    return Plan(model, cursor, tuple(as_text))


def check_cursor(table: TableConfig, schema: pa.Schema) -> None:
    """A cursor orders rows as they arrive, and its watermark is kept as a value of its
    type: a time, a date, a number or text. A time of day wraps every midnight, and
    booleans, bytes, spans of time, lists or JSON order no arrivals."""
    if not table.cursor or table.cursor not in schema.names:
        return
    field = schema.field(table.cursor)
    if UNTYPED in (field.metadata or {}):
        raise ConfigError(
            f"table `{table.name}`: cursor `{table.cursor}` has no declared type in its "
            "source, which keeps numbers and text in it alike and compares them apart, so "
            "no watermark orders its rows; choose a column declared INTEGER, REAL or TEXT",
            key="cursor",
            table=table.name,
        )
    refusal = (field.metadata or {}).get(NOT_A_CURSOR)
    if refusal:
        raise ConfigError(
            f"table `{table.name}`: cursor `{table.cursor}` {refusal.decode()}",
            key="cursor",
            table=table.name,
        )
    kind = field.type
    if cursor_kind(kind) not in CURSOR_KINDS:
        raise ConfigError(
            f"table `{table.name}`: cursor `{table.cursor}` holds {kind}, which does not "
            "order rows as they arrive; choose a timestamp, date, number or text column "
            "that grows with each load",
            key="cursor",
            table=table.name,
        )


def check_lookback(table: TableConfig, schema: pa.Schema) -> None:
    """A lookback is a span of time: its cursor must hold times."""
    if not table.lookback_seconds or not table.cursor or table.cursor not in schema.names:
        return
    kind = schema.field(table.cursor).type
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise ConfigError(
            f"table `{table.name}`: `lookback` needs a time cursor, and `{table.cursor}` "
            f"holds {kind}; remove lookback, or choose a timestamp column as the cursor",
            key="lookback",
            table=table.name,
        )


def group_keys_of(config: Config) -> set[str]:
    """The group keys of the configured group histories: events carry them as text ids."""
    return {
        table.group_key
        for table in config.tables.values()
        if table.kind == "group_history" and table.group_key
    }


def text_columns(
    table: TableConfig, group_keys: set[str], source_names: list[str] | None = None
) -> list[str]:
    """Columns whose written text is the value: ids, group keys, insert ids, and a time not
    in epochs. Given the source's column names, an events column named like a group key
    in another case (`Company_Id`) is that key's column, as the store compares names."""
    columns = [table.id_column]
    if table.is_profiles:
        return columns
    # A cursor keeps its sniffed type: the source compares it with the watermark.
    if table.time_unit is None and table.time_source_column != table.cursor:
        columns.append(table.time_source_column)
    if table.kind == "events":
        keys = {spelled_as_in(source_names or [], key) for key in group_keys}
        ids = keys | ({table.insert_id} if table.insert_id else set())
        columns.extend(sorted(ids - set(columns)))
    return columns


def check_property_ownership(catalog: list[CatalogEntry], model: Model, config: Config) -> None:
    """Two history tables of one entity may not both model a property (DESIGN rule 11),
    even when one of them is only left in the store, no longer configured."""
    for other in catalog:
        if other.table_name != model.table.name:
            remedy = ONE_OWNER if config.configures(other.table_name) else LEFT_OVER
            check_disjoint(
                model, other.table_name, other.kind, other.group_key, other.properties, remedy
            )


def check_ownership_among(models: list[Model]) -> None:
    """The same rule among the tables of one command, before any of them runs."""
    for index, model in enumerate(models):
        for other in models[index + 1 :]:
            table = other.table
            check_disjoint(model, table.name, table.kind, table.group_key, other.properties)


def check_ownership_of(config: Config, tables: list[TableConfig]) -> None:
    """The same rule among the history tables of a job that runs them one by one, before
    any of them runs. A table that cannot be planned now (its source is down) is left out:
    each of its runs says why, and checks itself against what the store holds."""
    histories = [table for table in tables if table.is_history]
    with ExitStack() as stack:
        sources: dict[str, Source | None] = {}
        models = []
        for table in histories:
            if table.source not in sources:
                sources[table.source] = source_if_readable(config, table.source, stack)
            model = model_if_plannable(config, table, sources[table.source])
            if model is not None:
                models.append(model)
        check_ownership_among(models)


def source_if_readable(config: Config, name: str, stack: ExitStack) -> Source | None:
    try:
        source = open_source(config.sources[name])
    except PitsyncError as error:
        log.debug("source %s: not read before the runs: %s", name, error)
        return None
    stack.callback(source.close)
    return source


def model_if_plannable(config: Config, table: TableConfig, source: Source | None) -> Model | None:
    if source is None:
        return None
    try:
        return plan_model(config, table, source).model
    except PitsyncError as error:
        log.debug("table %s: not planned before its runs: %s", table.name, error)
        return None


def check_stored_spelling(catalog: list[CatalogEntry], table: TableConfig) -> None:
    """A table the store holds under another spelling is this one: the store compares
    table names without case, as DuckDB does, and a second entry for the same stored
    relation would read its rows twice and start its watermark anew."""
    for entry in catalog:
        held = entry.table_name
        if held == table.name or fold_name(held) != fold_name(table.name):
            continue
        raise ConfigError(
            f"table `{table.name}`: the store holds it as `{held}` and compares table names "
            f"without case; name the section [tables.{held}] again, or run "
            f"`pitsync drop-table {shlex.quote(held)}` to store it anew under this name",
            table=table.name,
        )


ONE_OWNER = "each property has one owner: drop or rename the column in one of the tables"
LEFT_OVER = (
    "`{other}` is no longer configured: it is a table left in the store from an earlier "
    "configuration, and `pitsync drop-table {quoted}` removes it"
)


def check_disjoint(
    model: Model,
    other: str,
    kind: str,
    group_key: str | None,
    properties: list[str],
    remedy: str = ONE_OWNER,
) -> None:
    table = model.table
    same_entity = kind == table.kind and group_key == table.group_key
    if not table.is_history or not same_entity:
        return
    # Compared without case: the profile would hold `plan` and `Plan` as one name.
    theirs = {fold_name(name) for name in properties}
    shared = sorted(name for name in model.properties if fold_name(name) in theirs)
    if shared:
        raise ConfigError(
            f"table `{table.name}`: propert{'y' if len(shared) == 1 else 'ies'} "
            f"{', '.join(f'`{name}`' for name in shared)} already modeled by history "
            f"table `{other}` of the same entity; "
            + remedy.format(other=other, quoted=shlex.quote(other)),
            table=table.name,
        )


def run_once(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    read: Callable[[], pa.RecordBatchReader],
    options: SyncOptions,
    watermark: Watermark | None = None,
) -> RunRecord:
    """Apply one run in a single transaction; on failure roll back and record why.

    The source is read inside the run, so a source that fails as it opens its rows is a
    failed run like any other. A dry run goes through every step, then rolls back: its
    record says what a run would do, and nothing of it, the record included, is kept.
    """
    table = model.table
    record = RunRecord(run_id=next_run_id(con), table_name=table.name, mode=table.mode)
    # Known before the run, so a failed run's record says where it started from too.
    record.watermark_before = watermark.value if watermark else None
    ended = False  # committed, or rolled back as a dry run
    con.execute("BEGIN TRANSACTION")
    try:
        # Progress is shown (or logged) until the run has ended, commit included.
        with ReadProgress(table.name, interactive=options.progress) as progress:
            con.register(SOURCE_ROWS, progress.track(read()))
            apply_in_transaction(con, model, record, options, watermark)
            progress.now("rolling back, as a dry run" if options.dry_run else "committing")
            with held_while_committing():
                end_run(con, table, dry_run=options.dry_run)
                ended = True
        if options.dry_run:
            record.status = "dry run"
    except BaseException as error:
        if ended:
            raise  # an interrupt just after the run ended: the run stands as it is
        fail_run(con, table, record, error, dry_run=options.dry_run)
    finally:
        con.unregister(SOURCE_ROWS)
    log_run(record, dry_run=options.dry_run)
    return record


def fail_run(
    con: duckdb.DuckDBPyConnection,
    table: TableConfig,
    record: RunRecord,
    error: BaseException,
    *,
    dry_run: bool,
) -> NoReturn:
    """Roll the run back, record why (a dry run leaves no record), and raise what the user
    is told: an interrupt as an interrupt, DuckDB's errors with the table named."""
    roll_back(con)
    try:
        held = watermark_held(con, table)
    except duckdb.Error:  # a store that refuses even this takes no record either
        held = None
    if is_interrupt(error):
        if not dry_run:
            record_failure(con, record, KeyboardInterrupt("interrupted"), watermark=held)
        raise KeyboardInterrupt from None
    failure = as_run_error(table, error)
    if not dry_run:
        record_failure(con, record, failure or error, watermark=held)
    if failure is None or failure is error:
        raise error
    raise failure from error


def log_run(record: RunRecord, *, dry_run: bool) -> None:
    log.info(
        "table %s%s: %d rows read, %d inserted, %d updated, %d deleted, %d quarantined, "
        "%d conflicts in %.2fs",
        record.table_name,
        " (dry run, nothing applied)" if dry_run else "",
        record.rows_read,
        record.inserted,
        record.updated,
        record.deleted,
        record.quarantined,
        record.conflicts,
        record.seconds,
    )


def apply_in_transaction(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    record: RunRecord,
    options: SyncOptions,
    watermark: Watermark | None,
) -> None:
    """The run's work before its commit: model the source's rows into the store, check
    them, move the watermark, and write catalog, views and the run record."""
    table = model.table
    if watermark is None:  # the run reads every row anew: a first or full run, say
        forget_loads(con, table)
    counts, model = apply_model(con, model, record.run_id, reads_anew=watermark is None)
    record.count(counts)
    check_strict(table, counts, options)
    if table.mode == "append":
        after = advance_watermark(con, table, watermark)
        record.watermark_after = after.value if after else None
        if keeps_loads(table):
            remember_loads(con, table, next_floor(con, table, after))
    elif table.kind == "events":
        # A full run keeps every copy of an event from every load, as its source has
        # them; an append run keeps one load's. The next one reads every row anew, so
        # that no copy stored now counts as a later load than the source's.
        forget_watermark(con, table)
    finish(con, model, record)


def next_floor(
    con: duckdb.DuckDBPyConnection, table: TableConfig, watermark: Watermark | None
) -> tuple[str, str] | None:
    """Where the next run of an append table reads from, as (text, DuckDB type); None:
    from the first row."""
    bound = watermark.lower_bound(con, table) if watermark else None
    return (bound.text, bound.type_name) if bound else None


def end_run(con: duckdb.DuckDBPyConnection, table: TableConfig, *, dry_run: bool) -> None:
    """Commit the run (roll back a dry run); a commit the disk refuses applies nothing."""
    if dry_run:
        con.execute("ROLLBACK")
        return
    try:
        con.execute("COMMIT")
    except duckdb.Error as error:
        raise StoreError(
            f"table `{table.name}`: the store could not commit the run, so nothing was "
            f"applied: {why_not_written(error)}; once the store can be written (room on its "
            "disk, a folder it may write in), run again"
        ) from error


def why_not_written(error: duckdb.Error) -> str:
    """DuckDB's reason a write failed, without the words that only say a commit did."""
    return first_line(error).removeprefix(COMMIT_FAILED)


def apply_model(
    con: duckdb.DuckDBPyConnection, model: Model, run_id: int, *, reads_anew: bool
) -> tuple[ModelCounts, Model]:
    """Profile tables fold their rows as updates in either mode; the others by their mode."""
    if isinstance(model, ProfilesModel):
        return model.apply(con, run_id), model
    return apply_run(con, model, run_id, reads_anew=reads_anew)


def check_strict(table: TableConfig, counts: ModelCounts, options: SyncOptions) -> None:
    if options.strict and counts.quarantined:
        raise StrictModeError(
            f"table `{table.name}`: {counts.quarantined} bad rows and --strict is set, so "
            "nothing was applied; run without --strict to quarantine them, or fix the source",
            table=table.name,
            quarantined=counts.quarantined,
        )


def finish(con: duckdb.DuckDBPyConnection, model: Model, record: RunRecord) -> None:
    """Write catalog, views and the run record: the last steps before commit."""
    table = model.table
    record_in_catalog(
        con,
        CatalogEntry(
            table_name=table.name,
            kind=table.kind,
            id_column=table.id_column,
            group_key=table.group_key,
            stored_as=f"main.{model.relation}" if table.is_history else model.relation,
            properties=model.properties,
            keyed_by=(
                model.moments_read_by if isinstance(model, HistoryModel | EventsModel) else None
            ),
            event_column=table.event_column if table.kind == "events" else None,
        ),
    )
    refresh_views(con)
    record.status = "succeeded"
    record.finished_at = utc_now()
    write_run(con, record)


def record_failure(
    con: duckdb.DuckDBPyConnection,
    record: RunRecord,
    error: BaseException,
    *,
    watermark: str | None = None,
) -> None:
    """Write a `failed` record after the rollback; never hides the original error. A
    failed run moves no watermark: after it, the table stands at `watermark`, the one the
    store holds."""
    record.status = "failed"
    record.finished_at = utc_now()
    record.watermark_after = watermark
    record.inserted = record.updated = record.deleted = 0
    record.quarantined = record.conflicts = 0
    record.entities_changed = 0  # nothing was applied
    record.error = str(error) if isinstance(error, PitsyncError) else describe(error)
    try:
        write_run(con, record)
        if not has_public_views(con):  # a failed run changes no view, but a new store has none
            refresh_views(con)  # so a store whose first run failed still answers queries
    except duckdb.Error as write_error:  # the store refuses writes (a full disk, say)
        log.error(
            "table %s: the failed run could not be recorded in the store either: %s",
            record.table_name,
            why_not_written(write_error),
        )


def as_run_error(table: TableConfig, error: BaseException) -> PitsyncError | None:
    """What the user is told of a failed run: ours as it is, DuckDB's with the table named.

    A source that fails while DuckDB reads its stream reaches us wrapped in DuckDB's
    message; the source's own sentence is taken back out of it.
    """
    if isinstance(error, PitsyncError):
        return error
    if not isinstance(error, duckdb.Error):
        return None  # an interrupt or a bug: let it surface as it is
    message = first_line(error)
    from_stream = STREAM_FAILURE.search(message)
    if from_stream:
        return SourceError(from_stream.group(1), source=table.source)
    message = f"table `{table.name}`: the run failed and nothing was applied: {message}"
    return StoreError(with_memory_advice(message, error))


def describe(error: BaseException) -> str:
    """`Kind: first line` of an error that is not pitsync's own."""
    kind, text = type(error).__name__, first_line(error)
    return kind if text == kind else f"{kind}: {text}"
