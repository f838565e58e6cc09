"""Files of profile update records: JSON lines, or one JSON array; `-` is standard input.

JSON lines stream in Arrow batches of (line, text), each line numbered as it is in the
file, so a bad record is reported by its line. A file whose first character (after
white space) is `[` is one JSON array: DuckDB reads it whole and numbers its records from
1. Standard input is first copied to a temporary file, so both shapes work there too.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pitsync.errors import SourceError
from pitsync.modeling.profile_records import LINES
from pitsync.paths import FILE, FOLDER, MISSING, path_kind, reason
from pitsync.quoting import quote_string

BATCH_BYTES = 32 << 20  # blocks of lines are gathered into batches of this many bytes
# Arrow reads up to 32 blocks ahead of the one handed over, in a thread of its own: small
# blocks keep that to 32 MB. A longer line makes the blocks larger (see `line_batches`).
READ_BYTES = 1 << 20
UNIT_SEPARATOR = "\x1f"  # never raw inside JSON, so every line is one field

# Lines are bytes until DuckDB decodes them, so a line that is not UTF-8 is one bad record.
LINE_SCHEMA = pa.schema([("line", pa.int64()), ("text", pa.binary())])


@contextmanager
def update_file(name: str) -> Iterator[Path]:
    """The path to read: the file itself, or a temporary copy of standard input."""
    if name != "-":
        path = Path(name)
        refuse_unless_file(path, "give a JSON lines file, or - for stdin")
        check_readable(path)
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="pitsync-updates-", suffix=".json") as copy:
        shutil.copyfileobj(sys.stdin.buffer, copy)
        copy.flush()
        try:
            yield Path(copy.name)
        except SourceError as error:
            # The copy is gone when the message is read: it names what the user gave.
            message = str(error).replace(copy.name, "standard input")
            raise SourceError(message, source="-") from error


def refuse_unless_file(path: Path, hint: str) -> None:
    """A one-line refusal of a path that names no file pitsync may read."""
    kind = path_kind(path)
    if kind == FILE:
        return
    what = {FOLDER: "a folder, not a file", MISSING: "no such file"}.get(kind, kind)
    raise SourceError(f"{what}: {path}; {hint}", source=str(path))


def check_readable(path: Path) -> None:
    """Open the file once before the store is, so a refusal is one line and no run."""
    try:
        path.open("rb").close()
    except OSError as error:
        raise SourceError(
            f"cannot read {path}: {reason(error)}; check that it is a file you may read",
            source=str(path),
        ) from error


def is_json_array(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def is_empty(path: Path) -> bool:
    """No bytes at all, or only a UTF-8 byte order mark."""
    with path.open("rb") as file:
        return not file.read(4).removeprefix(b"\xef\xbb\xbf")


def line_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Numbered lines, a block at a time; blank lines keep their numbers and are skipped later.

    Arrow cannot read a line longer than a block. On one, the file is read again in blocks
    four times as large, going on after the last line already given; the larger blocks
    hold for the rest of the file, and so does the read-ahead they make.
    """
    if is_empty(path):
        return  # no lines; Arrow refuses to open an empty file
    block_size = min(READ_BYTES, BATCH_BYTES)
    given = 0  # the last line given so far
    while True:
        skipped: dict[int, str] = {}
        try:
            for batch in gathered(numbered_blocks(path, block_size, skipped)):
                rest = batch.filter(pc.greater(batch.column("line"), given))
                if rest.num_rows:
                    yield rest
                    given = rest.column("line")[-1].as_py()
            break
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error):
                raise unsplittable(path, error) from error
            block_size *= 4
    if skipped:
        lines, texts = zip(*sorted(skipped.items()), strict=True)
        yield pa.record_batch(
            [pa.array(lines, pa.int64()), pa.array(texts, pa.binary())], schema=LINE_SCHEMA
        )


def gathered(blocks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The blocks, put together into batches of at least BATCH_BYTES (but the last)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += block.nbytes
        if held >= BATCH_BYTES:
            yield pa.concat_batches(pending)
            pending, held = [], 0
    if pending:
        yield pa.concat_batches(pending)


def register_block(
    con: duckdb.DuckDBPyConnection, name: str, block: pa.RecordBatch | pa.Table
) -> None:
    """Make `block` readable under `name`, for one scan.

    DuckDB keeps what is registered alive until the transaction ends, unregistered or not:
    in an import, every block of the file. A reader it has read to the end holds nothing,
    so memory stays bounded by a block.
    """
    batches = block.to_batches() if isinstance(block, pa.Table) else [block]
    con.register(name, pa.RecordBatchReader.from_batches(block.schema, iter(batches)))


def unsplittable(path: Path, error: pa.ArrowInvalid) -> SourceError:
    """The one line Arrow cannot hand over: a raw unit separator in text that is not
    UTF-8 (either alone rejects just its line)."""
    row = re.search(r"Row #(\d+)", str(error))
    where = f"line {row.group(1)}" if row else "a line"
    return SourceError(
        f"cannot read {path} as lines: {where} holds a raw 0x1F byte and bytes that are not "
        "UTF-8; nothing was applied; save the file as UTF-8 text",
        source=str(path),
    )


def numbered_blocks(
    path: Path, block_size: int, skipped: dict[int, str]
) -> Iterator[pa.RecordBatch]:
    """The lines of each block of the file, numbered; lines that are not one field go to
    `skipped` instead, by their number."""

    def not_one_field(row: pacsv.InvalidRow) -> str:
        # A raw unit separator splits the line; it is not JSON, and stays a numbered line.
        skipped[row.number] = row.text
        return "skip"

    with undecodable_rows_quiet():  # the first block is read as the file is opened
        reader = open_lines(path, block_size, not_one_field)
    first = 1
    while (batch := next_block(reader)) is not None:
        numbers = numbered(batch, first)
        for line in sorted(line for line in skipped if line >= first):
            if batch.num_rows and line <= numbers[-1].as_py():
                # Lines from a split one on are one further down the file.
                numbers = pc.add(numbers, pc.cast(pc.greater_equal(numbers, line), pa.int64()))
        yield pa.record_batch([numbers, batch.column(0)], schema=LINE_SCHEMA)
        first = numbers[-1].as_py() + 1 if batch.num_rows else first
        while first in skipped:
            first += 1


def open_lines(
    path: Path, block_size: int, not_one_field: Callable[[pacsv.InvalidRow], str]
) -> pacsv.CSVStreamingReader:
    """A reader of the file's lines, each one field of bytes."""
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            # Only a serial read knows the number of a line that is not one field.
            column_names=["text"],
            block_size=block_size,
            use_threads=False,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=UNIT_SEPARATOR,
            quote_char=False,
            escape_char=False,
            ignore_empty_lines=False,
            invalid_row_handler=not_one_field,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"text": pa.binary()}, strings_can_be_null=False
        ),
    )


def next_block(reader: pacsv.CSVStreamingReader) -> pa.RecordBatch | None:
    """The reader's next batch, or None at the end."""
    with undecodable_rows_quiet():
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None


@contextmanager
def undecodable_rows_quiet() -> Iterator[None]:
    """A line that is not UTF-8 and holds a unit separator cannot be handed to the row
    handler: Arrow decodes it first, Python reports that failure as an ignored exception
    on standard error, and the read fails (see `unsplittable`). Only that report is kept
    quiet, and only while a block is read."""
    reported = sys.unraisablehook

    def quiet_on_undecodable(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, UnicodeDecodeError):
            reported(unraisable)

    sys.unraisablehook = quiet_on_undecodable
    try:
        yield
    finally:
        sys.unraisablehook = reported


def numbered(batch: pa.RecordBatch, first: int) -> pa.Array:
    """first, first + 1, ... for each row of the batch, computed in Arrow."""
    ones = pc.if_else(pc.is_valid(batch.column(0)), 1, 1).cast(pa.int64())
    return pc.add(pc.cumulative_sum(ones), first - 1)


def array_records(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """LINES from one JSON array: each element, numbered from 1."""
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {LINES} AS "
            "SELECT generate_subscripts(items, 1) AS line, unnest(items) AS text FROM ("
            # One parse of the whole array, in file order; a byte order mark is no JSON.
            f"SELECT CAST(json_extract(ltrim(content, chr(65279)), '$[*]') AS VARCHAR[]) "
            f"AS items FROM read_text({quote_string(str(path))}))"
        )
    except duckdb.Error as error:
        if "valid UTF-8" in str(error):
            raise SourceError(
                f"{path} is not UTF-8 text, and a JSON array is read whole, so none of it "
                "was applied; save the file as UTF-8"
            ) from error
        raise SourceError(
            f"{path} starts with `[` but is not one JSON array ({str(error).splitlines()[0]}); "
            "write one JSON object a line, or one array of objects"
        ) from error
