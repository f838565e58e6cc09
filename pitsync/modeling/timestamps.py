"""Turn a source column into an instant: UTC, microseconds (DESIGN rule 6).

- a timestamp with a zone keeps its instant;
- a naive timestamp is read in the table's `timezone` (default UTC);
- a DATE is the start of that day in that zone;
- an integer epoch needs `time_unit` (s, ms, us); with `time_unit`, text is read as
  such an epoch too (SQLite keeps epochs in columns it declares TIMESTAMP);
- other text is parsed: with an offset it is that instant, without one it is naive;
- nanoseconds are truncated, never rounded, so 23:59:59.9999999 stays in its second.

The result is a DuckDB SQL expression yielding TIMESTAMPTZ, or NULL for a value that
cannot be read (the caller quarantines those rows). Any other type is a configuration
error, raised before data moves.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import zoneinfo
from pathlib import Path

import duckdb
import pyarrow as pa

from pitsync.errors import ConfigError
from pitsync.quoting import quote_string

# Epochs beyond these magnitudes do not fit DuckDB's timestamp range (about year 290,000).
EPOCH_LIMITS = {
    "s": 9_000_000_000_000,
    "ms": 9_000_000_000_000_000,
    "us": 9_000_000_000_000_000_000,
}
MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
# Field metadata a source sets on a column it reads as the text of values of another type
# (a uuid), naming that type: the text is no time's, so the column is no time column.
TEXT_OF = b"pitsync.text_of"

# Text that names its zone: a time of day followed by `Z` or an offset of at most 14
# hours (`+01`, `-05:00`; no zone is further from UTC than +14:00), or a date or time
# followed by a name (` UTC`, ` America/New_York`, ` UTC-05:00`).
OFFSET = r"[+-]((0?\d|1[0-3])(:?[0-5]\d){0,2}|14(:?00){0,2})"
ZONED_PATTERN = (
    rf".*\d:\d{{1,2}}(:\d{{1,2}}(\.\d*)?)?\s*([zZ]|{OFFSET})"
    r"|.*\d\s*[A-Za-z]{2}[\w/+:.-]*(\s*[+-][0-9:]+)?"  # two letters: `T9:00` is no zone
)
# Naive text: a date, and maybe a time of day, nothing after it: DuckDB's TIMESTAMP cast
# would drop an offset it cannot read (`-16:00`).
NAIVE_PATTERN = r"\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]+\d{1,2}(:\d{1,2}){0,2}(\.\d*)?)?"
# Text times begin with a year of four digits: DuckDB reads `99-01-05` as the year 99.
YEAR_FIRST = r"\d{4}[-/].*"
# How the cast wants a zone written after the time, each rewritten in turn: `UTC+5:30` or
# `GMT-0530` as a bare offset (DuckDB drops the minutes after `UTC`, and reads a one-digit
# hour only there), and `Z` after a blank or in lower case as `+00`.
OFFSET_SPELLINGS = (
    (r"(\d)\s*(?i:utc|gmt)\s*([+-])(\d)((:?\d{2}){0,2})$", r"\g<1>\g<2>0\g<3>\g<4>"),
    (r"(\d)\s*(?i:utc|gmt)\s*([+-]\d{2}(:?\d{2}){0,2})$", r"\g<1>\g<2>"),
    (r"(\d)\s*[zZ]$", r"\g<1>+00"),
)
# A zone abbreviation after the time (`BST`, `pst`, `Ist`): each names several zones, and
# DuckDB reads it, in any case, as one of them, often not the one meant. A short name the
# zone database knows (`UTC`, `EST`, `Japan`) names one zone, and is read as that zone.
ABBREVIATION_PATTERN = r"(?i).*(^|[^a-z])\d+(\.\d*)?\s*[a-z]{2,5}"
TRAILING_WORD = "[A-Za-z]+$"
# Zone names that are also abbreviations of one offset all year, and read as such by
# PostgreSQL's AT TIME ZONE, while the zone database (and DuckDB) gives them summer time:
# in summer the two readings are an hour apart. Each is refused as a zone, with a region's
# name to give instead.
OFFSET_ABBREVIATION_ZONES = {
    "cet": "Europe/Paris",
    "met": "Europe/Paris",
    "eet": "Europe/Athens",
    "wet": "Europe/Lisbon",
}
KNOWN_SHORT_ZONES = (
    frozenset(
        name.lower()
        for name in zoneinfo.available_timezones()
        if re.fullmatch("[A-Za-z]{2,5}", name)
    )
    - OFFSET_ABBREVIATION_ZONES.keys()
)
# Blanks a text time may carry at either end: spaces, tabs, line ends.
BLANKS = "' ' || chr(9) || chr(10) || chr(13)"
# `2024-01-01 00:00:00 +01:00`: the cast wants the offset written against the time.
SPACE_BEFORE_OFFSET = r"(\d)\s+([+-]\d{2}(:?\d{2})?)$"


def beyond_moments_sql(instant: str) -> str:
    """True for a time outside years 1 to 9999, which names no moment a row could have.

    PostgreSQL's `infinity` reaches DuckDB through ADBC as a time some 290,000 years BC,
    and DuckDB has infinities of its own; such a time is unreadable (rule 8).
    """
    return (
        f"NOT (isfinite({instant}) AND {instant} BETWEEN TIMESTAMPTZ '0001-01-01 00:00:00+00' "
        f"AND TIMESTAMPTZ '9999-12-31 23:59:59.999999+00')"
    )


def text_of(field: pa.Field) -> str | None:
    """The type whose values a source read as this column's text (`TEXT_OF`), if any."""
    found = (field.metadata or {}).get(TEXT_OF)
    return found.decode() if found else None


def instant_sql(
    column: str,
    field: pa.Field,
    *,
    timezone: str,
    time_unit: str | None,
    where: str,
) -> str:
    """SQL that reads the source's `field`, as `column` (a quoted identifier) names it, as a
    TIMESTAMPTZ."""
    arrow_type = field.type
    zone = quote_string(timezone)
    if time_unit is not None and (
        pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type)
    ):
        raise ConfigError(
            f"{where} holds {'dates' if pa.types.is_date(arrow_type) else 'timestamps'}, and "
            "time_unit reads epochs (integers, or text of them): remove time_unit"
        )
    if pa.types.is_timestamp(arrow_type):
        return timestamp_sql(column, arrow_type, zone)
    if pa.types.is_date(arrow_type):
        return f"timezone({zone}, CAST({column} AS TIMESTAMP))"
    if pa.types.is_integer(arrow_type):
        return epoch_sql(column, time_unit, where=where, arrow_type=arrow_type)
    is_text = (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )
    read_from = text_of(field)
    if is_text and read_from:
        raise ConfigError(
            f"{where} holds {read_from} values, read as their text, which no time "
            "is written as; choose a column of times, or cast one in the source"
        )
    if is_text and time_unit is not None:
        # SQLite keeps epochs in columns declared TIMESTAMP, which are read as text.
        return epoch_sql(epoch_text_sql(column), time_unit, where=where, arrow_type=arrow_type)
    if is_text:
        return text_sql(column, zone)
    raise ConfigError(
        f"{where} has type {arrow_type}, which pitsync cannot read as a time; it reads "
        "timestamps (with or without zone), dates, text, or integer epochs with time_unit; "
        "cast the column in the source"
    )


def timestamp_sql(column: str, arrow_type: pa.TimestampType, zone: str) -> str:
    """Timestamps of any unit; a zone-aware one is already an instant."""
    if arrow_type.unit == "ns":
        micros = f"({column_ns(column)} - (({column_ns(column)} % 1000) + 1000) % 1000) // 1000"
        naive = f"make_timestamp({micros})"
        # epoch_ns of a zone-aware value is already counted from the UTC epoch.
        return f"timezone('UTC', {naive})" if arrow_type.tz else f"timezone({zone}, {naive})"
    if arrow_type.tz:
        return f"CAST({column} AS TIMESTAMPTZ)"
    return f"timezone({zone}, CAST({column} AS TIMESTAMP))"


def column_ns(column: str) -> str:
    return f"epoch_ns({column})"


def epoch_sql(column: str, time_unit: str | None, *, where: str, arrow_type: pa.DataType) -> str:
    """An integer count of seconds, milliseconds or microseconds since 1970-01-01 UTC."""
    if time_unit is None:
        raise ConfigError(
            f'{where} holds integers ({arrow_type}); set time_unit = "s", "ms" or "us" '
            "in the table's section to say what they count"
        )
    limit = EPOCH_LIMITS[time_unit]
    micros = f"CAST({column} AS HUGEINT) * {MICROS_PER_UNIT[time_unit]}"
    return (
        f"CASE WHEN abs(CAST({column} AS HUGEINT)) < {limit} "
        f"THEN timezone('UTC', make_timestamp(CAST({micros} AS BIGINT))) END"
    )


def epoch_text_sql(column: str) -> str:
    """Text of a whole number as that number; any other text as NULL (unreadable)."""
    trimmed = f"trim({column})"
    return (
        f"TRY_CAST(CASE WHEN regexp_full_match({trimmed}, '[+-]?[0-9]+') THEN {trimmed} END "
        "AS HUGEINT)"
    )


def text_sql(column: str, zone: str) -> str:
    """Naive text is read in the table's zone; text that names its zone, in that zone.

    Which text names its zone is told by its shape, not left to the casts: DuckDB's
    TIMESTAMPTZ cast reads naive text it does not expect (`2024-1-5 9:00`) as UTC, and its
    TIMESTAMP cast drops an offset or a trailing word (` UTC`, ` garbage`). Text that
    names a zone (`ZONED_PATTERN`) goes to the TIMESTAMPTZ cast, which reads offsets and
    zone names and fails on the rest; text of only digits and separators
    (`NAIVE_PATTERN`) to the TIMESTAMP cast, read in the zone; an abbreviation, or any
    other text, is unreadable (NULL).
    """
    trimmed = f"trim({column}, {BLANKS})"

    def shaped(text: str, pattern: str) -> str:
        return f"regexp_full_match({text}, {quote_string(pattern)})"

    known = ", ".join(quote_string(name) for name in sorted(KNOWN_SHORT_ZONES))
    word = f"lower(regexp_extract({trimmed}, {quote_string(TRAILING_WORD)}))"
    abbreviated = f"{shaped(trimmed, ABBREVIATION_PATTERN)} AND {word} NOT IN ({known})"
    # Its shape is checked again once the zone is spelled as the cast wants it: `UTC+15`
    # names a zone, and `+15` no offset.
    spelled = offset_spelled(trimmed)
    zoned = (
        f"CASE WHEN {shaped(spelled, ZONED_PATTERN)} THEN TRY_CAST({spelled} AS TIMESTAMPTZ) END"
    )
    return (
        f"CASE WHEN {abbreviated} OR NOT {shaped(trimmed, YEAR_FIRST)} THEN NULL "
        f"WHEN {shaped(trimmed, ZONED_PATTERN)} THEN {zoned} "
        f"WHEN {shaped(trimmed, NAIVE_PATTERN)} "
        f"THEN timezone({zone}, TRY_CAST({trimmed} AS TIMESTAMP)) "
        "END"
    )


def offset_spelled(text: str) -> str:
    """Zoned text with its offset written against the time, and `UTC+hh:mm` or `Z` as the
    cast reads them (`OFFSET_SPELLINGS`); only text that may need it is rewritten, as
    most zoned text is written as the cast reads it."""
    joined = f"regexp_replace({text}, {quote_string(SPACE_BEFORE_OFFSET)}, '\\1\\2')"
    spelled = joined
    for spelling, offset in OFFSET_SPELLINGS:
        # DuckDB's regexp_replace names a group `\\1`, where Python's re writes `\\g<1>`.
        group = re.sub(r"\\g<(\d)>", r"\\\1", offset)
        spelled = f"regexp_replace({spelled}, {quote_string(spelling)}, {quote_string(group)})"
    unusual = f"(lower({text}) SIMILAR TO '.*(utc|gmt).*' OR {text} SIMILAR TO '.*(\\sZ|z)')"
    return f"CASE WHEN {unusual} THEN {spelled} ELSE {joined} END"


def spelled_moment(text: str) -> str:
    """A moment given in a query or on the command line, its zone spelled as DuckDB's cast
    reads it, as `text_sql` spells a source's text: `UTC+05:30` keeps its minutes there."""
    spelled = re.sub(as_in_duckdb(SPACE_BEFORE_OFFSET), r"\g<1>\g<2>", text.strip(" \t\n\r"))
    for spelling, offset in OFFSET_SPELLINGS:
        spelled = re.sub(as_in_duckdb(spelling), offset, spelled)
    return spelled


def has_moment_shape(text: str) -> bool:
    """Whether rule 6 reads the text as a time at all, as `text_sql` reads a source's:
    a year of four digits first, then digits and separators alone (naive) or a time
    followed by its zone. `epoch`, `infinity` or a date followed by `(BC)` are no moment.

    The blanks trimmed and the patterns matched as DuckDB's trim and regular expressions
    do: the ASCII blanks of BLANKS alone, and `\\d` and `\\s` of ASCII characters only."""
    trimmed = text.strip(" \t\n\r")
    if not matches_as_in_duckdb(YEAR_FIRST, trimmed):
        return False
    if matches_as_in_duckdb(NAIVE_PATTERN, trimmed):
        return True
    spelled = spelled_moment(trimmed)
    return matches_as_in_duckdb(ZONED_PATTERN, trimmed) and matches_as_in_duckdb(
        ZONED_PATTERN, spelled
    )


def matches_as_in_duckdb(pattern: str, text: str) -> bool:
    """`regexp_full_match`, as DuckDB runs it."""
    return re.fullmatch(as_in_duckdb(pattern), text) is not None


@functools.cache
def as_in_duckdb(pattern: str) -> re.Pattern[str]:
    """A pattern of this module as DuckDB's RE2 reads it: `\\s` is a space, tab, line
    feed, form feed or carriage return (no vertical tab), and `\\d` an ASCII digit."""
    return re.compile(pattern.replace(r"\s", r"[\t\n\f\r ]"), flags=re.ASCII)


def beyond_moments(text: str) -> bool:
    """Whether the moment the text names lies outside years 1 to 9999 in UTC, where no row
    can start (rule 8): `0000-01-01`, or `9999-12-31 23:00-05`. Text the cast cannot
    read is not: that is for the caller to tell."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        instant = "TRY_CAST(? AS TIMESTAMPTZ)"
        row = con.execute(
            f"SELECT {beyond_moments_sql('m')} FROM (SELECT {instant} AS m)", [spelled_moment(text)]
        ).fetchone()
    return bool(row and row[0])


def short_year(text: str) -> bool:
    """Whether a time begins with a year of other than four digits (`24-01-05`)."""
    year = re.match(r"\s*([0-9]+)[-/]", text)
    return year is not None and len(year.group(1)) != 4


def iso_sql(column: str, type_name: str, *, utc_suffix: str = "+00:00") -> str:
    """ISO 8601 text for an instant (with offset) or a naive timestamp (without).

    Sessions run in UTC, so an instant's offset is always UTC; the fraction is written
    only when there is one, as Python's isoformat does.
    """
    zoned = "TIME ZONE" in type_name or type_name == "TIMESTAMPTZ"
    offset = utc_suffix if zoned else ""
    whole = quote_string(f"%Y-%m-%dT%H:%M:%S{offset}")
    fraction = quote_string(f"%Y-%m-%dT%H:%M:%S.%f{offset}")
    return (
        f"CASE WHEN microsecond({column}) % 1000000 = 0 THEN strftime({column}, {whole}) "
        f"ELSE strftime({column}, {fraction}) END"
    )


def time_reading(column: str, arrow_type: pa.DataType, timezone: str, time_unit: str | None) -> str:
    """The settings that say which instant each value of a time column is: its name, and
    `timezone` and `time_unit` where they apply to its type (a zone to naive times, dates
    and text; a unit to integers and text). Stored rows keyed by another reading would
    all move."""
    text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    zoned = pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None
    zone = "" if zoned or pa.types.is_integer(arrow_type) else timezone
    unit = (time_unit or "") if pa.types.is_integer(arrow_type) or text else ""
    return f"column={column}; timezone={zone}; time_unit={unit}; type={time_kind(arrow_type)}"


def time_kind(arrow_type: pa.DataType) -> str:
    """What a time column's values are, as far as which instant each names: a time cut to
    its date, or a naive time read as a zoned one, names another."""
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "zoned time" if arrow_type.tz else "naive time"
    if pa.types.is_integer(arrow_type):
        return "integer"
    return (
        "text"
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
        else str(arrow_type)
    )


def names_ambiguous_zone(text: str) -> bool:
    """Whether a time ends in a zone abbreviation the zone database does not know, which a
    moment given on the command line or in a query may not use any more than a source row."""
    trimmed = text.strip()
    if not re.fullmatch(ABBREVIATION_PATTERN, trimmed):
        return False
    word = re.search(TRAILING_WORD, trimmed)
    return word is None or is_ambiguous_zone_name(word.group())


def is_ambiguous_zone_name(name: str) -> bool:
    """A word of two to five letters that the zone database does not know (`BST`); a
    time of day's `am` or `pm` is no zone at all."""
    known = KNOWN_SHORT_ZONES | {"am", "pm"}
    return bool(re.fullmatch("[A-Za-z]{2,5}", name)) and name.lower() not in known


AMBIGUOUS_ZONE_HINT = (
    "a zone abbreviation names several zones; write an offset (+01:00) or the IANA name "
    "of the region whose clock is meant (Area/City, such as America/Chicago)"
)


def same_zone(first: str, second: str) -> bool:
    """Whether two zone names read every time alike: one name, or two names of one zone
    (`UTC` and `Etc/UTC`), known by their identical rules in the zone database."""
    if first == second:
        return True
    rules = zone_rules(first)
    return rules is not None and rules == zone_rules(second)


def zone_rules(name: str) -> bytes | None:
    """The zone's compiled rules, from the system's zone database or the tzdata package;
    None when neither has it."""
    for root in zoneinfo.TZPATH:
        path = Path(root, name)
        if path.is_file():
            return path.read_bytes()
    try:
        return importlib.resources.files("tzdata.zoneinfo").joinpath(name).read_bytes()
    except (ModuleNotFoundError, OSError):
        return None
