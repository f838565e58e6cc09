"""Room to read deeply nested SQL.

sqlglot reads and writes SQL by recursion, some twenty Python frames a level of nesting,
some of them through C. Python's default limit stops it at about forty levels, which
generated SQL passes, and a higher limit alone would let the C stack of the main thread
overflow (a crash, not an error). So SQL is read in a thread of its own, whose stack is
large, under a raised recursion limit: room for DuckDB's own limit of 1000 levels of
expressions. SQL nested deeper still is refused in words.

Every reading runs so, shallow SQL too: a reading on another thread, outside the count of
readers, could be deeper than the default limit when the last reader puts it back, and
Python aborts a thread found that far past its limit. The limit is the interpreter's,
not the thread's: while SQL is read, another thread of a program using pitsync as a
library that recursed as deep through C could overflow its own stack.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pitsync.errors import QueryRefused

RECURSION_LIMIT = 50_000
# Address space reserved for the thread; memory is taken only as deep as the SQL goes.
STACK_BYTES = 256 * 1024 * 1024

Result = TypeVar("Result")


class SharedRecursionLimit:
    """The interpreter's recursion limit, raised while any thread reads SQL and put back
    when the last one is done: each putting back its own saved value would leave it
    raised, or lower it under another thread's feet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.readers = 0
        self.before = self.during = sys.getrecursionlimit()

    @contextmanager
    def raised(self) -> Iterator[None]:
        with self.lock:
            if self.readers == 0:
                self.before = sys.getrecursionlimit()
                self.during = max(self.before, RECURSION_LIMIT)
                sys.setrecursionlimit(self.during)
            self.readers += 1
        try:
            yield
        finally:
            with self.lock:
                self.readers -= 1
                # A limit someone else set meanwhile is theirs to keep.
                if self.readers == 0 and sys.getrecursionlimit() == self.during:
                    sys.setrecursionlimit(self.before)


RECURSION = SharedRecursionLimit()
# Another thread started meanwhile would take the large stack size too.
STACK_SIZE_LOCK = threading.Lock()


def with_room_to_nest(sql: str, work: Callable[[], Result]) -> Result:
    """`work()`, the reading or writing of `sql`, in a thread of a large stack, under the
    raised recursion limit."""
    results: list[Result] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as error:  # handed to the caller's thread, raised there
            failures.append(error)

    with RECURSION.raised():
        thread = started_with_large_stack(run)
        thread.join()
    if failures:
        if isinstance(failures[0], RecursionError):
            raise too_deep(sql) from None
        raise failures[0]
    return results[0]


def started_with_large_stack(target: Callable[[], None]) -> threading.Thread:
    with STACK_SIZE_LOCK:
        before = threading.stack_size(STACK_BYTES)
        try:
            # A daemon: Ctrl-C stops the command while the thread finishes its reading.
            thread = threading.Thread(target=target, name="pitsync-sql", daemon=True)
            thread.start()
        finally:
            threading.stack_size(before)
    return thread


def too_deep(sql: str) -> QueryRefused:
    return QueryRefused(
        "the SQL nests too deeply to be read (parentheses, subqueries or calls inside each "
        "other, past a thousand levels); nest it less",
        sql=sql,
    )
