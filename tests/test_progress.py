"""A run is followed as it goes: plain log lines at an interval when not on a terminal."""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from pitsync.cli import configure_logging
from pitsync.connectors import progress
from pitsync.connectors.progress import ReadProgress
from tests.conftest import Project, company_history

LINE = re.compile(r"table (\w+): ([^;]+); (\d+) rows read in \d+s")


def progress_lines(messages: list[str]) -> list[tuple[str, int]]:
    """(what the run was doing, rows read so far) of each plain progress line."""
    return [(m.group(2), int(m.group(3))) for m in map(LINE.fullmatch, messages) if m]


def tickers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("progress")]


def test_a_line_comes_every_interval_while_a_slow_source_is_read_and_rows_are_modeled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = [pa.record_batch({"n": list(range(size))}) for size in (3, 4)]

    def slow_source() -> Iterator[pa.RecordBatch]:
        time.sleep(0.5)  # the first batch is slow to come
        yield from batches

    reader = pa.RecordBatchReader.from_batches(batches[0].schema, slow_source())
    with (
        caplog.at_level(logging.INFO, logger="pitsync"),
        ReadProgress("plans", interactive=False, log_every=0.1) as following,
    ):
        table = following.track(reader).read_all()
        time.sleep(0.5)  # the modeling after the last batch
    lines = progress_lines(caplog.messages)
    time.sleep(0.3)

    assert table.num_rows == 7  # every row passes through unchanged
    # About five lines while nothing came, and five while modeling the 3 + 4 rows.
    assert lines.count(("reading the source", 0)) >= 2, caplog.messages
    assert lines.count(("modeling and writing", 7)) >= 2, caplog.messages
    assert set(lines) == {("reading the source", 0), ("modeling and writing", 7)}
    # Nothing after the run ended, and no thread left behind.
    assert progress_lines(caplog.messages) == lines
    assert tickers() == []


def test_the_progress_lines_of_a_sync_end_before_its_summary_line(
    project: Project, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.001)

    with caplog.at_level(logging.INFO, logger="pitsync"):
        project.sync("company_plan_history")
        time.sleep(0.2)

    assert progress_lines(caplog.messages), caplog.messages
    assert caplog.messages[-1].startswith("table company_plan_history: 1 rows read, 1 inserted")
    assert tickers() == []


def test_log_lines_go_to_standard_error_as_it_is_when_they_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A live progress bar swaps in a stream of its own, which prints lines above the bar;
    # a line written to the stream the handler first saw would cut across the bar.
    logger = logging.getLogger("pitsync")
    for attribute in ("handlers", "propagate", "level"):  # as other tests expect them
        monkeypatch.setattr(logger, attribute, getattr(logger, attribute))
    monkeypatch.setattr(logger, "handlers", [])
    configure_logging(verbose=False)
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)

    logging.getLogger("pitsync.connectors.sync").warning("table plans: a conflict")

    assert swapped.getvalue() == "pitsync: WARNING: table plans: a conflict\n"
