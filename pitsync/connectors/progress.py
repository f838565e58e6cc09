"""Progress of a run's read: a live bar on a terminal, a plain log line now and then elsewhere.

The count moves once per Arrow batch as DuckDB pulls it from the source, so following a
run costs one Python call per batch, never one per row.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pyarrow as pa
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0


class ReadProgress(AbstractContextManager["ReadProgress"]):
    """Counts the rows of one table's read and shows how it goes."""

    def __init__(self, table: str, *, interactive: bool | None = None):
        self.table = table
        self.rows = 0
        self.started = time.monotonic()
        self.last_logged = self.started
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar: Progress | None = None
        self.task: TaskID | None = None

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
            self.task = self.bar.add_task(f"table {self.table}", rows=0, rate=0.0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def track(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """The same stream, counted as it is read."""
        return pa.RecordBatchReader.from_batches(reader.schema, self.counted(reader))

    def counted(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            self.advance(batch.num_rows)
            yield batch

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        rate = self.rows / max(now - self.started, 1e-9)
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, rows=self.rows, rate=rate)
        elif now - self.last_logged >= LOG_EVERY_SECONDS:
            self.last_logged = now
            log.info("table %s: %d rows read so far (%.0f rows/s)", self.table, self.rows, rate)
