"""Run the interval modeling where the data lives: a PostgreSQL source, or Spark.

`plan_model_sql` reads the source's columns (as a sync would) and builds the statements
of `pitsync.modeling.portable` for one engine. `execute_on_postgres` creates the views in
the source's own schema; `execute_on_spark` registers Parquet sources as views of a local
Spark session, runs the same statements there, and can write the results as Parquet.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp

from pitsync.config import Config, TableConfig
from pitsync.connectors.sources import file_pattern, matched_files, open_source
from pitsync.errors import ConfigError, PitsyncError, SourceError, first_line
from pitsync.modeling.intervals import plan_history
from pitsync.modeling.portable import (
    UNBOUNDED_TIME_ENGINES,
    ZONE_ENGINES,
    ModelSql,
    enriched_query,
    intervals_query,
    render,
    view,
)
from pitsync.quoting import fold_name, spelled_as_in

log = logging.getLogger(__name__)

SPARK_SOURCES = ("parquet",)

# The longest view name an engine keeps, in bytes. PostgreSQL cuts a longer one without a
# word, and CREATE OR REPLACE would then replace whatever has the cut name.
NAME_BYTES = {"postgres": 63}

# The comment that marks a view in PostgreSQL as pitsync's: a relation without it is
# never replaced, since it may be the user's own.
MODEL_MARK = "pitsync model:"
RELATION_KINDS = {
    "r": "table",
    "p": "table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
    "S": "sequence",
    "i": "index",
    "I": "index",
    "c": "composite type",
}
# CREATE OR REPLACE VIEW cannot drop, rename or retype a view's columns.
VIEW_COLUMNS_CHANGED = "42P16"
# DROP VIEW of a view others read.
OTHERS_DEPEND = "2BP01"


@dataclass(frozen=True)
class PlannedModel:
    """The statements for one engine, and the names of the views they create."""

    engine: str
    sql: ModelSql
    view_names: list[str]

    def rendered(self) -> list[str]:
        return [render(statement, self.engine) for statement in self.sql.statements()]

    def view_tables(self) -> list[exp.Table]:
        """The names of the views, as the statements create them."""
        return [statement.this for statement in self.sql.statements()]

    def marks(self) -> list[str]:
        """`COMMENT ON VIEW` for each view, which marks it as one pitsync may replace."""
        comment = exp.Literal.string(f"{MODEL_MARK} made by `pitsync model`, which replaces it")
        return [
            exp.Comment(this=name.copy(), kind="VIEW", expression=comment).sql(self.engine)
            for name in self.view_tables()
        ]

    def dropped(self) -> list[str]:
        """`DROP VIEW IF EXISTS` for each view, in the order they are created."""
        return [
            exp.Drop(tables=[statement.this.copy()], kind="VIEW", exists=True).sql(self.engine)
            for statement in self.sql.statements()
        ]


def plan_model_sql(
    config: Config, history_name: str, engine: str, events_name: str | None = None
) -> PlannedModel:
    """The view statements for a history table (and an events table joined with it)."""
    history = config.table(history_name)
    if not history.is_history:
        raise ConfigError(
            f"table `{history_name}` is {with_article(history.kind)} table; model a history table"
        )
    events = events_table(config, events_name, history) if events_name is not None else None
    check_views_leave_sources(history, events)
    found = read_source_table(config, history)
    schema = found.schema
    properties = plan_history(history, schema).properties
    check_ids_written_alike(history, history.id_column, schema.field(history.id_column))
    # The columns compared by order: text among them is compared by code point.
    ordered = [*properties, *(name for name in (history.tie_breaker, history.cursor) if name)]
    text = {name for name in ordered if is_plain_text(schema.field(name))}

    intervals_name = view_name(config, history, f"{history.name}_intervals", engine)
    start_type = schema.field(history.time_source_column).type
    query = intervals_query(
        history,
        properties,
        source_table(config, history, found.name),
        text_properties=text,
        bounded_start=holds_moments(start_type) and engine in UNBOUNDED_TIME_ENGINES,
        start_zone=naive_zone(history, start_type, engine),
        start_nanoseconds=in_nanoseconds(start_type, engine),
        # Times there are instants by now: a naive start is read in its zone above.
        zoned_bounds=engine in ZONE_ENGINES,
    )
    intervals = view(intervals_name, query, engine=engine)
    enriched = None
    if events is not None:
        enriched = enriched_view(config, events, history, properties, intervals_name, engine)
    names = [statement.this.name for statement in (intervals, enriched) if statement is not None]
    return PlannedModel(engine=engine, sql=ModelSql(intervals, enriched), view_names=names)


def enriched_view(
    config: Config,
    events: TableConfig,
    history: TableConfig,
    properties: list[str],
    intervals_name: exp.Table,
    engine: str,
) -> exp.Create:
    """The view of `events` joined with the intervals of `history` at each event's time."""
    found = read_source_table(config, events)
    schema = found.schema
    columns = list(schema.names)
    joined_on = events.id_column
    if history.group_key:
        joined_on = spelled_as_in(columns, history.group_key)
    for column in (joined_on, events.time_column):
        if column not in columns:
            raise ConfigError(
                f"--events `{events.name}` has no column `{column}` to join "
                f"`{history.name}` on; its columns are: {', '.join(columns)}",
                table=events.name,
            )
    check_ids_written_alike(events, joined_on, schema.field(joined_on), joins=history.name)
    time_type = schema.field(events.time_column).type
    query = enriched_query(
        events,
        source_table(config, events, found.name),
        history,
        intervals_name,
        properties,
        columns,
        join_column=joined_on,
        time_zone=naive_zone(events, time_type, engine),
        time_nanoseconds=in_nanoseconds(time_type, engine),
        bounded_time=holds_moments(time_type) and engine in UNBOUNDED_TIME_ENGINES,
        zoned_bounds=engine in ZONE_ENGINES,
    )
    name = view_name(config, events, f"{events.name}_enriched", engine)
    check_names_kept_whole(query, name.name, engine)
    return view(name, query, engine=engine)


def check_names_kept_whole(query: exp.Select, view_name: str, engine: str) -> None:
    """Refuse a column name the engine would cut: a property named after its history
    table, to tell it from an events column, may pass the limit, and two cut names can
    come out the same."""
    limit = NAME_BYTES.get(engine)
    for column in query.expressions:
        size = len(column.alias_or_name.encode())
        if limit is not None and size > limit:
            raise ConfigError(
                f"the view `{view_name}` would have a column `{column.alias_or_name}` "
                f"(a property named after its table, as an events column has its name) of "
                f"{size} bytes, and {engine} keeps {limit} bytes of a name; give the history "
                "table a shorter name in pitsync.toml, or rename the events column in a view"
            )


def check_ids_written_alike(
    table: TableConfig, column: str, field: pa.Field, *, joins: str | None = None
) -> None:
    """Refuse an id column (or the events' column that `joins` a history's ids) whose
    values each engine writes as text its own way.

    Entities are told apart by their ids' text (rule 7). A time's text follows the
    session's zone and date style, and bytes, intervals and lists have a form of text in
    each engine: the view would file such an id apart from the store's.
    """
    if has_portable_text(field.type):
        return
    named = f"column `{column}` (joined with the ids of `{joins}`)" if joins else None
    raise ConfigError(
        f"table `{table.name}`: its {named or f'id column `{column}`'} is of type "
        f"{field.type}, which each engine writes as text in its own way, so the view's "
        "entities would not be the store's; model ids of text or numbers (a view of the "
        f"source table can cast `{column}` to text, as you want it written)",
        table=table.name,
    )


def has_portable_text(kind: pa.DataType) -> bool:
    """Whether a value of this type reads as the same text in every engine: integers,
    decimals, booleans, text and UUIDs do; floats differ only as README says (`1.0`)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if isinstance(kind, pa.ExtensionType):
        return kind.extension_name == "arrow.uuid"
    checks = (
        pa.types.is_integer,
        pa.types.is_decimal,
        pa.types.is_boolean,
        pa.types.is_floating,
        pa.types.is_string,
        pa.types.is_large_string,
    )
    return any(check(kind) for check in checks)


def check_views_leave_sources(history: TableConfig, events: TableConfig | None) -> None:
    """Refuse a view named as a table it reads: in the source's schema (or among Spark's
    views of the Parquet sources) the view would take that table's place."""
    views = [(history, f"{history.name}_intervals")]
    if events is not None:
        views.append((events, f"{events.name}_enriched"))
    read = [table for table in (history, events) if table is not None]
    for table, name in views:
        for source in read:
            if fold_name(name) == fold_name(source.source_table):
                raise ConfigError(
                    f"table `{table.name}`: its view `{name}` would have the name of the "
                    f"source table `{source.name}` reads, in that table's place; give "
                    f"`{table.name}` another name in pitsync.toml "
                    f'(`from = "{table.source_table}"` still reads the same source table)',
                    table=table.name,
                )


def holds_moments(time_type: pa.DataType) -> bool:
    """Whether a time column holds times or dates, which may lie past years 1 to 9999
    (an epoch's numbers are compared as they are)."""
    return pa.types.is_timestamp(time_type) or pa.types.is_date(time_type)


def naive_zone(table: TableConfig, time_type: pa.DataType, engine: str) -> str | None:
    """The zone a naive time or date column is read in (rule 6), where the engine can;
    None for a zoned column, and for engines whose own reading is left as it is."""
    naive = pa.types.is_date(time_type) or (
        pa.types.is_timestamp(time_type) and time_type.tz is None
    )
    return table.timezone if naive and engine in ZONE_ENGINES else None


def in_nanoseconds(time_type: pa.DataType, engine: str) -> bool:
    """A time of nanoseconds in DuckDB (TIMESTAMP_NS), which the view cuts to microseconds
    as the store does. PostgreSQL and Spark hold none; Snowflake's stay (see README)."""
    return engine == "duckdb" and pa.types.is_timestamp(time_type) and time_type.unit == "ns"


def with_article(word: str) -> str:
    """`an events`, `a user_history`: table kinds, whose `u` is said as in `use`."""
    return f"an {word}" if word[:1] in "aeio" else f"a {word}"


# PostgreSQL string types that take a collation; an enum arrives as a string too, but
# sorts by its declaration and refuses COLLATE.
COLLATABLE_POSTGRES_TYPES = {"text", "varchar", "bpchar", "name"}


def is_plain_text(field: pa.Field) -> bool:
    if not pa.types.is_string(field.type):
        return False
    declared = (field.metadata or {}).get(b"POSTGRESQL:type")
    return declared is None or declared.decode() in COLLATABLE_POSTGRES_TYPES


def events_table(config: Config, name: str, history: TableConfig) -> TableConfig:
    events = config.table(name)
    if events.kind != "events":
        raise ConfigError(
            f"--events `{name}` is {with_article(events.kind)} table; name an events table"
        )
    if events.source != history.source:
        raise ConfigError(
            f"--events `{name}` reads source `{events.source}`, `{history.name}` reads "
            f"`{history.source}`; modeling in the warehouse joins tables of one source"
        )
    return events


@dataclass(frozen=True)
class SourceTable:
    """A table's columns in its source, and its name as the source spells it."""

    schema: pa.Schema
    name: str


def read_source_table(config: Config, table: TableConfig) -> SourceTable:
    source = open_source(config.sources[table.source])
    try:
        return SourceTable(source.schema(table.source_table), source.spelled(table.source_table))
    finally:
        source.close()


def source_table(config: Config, table: TableConfig, spelled: str) -> exp.Table:
    """The table as the engine names it (`spelled` as the source does), schema-qualified
    in a database."""
    return exp.table_(spelled, db=config.sources[table.source].schema, quoted=True)


def view_name(config: Config, table: TableConfig, name: str, engine: str) -> exp.Table:
    """A view's name in the table's source, refused where the engine would cut it."""
    limit, size = NAME_BYTES.get(engine), len(name.encode())
    if limit is not None and size > limit:
        raise ConfigError(
            f"table `{table.name}`: its view `{name}` has a name of {size} bytes, and "
            f"{engine} keeps {limit} bytes of a name, cutting the rest; give the table a "
            f'shorter name in pitsync.toml (`from = "{table.source_table}"` still reads the '
            "same source table)",
            table=table.name,
        )
    # Spark's views are temporary ones, which live in no database.
    schema = None if engine == "spark" else config.sources[table.source].schema
    return exp.table_(name, db=schema, quoted=True)


def execute_on_postgres(config: Config, history_name: str, planned: PlannedModel) -> None:
    """Create the views in the PostgreSQL source, in one transaction."""
    source_config = config.sources[config.table(history_name).source]
    if source_config.type != "postgres":
        raise ConfigError(
            f"--execute with --engine postgres needs a postgres source; `{history_name}` reads "
            f"source `{source_config.name}` of type {source_config.type}"
        )
    source: Any = open_source(source_config)
    try:
        replace_views(source, planned)
    finally:
        source.close()


def replace_views(source: Any, planned: PlannedModel) -> None:
    """CREATE OR REPLACE the views in one transaction; where that cannot be (a view's
    columns changed), drop the old views and create them anew, in a second one. Either
    transaction fails whole, keeping the old views.

    Replacing first keeps views of the user's own that read these: PostgreSQL refuses to
    drop a view another depends on, and says which.
    """
    connection = source.connection
    try:
        build_views(source, planned, planned.rendered())
        return
    except Exception as error:
        connection.rollback()
        if sqlstate(error) != VIEW_COLUMNS_CHANGED:
            raise creation_failed(source, error) from None
        log.debug("postgres: views not replaced in place (%s); dropping them", first_line(error))
    try:
        build_views(source, planned, [*reversed(planned.dropped()), *planned.rendered()])
    except Exception as error:
        connection.rollback()
        changed = "their columns changed, so they are dropped and made anew, which failed: "
        failed = creation_failed(source, error, changed)
        if sqlstate(error) == OTHERS_DEPEND:
            failed = SourceError(
                f"{failed}; drop the views that depend on them (one made by `pitsync model "
                "--events NAME` is made again by running the command with that --events), "
                "then run the command again",
                source=source.name,
            )
        raise failed from None


def build_views(source: Any, planned: PlannedModel, statements: list[str]) -> None:
    """Run `statements` and mark the views as pitsync's, in one transaction, once no
    relation of another's has a view's name."""
    with source.connection.cursor() as cursor:
        for name in planned.view_tables():
            refuse_others_relation(source, cursor, name)
        for statement in [*statements, *planned.marks()]:
            log.debug("postgres: %s", statement)
            cursor.execute(statement)
    source.connection.commit()


def refuse_others_relation(source: Any, cursor: Any, name: exp.Table) -> None:
    """Refuse to replace a relation named as a view that pitsync did not make: a view
    without pitsync's comment, or any other kind (a table, a sequence, an index)."""
    schema = postgres_string(name.db) if name.db else "current_schema()"
    cursor.execute(
        "SELECT c.relkind::text, obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class "
        "AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {schema} AND c.relname = {postgres_string(name.name)}"
    )
    found = cursor.fetchone()
    if found is None:
        return
    kind, comment = found
    if kind == "v" and (comment or "").startswith(MODEL_MARK):
        return
    what = RELATION_KINDS.get(kind, "relation")
    shown = f"{name.db}.{name.name}" if name.db else name.name
    raise SourceError(
        f"source `{source.name}`: {what} `{shown}` is in the way of a view pitsync would "
        f"create, and pitsync did not make it (pitsync's views carry a comment starting "
        f"`{MODEL_MARK}`), so it is left as it is; drop or rename it, then run the command "
        "again (a view made by a pitsync from before that comment has none either)",
        source=source.name,
    )


def postgres_string(text: str) -> str:
    """A string literal as PostgreSQL reads it."""
    return exp.Literal.string(text).sql("postgres")


def creation_failed(source: Any, error: BaseException, why: str = "") -> PitsyncError:
    """The error to report when creating the views failed: pitsync's own as it is, else
    the database's own sentence."""
    if isinstance(error, PitsyncError):
        return error
    return SourceError(
        f"source `{source.name}`: creating the views failed: "
        f"{why}{source.redact(database_error(error))}",
        source=source.name,
    )


def sqlstate(error: BaseException) -> str | None:
    """PostgreSQL's code for an error the driver reports (`42P16`), if it carries one."""
    return getattr(error, "sqlstate", None)


def execute_on_spark(
    config: Config,
    tables: list[str],
    planned: PlannedModel,
    output: Path | None,
    session: Any | None = None,
) -> dict[str, int]:
    """Run the statements on Spark; return each view's row count. Without a running
    `session` to use (and leave running), a local one is started for the run alone."""
    for name in tables:
        check_spark_source(config, config.table(name))
    if output is not None:
        check_output_folders(output, planned.view_names)
    spark = local_spark_session() if session is None else session
    try:
        with tempfile.TemporaryDirectory(prefix="pitsync-spark-") as links:
            # A history and an events table may read one source table: it is one view.
            configured = [config.table(name) for name in tables]
            for table in {table.source_table: table for table in configured}.values():
                register_parquet(spark, config, table, Path(links))
            return run_on_spark(spark, planned, output)
    except Exception as error:  # Spark's own exception classes come from the JVM
        raise SourceError(f"Spark could not run the model: {spark_error(error)}") from None
    finally:
        if session is None:
            spark.stop()


def run_on_spark(spark: Any, planned: PlannedModel, output: Path | None) -> dict[str, int]:
    """Create the views, count their rows, and write them as Parquet under `output`."""
    for statement in planned.rendered():
        log.debug("spark: %s", statement)
        spark.sql(statement)
    counts = {}
    for name in planned.view_names:
        frame = spark.table(spark_identifier(name))
        counts[name] = frame.count()
        if output is not None:
            frame.write.mode("overwrite").parquet(str(output / name))
    return counts


def check_output_folders(output: Path, names: list[str]) -> None:
    """Each view is written to a folder of its name inside `output`, replacing what is
    there: a name that would lead out of it (`../x`, `/x`) is refused."""
    inside = output.resolve()
    for name in names:
        folder = output / name
        if inside not in folder.resolve().parents:
            raise ConfigError(
                f"--output {output}: view `{name}` would be written to {folder}, outside "
                "that folder, replacing what is there; give its table a name in "
                "pitsync.toml without `..` or a leading `/`"
            )


def spark_error(error: BaseException) -> str:
    """Spark's own sentence: a call into Java that failed says only that it failed on its
    first line, and why on the first line of the Java exception it carries."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        return " ".join(str(java.getMessage()).split()) or first_line(error)
    return first_line(error)


def database_error(error: BaseException) -> str:
    """The database's own sentence (`ERROR: ...`) from a driver message, with its DETAIL
    (which says what object is in the way, when one is); else the message's first line.

    The driver quotes the statement first, so the sentence may share a line with its end.
    """
    lines = str(error).splitlines()
    for number, line in enumerate(lines):
        if "ERROR:" in line:
            sentence = [line[line.index("ERROR:") :]]
            for more in lines[number + 1 :]:
                if not more.strip() or more.startswith(("HINT:", "Query was:")):
                    break
                sentence.append(more)
            return " ".join(" ".join(sentence).split())
    return first_line(error)


def local_spark_session() -> Any:
    """A Spark session on this machine, in UTC and on loopback; a Spark that cannot start
    is one line saying why."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SourceError(
            "Spark is not installed; install pitsync's spark extra (in a clone of pitsync: "
            "pip install '.[spark]'); it runs on the machine's Java, 17 or newer"
        ) from None
    missing = missing_java()
    if missing is not None:
        raise SourceError(f"Spark cannot start: {missing}")
    # The JVM picks its own address before it reads any setting: keep it on loopback.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder: Any = SparkSession.builder
    try:
        session = (
            builder.master("local[2]")
            .appName("pitsync-model")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            # A local session talks to itself only: never on a network address.
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate()
        )
    except Exception as error:  # PySpark's own errors, and Java's
        raise SourceError(f"Spark could not start: {spark_error(error)}") from None
    # A failed query would log its whole plan before pitsync's one line says what failed.
    session.sparkContext.setLogLevel("OFF")
    return session


def missing_java() -> str | None:
    """Why Spark's launcher would find no Java, if it would not: it runs JAVA_HOME's
    bin/java where JAVA_HOME is set, else the `java` on PATH. Its own complaint would be
    a shell error, and PySpark's only that the gateway exited."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home, "bin", "java")
        if java.is_file() and os.access(java, os.X_OK):
            return None
        return (
            f"JAVA_HOME is {home}, which has no bin/java; set JAVA_HOME to a Java "
            "installation, 17 or newer, or unset it to use the java on PATH"
        )
    if shutil.which("java") is None:
        return "no java is on PATH and JAVA_HOME is not set; install Java 17 or newer"
    return None


def check_spark_source(config: Config, table: TableConfig) -> None:
    source = config.sources[table.source]
    if source.type not in SPARK_SOURCES:
        raise ConfigError(
            f"--engine spark --execute reads Parquet sources; `{table.name}` reads source "
            f"`{source.name}` of type {source.type}"
        )


def register_parquet(spark: Any, config: Config, table: TableConfig, links: Path) -> None:
    """A table's Parquet files as a view named like the table in the source.

    The files are those a sync reads, found as a sync finds them: Hadoop's globbing reads
    `**` as `*`, and Spark passes over files whose names start with `_` or `.`, even when
    named. So each file is linked under a plain name in a folder of the table's own, and
    Spark reads that folder, merging the files' columns by name as a sync does.
    """
    source = config.sources[table.source]
    pattern = file_pattern(source, table.source_table)
    files = matched_files(pattern)
    if not files:
        raise SourceError(f"source `{source.name}`: no Parquet files match {pattern}")
    key = hashlib.sha256(table.source_table.encode()).hexdigest()[:16]
    folder = links / key
    folder.mkdir(exist_ok=True)
    for number, name in enumerate(files):
        (folder / f"part-{number:05d}.parquet").symlink_to(Path(name).resolve())
    frame = spark.read.option("mergeSchema", "true").parquet(str(folder))
    # Spark's Python API takes view names of plain words only; its SQL takes any name.
    files_view = f"pitsync_files_{key}"
    frame.createOrReplaceTempView(files_view)
    spark.sql(
        f"CREATE OR REPLACE TEMPORARY VIEW {spark_identifier(table.source_table)} "
        f"AS SELECT * FROM {files_view}"
    )


def spark_identifier(name: str) -> str:
    """A view name as Spark SQL reads it, backquoted (a space or a dot is part of it)."""
    return "`" + name.replace("`", "``") + "`"
