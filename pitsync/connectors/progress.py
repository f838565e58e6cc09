"""Progress of a run: a live bar on a terminal, a plain log line every ten seconds elsewhere.

The count moves once per Arrow batch as DuckDB pulls it from the source, so following a
run costs one Python call per batch, never one per row. The log lines come from a ticker
thread rather than from the batches: a source slow to send its first batch, or a long
modeling step after the last one, still shows a line every ten seconds, saying what the
run is doing. The ticker ends with the run, before the run's own last line.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pyarrow as pa
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0

READING = "reading the source"
MODELING = "modeling and writing"  # the stream has ended; DuckDB models what it staged


class ReadProgress(AbstractContextManager["ReadProgress"]):
    """Counts the rows of one table's run and shows how it goes, until the run ends."""

    def __init__(
        self, table: str, *, interactive: bool | None = None, log_every: float | None = None
    ):
        self.table = table
        self.rows = 0
        self.step = READING
        self.started = time.monotonic()
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.log_every = LOG_EVERY_SECONDS if log_every is None else log_every
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.ended = threading.Event()
        self.ticker: threading.Thread | None = None

    def __enter__(self) -> ReadProgress:
        if self.interactive:
            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.fields[rows]:,} rows read, {task.fields[rate]:,.0f} rows/s"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.description(), rows=0, rate=0.0)
        else:
            # A daemon, so that a run that never reaches __exit__ cannot keep Python alive.
            self.ticker = threading.Thread(
                target=self.tick, name=f"progress of table {self.table}", daemon=True
            )
            self.ticker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.ended.set()
        if self.ticker is not None:
            self.ticker.join()  # a line being written is finished before the run goes on
        if self.bar is not None:
            self.bar.stop()

    def tick(self) -> None:
        """Log where the run is, every `log_every` seconds until it ends."""
        while not self.ended.wait(self.log_every):
            seconds = time.monotonic() - self.started
            log.info(
                "table %s: %s; %d rows read in %.0fs", self.table, self.step, self.rows, seconds
            )

    def description(self) -> str:
        return f"table {self.table}: {self.step}"

    def now(self, step: str) -> None:
        """The run has come to `step` (what the next log line says it is doing)."""
        self.step = step
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=self.description())

    def track(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """The same stream, counted as it is read."""
        return pa.RecordBatchReader.from_batches(reader.schema, self.counted(reader))

    def counted(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            self.advance(batch.num_rows)
            yield batch
        self.now(MODELING)

    def advance(self, rows: int) -> None:
        self.rows += rows
        if self.bar is not None and self.task is not None:
            rate = self.rows / max(time.monotonic() - self.started, 1e-9)
            self.bar.update(self.task, rows=self.rows, rate=rate)
