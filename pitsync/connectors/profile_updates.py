"""Applying profile updates to the store: one transaction for a whole file or import.

Every producer stages batches of UPDATES and OPERATIONS (see modeling.profile_operators);
this module runs them in one transaction, quarantines the rejected records with their
line numbers, records the run, and rebuilds the public views. Either all the good records
of a file apply, or (on a failure, or with --strict and a bad record) none do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from pitsync.config import PROFILES_TABLE, Config
from pitsync.connectors.runs import (
    RunRecord,
    counted,
    next_run_id,
    transaction_start,
    utc_now,
    write_run,
)
from pitsync.connectors.sync import record_failure
from pitsync.connectors.update_files import (
    array_records,
    is_json_array,
    line_batches,
    register_block,
    update_file,
)
from pitsync.errors import QueryError, StrictModeError
from pitsync.interrupts import held_while_committing, is_interrupt
from pitsync.modeling.attribution import (
    check_group_key_known,
    respell_staged_group_keys,
    spelled_group_key,
)
from pitsync.modeling.hidden_events import refresh_views
from pitsync.modeling.profile_operators import (
    UpdateOutcome,
    apply_updates,
    begin_run,
    count,
    count_profiles,
    refused_table,
    stage_schema,
)
from pitsync.modeling.profile_records import LINES, RECORDS, REJECTED, stage_records
from pitsync.queries.execute import history_id_columns, store_relations, translate
from pitsync.queries.profiles import profiles_sql, with_text_hint
from pitsync.quoting import escaped_bytes_sql, quote_string
from pitsync.store import (
    DEFAULT_WAIT_SECONDS,
    DISTINCT_ID,
    QUARANTINE,
    check_store_exists,
    open_for_writing,
    roll_back,
)

log = logging.getLogger(__name__)

MAX_REJECTIONS_SHOWN = 100


@dataclass
class UpdateReport:
    """What one file or import did: records read, applied and rejected, and the warnings."""

    records: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)
    outcome: UpdateOutcome = field(default_factory=UpdateOutcome)
    run_id: int = 0
    dry_run: bool = False  # the records were checked, and none applied

    def refusals(self) -> list[str]:
        """The records the property limit refused, each by its line (or array record)."""
        return [f"{self.outcome.place} {n}: {m}" for n, m in self.outcome.refused]

    @property
    def refused_for_limit(self) -> int:
        return len(self.outcome.refused)

    def summary(self) -> str:
        o = self.outcome
        rejected = self.rejected + self.refused_for_limit
        if self.dry_run:
            return (
                f"dry run, nothing applied: {self.records - rejected} of "
                f"{counted(self.records, 'record')} would be applied; {rejected} rejected"
            )
        return (
            f"{o.applied} of {counted(self.records, 'record')} applied to "
            f"{counted(o.profiles_changed, 'profile')} ({o.profiles_deleted} deleted); "
            f"{rejected} rejected; {counted(o.warning_count, 'warning')}"
        )


Stager = Callable[[duckdb.DuckDBPyConnection], None]
UNDECODED = "__pitsync_undecoded"  # a batch's lines that are not UTF-8, as their bytes


def apply_file(
    config: Config, name: str, *, strict: bool = False, wait: float = DEFAULT_WAIT_SECONDS
) -> UpdateReport:
    """`pitsync engage FILE`: every record of a JSON lines or JSON array file, in order."""
    with update_file(name) as path:
        array = is_json_array(path)
        batches = record_batches(path, array=array)
        place = "record" if array else "line"
        return run_updates(config, "engage", batches, strict, wait, place=place)


def record_batches(path: Path, *, array: bool) -> Iterator[Stager]:
    """One stager per batch of lines; an `array` file is one batch."""
    if array:
        yield lambda con: array_records(con, path)
        return
    for batch in line_batches(path):
        yield functools.partial(register_lines, batch=batch)


def register_lines(con: duckdb.DuckDBPyConnection, *, batch: pa.RecordBatch) -> None:
    """LINES from a batch of lines. A line that is not UTF-8 has no text there; it is kept
    in UNDECODED, its bytes escaped (`escaped_bytes_sql`), for the quarantine."""
    register_block(con, "__pitsync_line_batch", batch)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {LINES} AS "
        "SELECT line, try(decode(text)) AS text FROM __pitsync_line_batch"
    )
    # Read a second time only when it holds such a line: each reader registered stays
    # with the transaction, and files of UTF-8 are the rule.
    [(undecoded,)] = con.execute(f"SELECT count(*) FROM {LINES} WHERE text IS NULL").fetchall()
    if undecoded:
        register_block(con, "__pitsync_line_batch", batch)
        con.execute(
            f"INSERT INTO {UNDECODED} SELECT line, {escaped_bytes_sql('text')} "
            "FROM __pitsync_line_batch WHERE try(decode(text)) IS NULL"
        )
    con.unregister("__pitsync_line_batch")


def run_updates(
    config: Config,
    mode: str,
    batches: Iterator[Stager],
    strict: bool,
    wait: float,
    stage: Callable[[duckdb.DuckDBPyConnection], None] = stage_records,
    place: str = "line",
) -> UpdateReport:
    """Stage and fold each batch in one transaction; commit it whole, or nothing.
    `place`: what the records' numbers count, lines or the records of a JSON array."""
    con = open_for_writing(config.store_path, config.memory_limit, wait)
    report = UpdateReport(outcome=UpdateOutcome(place=place))
    try:
        report.run_id = next_run_id(con)
        record = RunRecord(run_id=report.run_id, table_name=PROFILES_TABLE, mode=mode)
        con.execute("BEGIN TRANSACTION")
        # An update without a `$time` is seen at the transaction's start (`now()`): the
        # run starts then too, so that `last_seen` can be joined with the run.
        record.started_at = transaction_start(con)
        committed = False
        try:
            begin_run(con)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {UNDECODED} (line BIGINT, text VARCHAR)")
            for stage_lines in batches:
                stage_lines(con)
                apply_batch(con, report, stage)
            count_profiles(con, report.outcome)
            check_strict(report, strict)
            finish(con, report, record)
            with held_while_committing():  # a Ctrl-C now lets the commit finish
                con.execute("COMMIT")
                committed = True
        except BaseException as error:
            if committed:
                raise  # an interrupt just after the commit: the run stands as it is
            roll_back(con)
            record.rows_read = report.records
            interrupted = is_interrupt(error)
            failure = KeyboardInterrupt("interrupted") if interrupted else error
            record_failure(con, record, failure)  # after the rollback, in a transaction of its own
            if interrupted and not isinstance(error, KeyboardInterrupt):
                raise KeyboardInterrupt from None  # DuckDB's wrapping of it, as Python's own
            raise
    finally:
        with held_while_committing():  # closing writes the committed run into the file
            con.close()
    log.debug("profiles: %s", report.summary())  # the command prints it
    return report


def apply_batch(con: duckdb.DuckDBPyConnection, report: UpdateReport, stage: Stager) -> None:
    stage_schema(con)
    stage(con)
    respell_staged_group_keys(con)
    report.records += count(con, RECORDS)  # blank lines are no records
    quarantine_rejected(con, report)
    refused_before = len(report.outcome.refused)
    apply_updates(con, report.outcome)
    quarantine_refused(con, report, report.outcome.refused[refused_before:])


def quarantine_rejected(con: duckdb.DuckDBPyConnection, report: UpdateReport) -> None:
    """Rejected records go to quarantine, each with its line and reason."""
    rejected = count(con, REJECTED)
    if not rejected:
        return
    con.execute(
        f"INSERT INTO {QUARANTINE} SELECT ?, ?, ? || ' ' || line || ': ' || reason, "
        # A line that is not UTF-8 has no text: its bytes read, escaped, stand for it.
        f"coalesce(to_json(r.text), to_json(u.text)) FROM {REJECTED} AS r "
        f"LEFT JOIN {UNDECODED} AS u USING (line)",
        [report.run_id, PROFILES_TABLE, report.outcome.place],
    )
    shown = con.execute(
        f"SELECT line, reason FROM {REJECTED} ORDER BY line LIMIT ?", [MAX_REJECTIONS_SHOWN]
    ).fetchall()
    room = MAX_REJECTIONS_SHOWN - len(report.rejections)
    place = report.outcome.place
    report.rejections.extend(f"{place} {line}: {reason}" for line, reason in shown[: max(room, 0)])
    report.rejected += rejected


def quarantine_refused(
    con: duckdb.DuckDBPyConnection, report: UpdateReport, refused: list[tuple[int, str]]
) -> None:
    """Records refused for the property limit go to quarantine with their text, taken
    while their batch's lines are at hand."""
    if not refused:
        return
    con.register("__pitsync_refused_lines", refused_table(refused))
    con.execute(
        f"INSERT INTO {QUARANTINE} SELECT ?, ?, ? || ' ' || r.line || ': ' || r.reason, "
        f"to_json(l.text) FROM __pitsync_refused_lines AS r JOIN {LINES} AS l USING (line)",
        [report.run_id, PROFILES_TABLE, report.outcome.place],
    )
    con.unregister("__pitsync_refused_lines")


def check_strict(report: UpdateReport, strict: bool) -> None:
    rejected = report.rejected + report.refused_for_limit
    if strict and rejected:
        raise StrictModeError(
            f"{counted(rejected, 'record')} rejected and --strict is set, so nothing was "
            "applied; "
            "first: " + (report.rejections or report.refusals())[0],
            table=PROFILES_TABLE,
            quarantined=rejected,
        )


def finish(con: duckdb.DuckDBPyConnection, report: UpdateReport, record: RunRecord) -> None:
    """Rebuild the views and record the run."""
    refresh_views(con)
    o = report.outcome
    record.rows_read = report.records
    record.inserted = o.applied
    record.updated = o.profiles_changed
    record.deleted = o.profiles_deleted
    record.quarantined = report.rejected + report.refused_for_limit
    record.entities_changed = o.profiles_changed + o.profiles_deleted
    record.status = "succeeded"
    record.finished_at = utc_now()
    write_run(con, record)


def delete_profiles(
    config: Config,
    *,
    ids: list[str] | None = None,
    where: str | None = None,
    group_key: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> UpdateReport:
    """`pitsync delete-profiles`: a `$delete` for each chosen profile; events stay."""
    check_store_exists(config.store_path, "profiles")

    def stage_targets(con: duckdb.DuckDBPyConnection) -> None:
        key = spelled_group_key(con, group_key)
        if key:
            check_group_key_known(con, key)
        targets = chosen_profiles_sql(con, ids, where, key)
        record = (
            f"json_object('$group_key', {quote_string(key)}, '$group_id', id, '$delete', '')"
            if key
            else "json_object('$distinct_id', id, '$delete', '')"
        )
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {LINES} AS SELECT row_number() OVER (ORDER BY id) "
                f"AS line, CAST({record} AS VARCHAR) AS text FROM ({targets})"
            )
        except duckdb.Error as error:
            if is_interrupt(error):
                raise
            # The --where condition's own error.
            raise with_text_hint(QueryError.from_duckdb(error), where) from error

    return run_updates(config, "delete-profiles", iter([stage_targets]), False, wait)


def chosen_profiles_sql(
    con: duckdb.DuckDBPyConnection, ids: list[str] | None, where: str | None, group_key: str | None
) -> str:
    """SELECT DISTINCT id of the profiles to delete: the ids given, or those matching."""
    if ids is not None:
        con.register("__pitsync_chosen_ids", pa.table({"id": pa.array(ids, pa.string())}))
        return "SELECT DISTINCT id FROM __pitsync_chosen_ids"
    sql = profiles_sql(group_key, where, None)
    guarded = translate(
        sql, store_relations(con), history_id_columns(con), store_relations(con, schema="main")
    )
    id_column = "group_id" if group_key else DISTINCT_ID
    return f"SELECT DISTINCT {id_column} AS id FROM ({guarded})"
