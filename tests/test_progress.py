"""A run's read is followed batch by batch: plain log lines when not on a terminal."""

from __future__ import annotations

import io
import logging
import sys

import pyarrow as pa
import pytest

from pitsync.cli import configure_logging
from pitsync.connectors import progress
from pitsync.connectors.progress import ReadProgress


def test_plain_progress_lines_count_the_rows_as_they_are_read(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)
    batches = [pa.record_batch({"n": list(range(size))}) for size in (3, 4, 5)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))

    with (
        caplog.at_level(logging.INFO, logger="pitsync"),
        ReadProgress("plans", interactive=False) as following,
    ):
        table = following.track(reader).read_all()

    assert table.num_rows == 12  # every row passes through unchanged
    counts = [message.split(": ")[1].split(" rows")[0] for message in caplog.messages]
    assert counts == ["3", "7", "12"]


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
