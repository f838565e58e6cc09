"""Ctrl-C during a run: the run rolls back, unless it was committing, which it finishes.

An interrupt reaches pitsync in three forms: Python's KeyboardInterrupt, DuckDB's
"Query interrupted" from a statement it stopped, and DuckDB's failure to read a source
stream whose reader was interrupted. `is_interrupt` knows all three.

A commit is whole or not at all, but an interrupt in its middle would leave the user
unsure which: `held_while_committing` holds SIGINT until the commit (and the closing
of the store) is done, then passes it on: to the handler that was there (the scheduled
job's, which stops after the run), or, for the default one, as a mark that
`raise_held_interrupt` turns into a KeyboardInterrupt before the next table's run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = threading.Event()  # SIGINT arrived while a run committed


def is_interrupt(error: BaseException) -> bool:
    """Whether `error` is Ctrl-C, as Python or DuckDB reports it."""
    if isinstance(error, KeyboardInterrupt):
        return True
    text = str(error).rstrip()
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


def raise_held_interrupt() -> None:
    """Raise the KeyboardInterrupt that arrived while the last run committed, if any."""
    if HELD.is_set():
        HELD.clear()
        raise KeyboardInterrupt
