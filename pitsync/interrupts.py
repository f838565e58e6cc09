"""Ctrl-C during a run: the run rolls back, unless it was committing, which it finishes.

An interrupt reaches pitsync in three forms: Python's KeyboardInterrupt, DuckDB's
"Query interrupted" from a statement it stopped, and DuckDB's failure to read a source
stream whose reader was interrupted. `is_interrupt` knows all three.

A commit is whole or not at all, but an interrupt in its middle would leave the user
unsure which: `held_while_committing` holds SIGINT until the commit (and the closing
of the store) is done, then passes it on: to the handler that was there (the scheduled
job's, which stops after the run), or, for the default one, as a mark that
`raise_held_interrupt` turns into a KeyboardInterrupt before the next table's run.

A query is different: nothing of it needs to finish, so `stopped_by_ctrl_c` makes Ctrl-C
stop its statement at once. DuckDB looks for Python's signals only between the pieces
of work it schedules, and one piece (a join whose output grows large, say) may run for
minutes; `connection.interrupt()` is seen inside it. A run's read of a database is
stopped at once too (`on_ctrl_c`): the driver may wait minutes on rows coming slowly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import duckdb

HELD = threading.Event()  # SIGINT arrived while a run committed


def is_interrupt(error: BaseException) -> bool:
    """Whether `error` is Ctrl-C, as Python or DuckDB reports it."""
    if isinstance(error, KeyboardInterrupt | duckdb.InterruptException):
        return True
    # DuckDB reading a Python stream ends its message in the stream's error, with or
    # without a colon after it: `... failed: KeyboardInterrupt:`.
    text = str(error).rstrip().removesuffix(":")
    return "Query interrupted" in text or text.endswith("KeyboardInterrupt")


@contextmanager
def held_while_committing() -> Iterator[None]:
    """Hold SIGINT during the block; afterwards pass it on (see the module's description)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if not received or previous is signal.SIG_IGN:
        return
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signal.SIGINT, None)
    else:
        HELD.set()


@contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Within the block, Ctrl-C does nothing: the interrupt being handled stops the
    command already, and a second one must not cut its clean-up short."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C that came as a run committed: that run stands, and nothing after it ran."""


def raise_held_interrupt() -> None:
    """Raise the KeyboardInterrupt that arrived while the last run committed, if any."""
    if HELD.is_set():
        HELD.clear()
        raise InterruptedAfterCommit


def stopped_by_ctrl_c(
    connection: duckdb.DuckDBPyConnection,
) -> contextlib.AbstractContextManager[None]:
    """Within the block, Ctrl-C also interrupts the connection's running statement."""
    return on_ctrl_c(connection.interrupt)


@contextmanager
def on_ctrl_c(stop: Callable[[], object]) -> Iterator[None]:
    """Within the block, each Ctrl-C also calls `stop` at once, from another thread.

    Python notes a signal in a file as it arrives, even while DuckDB or a database
    driver holds the main thread (`signal.set_wakeup_fd`); a watcher thread waiting on
    that file calls `stop`. The KeyboardInterrupt is raised as usual once the main
    thread runs Python again.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    wakeups, notes = os.pipe()
    os.set_blocking(notes, False)
    previous = signal.set_wakeup_fd(notes, warn_on_full_buffer=False)
    # A daemon: should a Ctrl-C land between these steps, and the watcher never hear it
    # should end, the process still exits.
    watcher = threading.Thread(target=stop_on_sigint, args=(wakeups, stop, previous), daemon=True)
    try:
        watcher.start()
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.write(notes, bytes([0]))  # no signal has the number 0: it tells the watcher to end
        if watcher.is_alive():
            watcher.join()
        os.close(wakeups)
        os.close(notes)


def stop_on_sigint(wakeups: int, stop: Callable[[], object], previous: int) -> None:
    """Call `stop` at each SIGINT noted in `wakeups`, until a 0 is read.

    Every signal noted is passed on to the file that was noting them before (an event
    loop's, say), so that its owner still learns of it.
    """
    while True:
        numbers = os.read(wakeups, 64)
        signals = numbers.split(bytes([0]))[0]
        if signals and previous != -1:
            with contextlib.suppress(OSError):  # a full or closed file: as Python itself does
                os.write(previous, signals)
        if signal.SIGINT in signals:
            stop()
        if len(signals) < len(numbers):
            return
