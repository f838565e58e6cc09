"""The scheduled sync job: each table runs when its cron schedule says, in one process.

    [tables.company_plan_history]
    schedule = "0 * * * *"      # or "@hourly", "@daily"; a sixth field counts seconds

Runs happen one at a time, so no table ever runs twice at once. After each run a table's
next slot is the first one after the moment the run ended: a scheduler that was busy or
asleep through several slots runs the table once, not once per missed slot. So does one
that was down: at start, a table whose last slot passed with no successful run since
(or that never ran) runs at once. A failing table is recorded (its run record says
why) and the others go on; a run that found the store busy is tried again a minute
later, not a whole period. SIGTERM or Ctrl-C lets the run in progress finish, then the
job exits with status 0; a run still waiting for a busy store gives up and never starts.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from croniter import croniter

from pitsync.config import Config, TableConfig
from pitsync.connectors.runs import DROPPED, RunRecord, next_run_id
from pitsync.connectors.sync import (
    RunOutcome,
    SyncOptions,
    describe,
    record_failure,
    sync_tables,
    watermark_held,
)
from pitsync.errors import PitsyncError
from pitsync.store import RUNS, StoreGivenUp, StoreInUse, open_for_writing, open_read_only

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
Runner = Callable[[TableConfig], RunOutcome]


def utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


BUSY_RETRY = dt.timedelta(minutes=1)  # after a run that found the store busy


def next_slot(schedule: str, after: dt.datetime) -> dt.datetime:
    """The first moment the schedule names strictly after `after`."""
    return croniter(schedule, after).get_next(dt.datetime)


def last_slot(schedule: str, before: dt.datetime) -> dt.datetime:
    """The last moment the schedule names at or before `before`."""
    return croniter(schedule, before + dt.timedelta(microseconds=1)).get_prev(dt.datetime)


@dataclass
class Scheduler:
    """Which table is due next, and the loop that runs them."""

    tables: list[TableConfig]
    run: Runner
    # When each table's last successful run started; a table missing here never ran.
    # None: not known (the store was busy), so every table waits for its next slot.
    last_runs: dict[str, dt.datetime] | None
    clock: Clock = utc_clock
    stopping: threading.Event = field(default_factory=threading.Event)
    due: dict[str, dt.datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = self.clock()
        self.due = {table.name: self.first_due(table, now) for table in self.tables}

    def first_due(self, table: TableConfig, now: dt.datetime) -> dt.datetime:
        """Now, if the table's last slot passed without a successful run; else its next."""
        schedule = table.schedule or ""
        if self.last_runs is None:
            return next_slot(schedule, now)
        last = self.last_runs.get(table.name)
        if last is None or last < last_slot(schedule, now):
            return now
        return next_slot(schedule, now)

    def run_due(self) -> list[RunOutcome]:
        """Run every table whose slot has come, each once; return what happened."""
        outcomes = []
        for table in self.tables:
            if self.stopping.is_set() or self.due[table.name] > self.clock():
                continue
            outcome = self.run_one(table)
            outcomes.append(outcome)
            self.due[table.name] = next_slot(table.schedule or "", self.clock())
            if isinstance(outcome.error, StoreInUse):
                self.due[table.name] = min(self.due[table.name], self.clock() + BUSY_RETRY)
            log.debug("table %s: next run at %s", table.name, self.due[table.name].isoformat())
        return outcomes

    def run_one(self, table: TableConfig) -> RunOutcome:
        """Run the table; whatever its run raises, short of a stop, the others go on."""
        try:
            return self.run(table)
        except Exception as error:  # a fault in pitsync or DuckDB: this table's run only
            log.error("table %s: run failed: %s", table.name, describe(error))
            log.debug("table %s: the failure in full", table.name, exc_info=True)
            return RunOutcome(table.name, error=PitsyncError(describe(error)))

    def seconds_to_next(self) -> float:
        return max(0.0, (min(self.due.values()) - self.clock()).total_seconds())

    def serve(self) -> None:
        """Run tables as they come due until asked to stop (perhaps before the first)."""
        for table in self.tables:
            if not self.stopping.is_set():
                first = self.due[table.name].isoformat()
                log.info("table %s: first run at %s", table.name, first)
        while not self.stopping.is_set():
            self.run_due()
            self.stopping.wait(self.seconds_to_next())
        log.info("stopped")


def stop_on_signals(stopping: threading.Event) -> None:
    """SIGTERM and SIGINT set `stopping`: the loop ends once the run in progress is done.

    Set before the job reads its sources' columns and the store, either of which may
    wait (a locked table, a busy store): a stop asked then is a clean stop too.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping after the current run", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def scheduled_tables(config: Config) -> list[TableConfig]:
    return [table for table in config.tables.values() if table.schedule]


def last_successful_runs(
    config: Config, wait_seconds: float, stopping: threading.Event | None = None
) -> dict[str, dt.datetime] | None:
    """When each table's last successful run started, as the store records it; None if
    the store stayed busy, or the job was asked to stop while it waited. A table dropped
    since its last run holds nothing now: it is left out, so it runs at once."""
    if not config.store_path.is_file():
        return {}
    try:
        con = open_read_only(
            config.store_path, config.memory_limit, wait_seconds, given_up=stopping
        )
    except StoreGivenUp:
        return None  # no table is to run
    except StoreInUse:
        log.warning(
            "the store is busy, so the runs so far are unknown: tables wait for their next slot"
        )
        return None
    except PitsyncError:  # no run finished yet: every table is due
        return {}
    try:
        rows = con.execute(
            f"SELECT table_name, max(started_at) FROM {RUNS} WHERE status = 'succeeded' "
            "GROUP BY table_name HAVING arg_max(mode, run_id) <> ?",
            [DROPPED],
        ).fetchall()
    finally:
        con.close()
    return {str(name): started for name, started in rows}


def sync_runner(config: Config, options: SyncOptions) -> Runner:
    """Run one table as `pitsync sync --table` would; a failure is an outcome, not a crash."""

    def run(table: TableConfig) -> RunOutcome:
        try:
            [outcome] = sync_tables(config, [table], options)
        except PitsyncError as error:  # refused before its run began: record it here
            record_refusal(config, table, error, options)
            outcome = RunOutcome(table.name, error=error)
        if isinstance(outcome.error, StoreGivenUp):
            log.info("table %s: not run, as the job is stopping", table.name)
        elif outcome.error is not None:
            log.error("table %s: run failed: %s", table.name, outcome.error)
        return outcome

    return run


def record_refusal(
    config: Config, table: TableConfig, error: PitsyncError, options: SyncOptions
) -> None:
    """A `failed` run record for a table whose run could not start (a changed source)."""
    try:
        con = open_for_writing(
            config.store_path, config.memory_limit, options.wait_seconds, given_up=options.stop
        )
    except PitsyncError:
        return  # the store itself is out of reach; the log line is all there can be
    try:
        # It read from no watermark; with the views, if this is the store's first run.
        record = RunRecord(run_id=next_run_id(con), table_name=table.name, mode=table.mode)
        record_failure(con, record, error, watermark=watermark_held(con, table))
    finally:
        con.close()
