"""Ctrl-C during a sync: the run rolls back, in one line, or finishes if it was committing;
during a query: the query stops at once.

A real `pitsync sync` is sent SIGINT at moments spread over its run. Whatever the moment,
no traceback is printed, and what the command says matches the store: exit 130 and the
run rolled back, or, when the Ctrl-C came as it committed, exit 130 and the committed run;
or exit 0 and the committed run, when the Ctrl-C came once the command had ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import adbc_driver_postgresql.dbapi as postgres_adbc
import duckdb
import pyarrow as pa
import pytest

from pitsync import cli
from pitsync.connectors.databases import keeping_ctrl_c
from pitsync.interrupts import (
    HELD,
    held_while_committing,
    is_interrupt,
    raise_held_interrupt,
    stopped_by_ctrl_c,
)
from tests.conftest import (
    Project,
    company_history,
    configure_companies,
    configure_company_history,
    stopped_by,
)

ROWS = 1_500_000


def large_history(project: Project) -> None:
    project.source_sql(
        "CREATE TABLE company_plan_history AS SELECT 'c' || (range % 100000) AS company_id, "
        "'plan' || (range % 7) AS plan, CAST(range % 50 AS INTEGER) AS seats, "
        "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_minutes(range) AS start_timestamp, "
        f"CAST(NULL AS TIMESTAMPTZ) AS updated_at FROM range({ROWS})"
    )
    configure_company_history(project)


def interrupted_sync(project: Project, delay: float) -> subprocess.CompletedProcess[str]:
    """`pitsync sync` sent SIGINT `delay` seconds after it created the store."""
    command = [sys.executable, "-m", "pitsync", "--config", str(project.config_path)]
    process = subprocess.Popen(
        [*command, "sync", "--all"], cwd=project.root, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not project.store.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


def stored_rows(project: Project, relation: str, select: str) -> list[tuple]:
    """`select` from a relation of the store; nothing if the run stopped before making it."""
    con = duckdb.connect(str(project.store), read_only=True)
    try:
        schema, _, name = relation.partition(".")
        made = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
            [schema, name.strip('"')],
        ).fetchone()
        return con.execute(f"{select} FROM {relation}").fetchall() if made and made[0] else []
    finally:
        con.close()


def committed_rows(project: Project) -> int:
    rows = stored_rows(project, '_pitsync."intervals__company_plan_history"', "SELECT count(*)")
    return rows[0][0] if rows else 0


def run_statuses(project: Project) -> list[str]:
    """The recorded runs' statuses; none if the interrupt came before the store was made."""
    return [row[0] for row in stored_rows(project, "_pitsync.runs", "SELECT status")]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.6, 1.0, 1.4, 1.8, 2.0, 2.2])
def test_ctrl_c_during_a_csv_import_is_one_line_and_keeps_all_or_nothing(
    tmp_path, delay: float
) -> None:
    # 300k rows: the import takes a few seconds, its batches of rows registered in turn.
    rows = 300_000
    (tmp_path / "pitsync.toml").write_text('[store]\npath = "store.duckdb"\n')
    duckdb.sql(
        f"COPY (SELECT 'u' || range, range, 'plan' || (range % 7) FROM range({rows})) "
        f"TO '{tmp_path / 'people.csv'}' (HEADER false)"
    )
    command = [sys.executable, "-m", "pitsync", "import-csv", "people.csv"]
    command += ["--id-column", "1", "--column", "2=n", "--column", "3=plan"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    # Once the import has printed its report, it is done, and a Ctrl-C as Python shuts
    # down ends it as Python does (the README's limits say so). Before that, Ctrl-C is one
    # line and exit 130, or, while it commits, lets the commit finish.
    if f"{rows} of {rows} records applied" not in stdout:
        assert "Traceback" not in stderr
        assert process.returncode in (0, 130), stderr
    # The import is whole or absent, as its run record says.
    profiles, statuses = 0, []
    store = tmp_path / "store.duckdb"
    if store.exists():
        con = duckdb.connect(str(store), read_only=True)
        try:
            # Ctrl-C as the store is first made may leave it without its tables yet.
            tables = internal_tables(con)
            if "profiles" in tables:
                [(profiles,)] = con.execute("SELECT count(*) FROM _pitsync.profiles").fetchall()
            if "runs" in tables:
                statuses = [
                    row[0] for row in con.execute("SELECT status FROM _pitsync.runs").fetchall()
                ]
        finally:
            con.close()
    assert profiles in (0, rows)
    assert (profiles == rows) == ("succeeded" in statuses)


def internal_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = '_pitsync'"
    ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.2, 0.4])
def test_ctrl_c_rolls_the_run_back_in_one_line_or_lets_a_commit_finish(
    project: Project, delay: float
) -> None:
    large_history(project)

    result = interrupted_sync(project, delay)

    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 130), result.stderr
    # The run is whole or absent, as its record says: an interrupt while it committed
    # (or after) lets it finish.
    rows = committed_rows(project)
    assert rows in (0, ROWS)
    assert (rows == ROWS) == ("succeeded" in run_statuses(project))
    # What the command says is what happened to the run.
    if result.returncode == 130 and rows == ROWS:
        assert "interrupted as a run committed: that run stays committed" in result.stderr
    elif result.returncode == 130:
        assert "interrupted; nothing in progress was kept" in result.stderr


# The command, with a Ctrl-C sent to itself as the run's transaction commits.
CTRL_C_AS_IT_COMMITS = """
import os, signal, sys
from pitsync import cli
from pitsync.connectors import sync

def end_run(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return committing(*args, **kwargs)

committing, sync.end_run = sync.end_run, end_run
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ctrl_c_as_the_last_run_commits_lets_it_commit_and_exits_130(
    project: Project,
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])

    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_AS_IT_COMMITS, "--config", str(project.config_path),
         "sync", "--all"],
        cwd=project.root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    # As a Ctrl-C between two tables' runs: the run stands, the command was interrupted.
    assert result.returncode == 130, result.stderr
    assert "interrupted as a run committed: that run stays committed" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_statuses(project) == ["succeeded"] and committed_rows(project) == 1


def test_ctrl_c_stops_a_query_inside_a_long_join(project: Project) -> None:
    # Every row joins every row three times over: some 8e12 rows to count, a join that
    # DuckDB works through without looking for signals.
    project.source_sql(
        "CREATE TABLE company_plan_history AS SELECT 'c' || range AS company_id, "
        "'pro' AS plan, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS start_timestamp, "
        "CAST(NULL AS TIMESTAMPTZ) AS updated_at FROM range(20000)"
    )
    configure_company_history(project)
    project.sync("company_plan_history")
    endless = (
        "SELECT count(*) FROM company_plan_history AS a JOIN company_plan_history AS b "
        "ON a.plan = b.plan JOIN company_plan_history AS c ON b.plan = c.plan"
    )
    command = [sys.executable, "-m", "pitsync", "--config", str(project.config_path)]
    process = subprocess.Popen(
        [*command, "query", endless], cwd=project.root, stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)  # well into the join: loading and planning take under a second

    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the query went on after Ctrl-C")

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    # A query records no run: nothing to say of runs rolled back or kept.
    assert stderr == "pitsync: interrupted\n"


def test_signals_noted_during_a_query_still_reach_the_file_noting_them_before() -> None:
    # An event loop notes its signals in a file of its own; a query in between must not
    # swallow them.
    noted, notes = os.pipe()
    os.set_blocking(notes, False)
    handler = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    earlier = signal.set_wakeup_fd(notes)
    try:
        with stopped_by_ctrl_c(duckdb.connect()):
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
    finally:
        signal.set_wakeup_fd(earlier)
        signal.signal(signal.SIGUSR1, handler)

    assert os.read(noted, 64) == bytes([signal.SIGUSR1])
    os.close(noted)
    os.close(notes)


def test_ctrl_c_as_the_watcher_starts_leaves_no_thread_holding_the_process() -> None:
    # Ctrl-C lands just after the watcher thread started, before the block was entered:
    # nothing will tell the watcher to end, and the process must exit all the same.
    code = (
        "import threading, duckdb\n"
        "from pitsync.interrupts import stopped_by_ctrl_c\n"
        "start = threading.Thread.start\n"
        "def start_then_ctrl_c(thread):\n"
        "    start(thread)\n"
        "    raise KeyboardInterrupt\n"
        "threading.Thread.start = start_then_ctrl_c\n"
        "try:\n"
        "    with stopped_by_ctrl_c(duckdb.connect()):\n"
        "        pass\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert (result.returncode, result.stdout) == (0, "interrupted\n"), result.stderr


def started_with_ctrl_c_at_duckdb(
    interrupt: str, module: str = "duckdb"
) -> subprocess.CompletedProcess[str]:
    """`pitsync query` started through its entry point, with `interrupt` (Python source)
    run where `module` (DuckDB's) would be imported."""
    body = "".join(f"            {line}\n" for line in interrupt.splitlines())
    code = (
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        f"{body}"
        "sys.meta_path.insert(0, CtrlC())\n"
        "from pitsync.__main__ import main\n"
        "sys.exit(main())\n"
    )
    command = [sys.executable, "-c", code, "query", "SELECT 1"]
    return subprocess.run(command, capture_output=True, text=True)


def test_ctrl_c_reported_by_an_extension_as_it_loads_is_one_line_too() -> None:
    # DuckDB's extension module turns a Ctrl-C during its loading into an ImportError.
    result = started_with_ctrl_c_at_duckdb(
        "try:\n"
        "    raise KeyboardInterrupt\n"
        "except KeyboardInterrupt as error:\n"
        "    raise ImportError('initializing the extension failed') from error\n"
    )

    assert result.returncode == 130
    assert result.stderr == "pitsync: interrupted while starting; nothing was done\n"


def test_ctrl_c_while_the_command_loads_is_one_line() -> None:
    # Ctrl-C lands while DuckDB's module is being imported: raised at that import here,
    # so that the moment is not left to chance.
    result = started_with_ctrl_c_at_duckdb("raise KeyboardInterrupt\n")

    assert result.returncode == 130
    assert result.stderr == "pitsync: interrupted while starting; nothing was done\n"


@pytest.mark.parametrize(
    "interrupt",
    [
        "raise KeyboardInterrupt\n",
        "try:\n"
        "    raise KeyboardInterrupt\n"
        "except KeyboardInterrupt as error:\n"
        "    raise ImportError('initializing the extension failed') from error\n",
    ],
)
def test_ctrl_c_while_the_commands_own_module_loads_is_one_line(interrupt: str) -> None:
    # The query command's module loads once the command line is read.
    result = started_with_ctrl_c_at_duckdb(interrupt, module="pitsync.commands.reading")

    assert result.returncode == 130
    assert result.stderr == "pitsync: interrupted while starting; nothing was done\n"


def test_duckdb_reports_of_ctrl_c_are_known_as_interrupts() -> None:
    def stream():
        yield pa.record_batch([pa.array([1])], names=["a"])
        raise KeyboardInterrupt

    con = duckdb.connect()
    con.register(
        "rows", pa.RecordBatchReader.from_batches(pa.schema([("a", pa.int64())]), stream())
    )
    with pytest.raises(duckdb.Error) as raised:
        con.execute("CREATE TABLE t AS SELECT * FROM rows")

    assert is_interrupt(raised.value)
    # As DuckDB words it when reading a stream through a replacement scan.
    wrapped = "exporting a stream from the object registered as 'cells' failed: KeyboardInterrupt:"
    assert is_interrupt(duckdb.InvalidInputException(f"Invalid Input Error: {wrapped}"))
    assert is_interrupt(RuntimeError("Query interrupted"))
    assert not is_interrupt(RuntimeError("Out of Memory Error"))


def test_ctrl_c_while_committing_is_held_until_the_commit_is_done() -> None:
    finished = []
    with held_while_committing():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal is delivered here, and held
        finished.append("commit")

    assert finished == ["commit"] and HELD.is_set()
    with pytest.raises(KeyboardInterrupt):
        raise_held_interrupt()
    assert not HELD.is_set()


class StatementOnHold:
    """A driver cursor whose statement runs until cancelled; a second Ctrl-C comes while
    it is being cancelled."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def execute(self) -> str:
        self.started.set()
        self.cancelled.wait(timeout=30)
        return "cancelled" if self.cancelled.is_set() else "ran on"

    def adbc_cancel(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the second signal is delivered here
        self.cancelled.set()


def test_a_second_ctrl_c_does_not_keep_a_source_statement_from_being_cancelled() -> None:
    # Cut short, the cancel left the query running on the server after pitsync exited.
    cursor = StatementOnHold()

    def first_ctrl_c() -> None:
        cursor.started.wait(30)
        time.sleep(0.2)  # the statement runs, and the command waits for it
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=first_ctrl_c, daemon=True).start()

    with pytest.raises(KeyboardInterrupt):
        keeping_ctrl_c(cursor, cursor.execute)

    assert cursor.cancelled.is_set()


def test_ctrl_c_while_the_command_line_is_read_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # On a busy machine Ctrl-C can land while the parser is still being built.
    def interrupted_parser() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted_parser)

    status = cli.main(["runs"])

    assert status == 130
    assert capsys.readouterr().err.startswith("pitsync: interrupted;")


def waiting_in_postgres(project: Project, wait: str, timeout: float = 30) -> None:
    """Until a session reading the project's PostgreSQL schema waits on `wait` (a wait
    event type or name: `PgSleep`, `Lock`); other tests' sessions may wait too."""
    assert project.postgres is not None
    seen = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        f"AND '{wait}' IN (wait_event, wait_event_type) AND pid <> pg_backend_pid() "
        f"AND strpos(query, '{project.postgres.name}') > 0"
    )
    deadline = time.monotonic() + timeout
    while project.postgres.execute(seen) == [(0,)]:
        assert time.monotonic() < deadline, f"no session came to wait on {wait}"
        time.sleep(0.05)


def sync_started(project: Project) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "pitsync", "--config", str(project.config_path)]
    return subprocess.Popen(
        [*command, "sync", "--all"], cwd=project.root, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.backends("postgres")
@pytest.mark.parametrize("wait", ["PgSleep", "Lock"])
def test_ctrl_c_while_postgres_works_on_a_read_stops_the_command(
    project: Project, wait: str
) -> None:
    # The driver would take SIGINT for itself while PostgreSQL works: it cancelled the
    # statement, the table failed as if its source had, and the next table was synced.
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.database_sql(
        "CREATE VIEW slow AS SELECT h.* FROM company_plan_history AS h "
        "CROSS JOIN (SELECT pg_sleep(60)) AS s"
    )
    # The slow table is synced first; its users are the companies, to own no property
    # of the company history's.
    project.tables = {}
    project.configure(
        "slow", kind="user_history", id_column="company_id", start_time="start_timestamp"
    )
    configure_company_history(project)
    assert project.postgres is not None
    with postgres_adbc.connect(project.postgres.uri) as locker, locker.cursor() as cursor:
        if wait == "Lock":  # the slow table's columns are read while another holds it
            cursor.execute(f'LOCK TABLE "{project.postgres.name}".company_plan_history')
        job = sync_started(project)
        waiting_in_postgres(project, wait)
        stderr = stopped_by(job, signal.SIGINT)
        locker.rollback()

    assert job.returncode == 130, stderr
    assert "interrupted; nothing in progress was kept" in stderr and "Traceback" not in stderr
    # Columns are read before the store is opened: a stop there leaves no store at all.
    assert not project.store.exists() or "succeeded" not in run_statuses(project)


@pytest.mark.backends("postgres")
def test_ctrl_c_while_postgres_sends_rows_slowly_stops_the_read(project: Project) -> None:
    # 12,000 rows, one every 5 ms: a minute before the driver hands over its first batch.
    # Ctrl-C waited for it; the read is now cancelled at once.
    project.database_sql(
        "CREATE TABLE plans AS SELECT 'c' || (i % 50) AS company_id, "
        "timestamptz '2024-01-01' + i * interval '1 hour' AS start_ts, 't' || (i % 3) AS tier "
        "FROM generate_series(1, 12000) AS i",
        "CREATE VIEW drip AS SELECT h.company_id, h.start_ts, h.tier, "
        "pg_sleep(0.005 + 0 * length(h.tier))::text AS z FROM plans AS h",
    )
    configure_companies(project, "drip", "start_ts")
    job = sync_started(project)
    waiting_in_postgres(project, "PgSleep")
    time.sleep(3)  # the rows flow, into a batch not yet full
    stderr = stopped_by(job, signal.SIGINT)

    assert job.returncode == 130, stderr
    assert "interrupted; nothing in progress was kept" in stderr and "Traceback" not in stderr
    assert "succeeded" not in run_statuses(project)
