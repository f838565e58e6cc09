"""pitsync.toml is checked before any data moves, and every mistake says how to fix it.

Library checks call `load_config` and pin the `ConfigError` message with `match=`;
command-line checks run the real command and read its standard error.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pitsync.config import load_config
from pitsync.connectors.sources import open_source
from pitsync.errors import ConfigError
from pitsync.queries.execute import QuerySession
from tests.conftest import Project, company_history, unreadable

VALID = """\
[store]
path = "store.duckdb"

[sources.warehouse]
type = "duckdb"
path = "warehouse.duckdb"

[tables.company_plan_history]
source = "warehouse"
kind = "group_history"
id_column = "company_id"
group_key = "company_id"
start_time = "start_timestamp"
"""


def in_order(*fragments: str) -> str:
    """A `match=` pattern: these literal fragments, in this order, anything between."""
    return ".*".join(re.escape(fragment) for fragment in fragments)


def config_file(tmp_path: Path, old: str = "", new: str = "") -> str:
    """The valid config with one piece of text replaced, written to pitsync.toml."""
    assert old in VALID
    path = tmp_path / "pitsync.toml"
    path.write_text(VALID.replace(old, new, 1), encoding="utf-8")
    return str(path)


def config_with_setting(tmp_path: Path, line: str) -> str:
    """The valid config with one more line in its table section (the last section)."""
    path = tmp_path / "pitsync.toml"
    path.write_text(VALID + line + "\n", encoding="utf-8")
    return str(path)


def run_pitsync(
    cwd: Path, *args: str, env_config: str | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command without --config; PITSYNC_CONFIG only when env_config is given."""
    env = {key: value for key, value in os.environ.items() if key != "PITSYNC_CONFIG"}
    if env_config is not None:
        env["PITSYNC_CONFIG"] = env_config
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "pitsync.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**env, "NO_COLOR": "1", "COLUMNS": "200"},
        timeout=120,
    )


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "pitsync: error:" in result.stderr and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# --- keys and values -----------------------------------------------------------------------


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))

    table = config.table("company_plan_history")
    assert (table.kind, table.id_column, table.start_time) == (
        "group_history",
        "company_id",
        "start_timestamp",
    )
    assert config.store_path == tmp_path / "store.duckdb"


def test_typo_in_a_table_key_names_the_key_section_and_suggestion(tmp_path: Path) -> None:
    path = config_file(tmp_path, "id_column =", "id_colum =")

    with pytest.raises(ConfigError, match=in_order("[tables.company_plan_history]", "`id_colum`")):
        load_config(path)
    with pytest.raises(ConfigError, match=re.escape("did you mean `id_column`?")):
        load_config(path)


def test_typo_in_a_source_key_suggests_the_known_key(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'path = "warehouse.duckdb"', 'paht = "warehouse.duckdb"')

    with pytest.raises(ConfigError, match=in_order("[sources.warehouse]", "`paht`", "`path`")):
        load_config(path)


def test_id_column_of_the_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'id_column = "company_id"', "id_column = 5")

    with pytest.raises(
        ConfigError, match=in_order("[tables.company_plan_history]", "`id_column`", "string", "5")
    ):
        load_config(path)


@pytest.mark.parametrize("tie_breaker", ["company_id", "START_TIMESTAMP"])
def test_a_tie_breaker_every_tied_row_shares_is_refused(tmp_path: Path, tie_breaker: str) -> None:
    # It failed the run in DuckDB's words, as a column not found.
    path = config_with_setting(tmp_path, f'tie_breaker = "{tie_breaker}"')

    with pytest.raises(
        ConfigError, match=in_order(f"`tie_breaker` = '{tie_breaker}' is the", "decides no tie")
    ):
        load_config(path)


def test_a_blank_group_key_is_refused_as_no_command_can_name_it(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'group_key = "company_id"', 'group_key = " "')

    with pytest.raises(ConfigError, match=re.escape("`group_key` = ' ' is blank; name the group")):
        load_config(path)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('path = "store.duckdb"', 'path = "a\\u0000b.duckdb"'),
        ('path = "warehouse.duckdb"', 'path = "w\\u0000.duckdb"'),
        ('id_column = "company_id"', 'id_column = "company\\u0000id"'),
    ],
)
def test_a_nul_character_in_a_setting_is_refused_in_one_line(
    tmp_path: Path, old: str, new: str
) -> None:
    config_file(tmp_path, old, new)

    result = run_pitsync(tmp_path, "runs")

    assert_user_error(result, "holds a NUL character (\\u0000)")


def test_an_empty_pitsync_config_is_refused_not_taken_for_the_default(tmp_path: Path) -> None:
    config_file(tmp_path)  # ./pitsync.toml exists, and is not what was meant

    result = run_pitsync(tmp_path, "runs", env_config="")

    assert_user_error(result, "PITSYNC_CONFIG is set but empty")


def test_sync_all_without_tables_says_there_is_none_to_sync(tmp_path: Path) -> None:
    (tmp_path / "pitsync.toml").write_text('[store]\npath = "store.duckdb"\n', encoding="utf-8")

    result = run_pitsync(tmp_path, "sync", "--all")

    assert_user_error(result, "no table to sync", "add a [tables.NAME] section")
    assert not (tmp_path / "store.duckdb").exists()


def test_unknown_kind_lists_the_known_kinds(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'kind = "group_history"', 'kind = "group_hist"')

    with pytest.raises(
        ConfigError,
        match=in_order("`kind`", "'group_hist'", "group_history", "user_history", "events"),
    ):
        load_config(path)


def test_unknown_timezone_names_the_zone_and_what_is_expected(tmp_path: Path) -> None:
    path = config_with_setting(tmp_path, 'timezone = "Mars/Olympus"')

    with pytest.raises(ConfigError, match=in_order("timezone", "'Mars/Olympus'", "IANA")):
        load_config(path)


@pytest.mark.parametrize("abbreviation", ["BST", "IST", "CST", "PST", "AET"])
def test_a_zone_abbreviation_is_refused_as_a_timezone(tmp_path: Path, abbreviation: str) -> None:
    # DuckDB would read BST as Bangladesh, where a British user means British summer time.
    path = config_with_setting(tmp_path, f'timezone = "{abbreviation}"')

    with pytest.raises(ConfigError, match=in_order("timezone", "abbreviation", "IANA")):
        load_config(path)


@pytest.mark.parametrize(
    ("name", "region"),
    [
        ("CET", "Europe/Paris"),
        ("MET", "Europe/Paris"),
        ("EET", "Europe/Athens"),
        ("wet", "Europe/Lisbon"),
    ],
)
def test_a_zone_name_postgresql_reads_as_one_offset_is_refused_as_a_timezone(
    tmp_path: Path, name: str, region: str
) -> None:
    # The zone database gives CET summer time (+02:00 in July); PostgreSQL's AT TIME ZONE
    # reads it as +01:00 all year, so a modeled view would be an hour off in summer.
    path = config_with_setting(tmp_path, f'timezone = "{name}"')

    with pytest.raises(ConfigError, match=in_order("timezone", f"'{name}'", "PostgreSQL", region)):
        load_config(path)


@pytest.mark.parametrize("zone", ["EST", "Japan", "NZ", "EST5EDT", "Europe/London"])
def test_a_short_name_of_the_zone_database_is_a_timezone(tmp_path: Path, zone: str) -> None:
    path = config_with_setting(tmp_path, f'timezone = "{zone}"')

    assert [table.timezone for table in load_config(path).tables.values()] == [zone]


def test_unknown_time_unit_lists_the_units(tmp_path: Path) -> None:
    path = config_with_setting(tmp_path, 'time_unit = "sec"')

    with pytest.raises(ConfigError, match=in_order("`time_unit`", "'sec'", "s, ms, us")):
        load_config(path)


def test_missing_start_time_key_says_to_add_it(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'start_time = "start_timestamp"\n', "")

    with pytest.raises(ConfigError, match=in_order("`start_time` is required", "start_time =")):
        load_config(path)


def test_events_only_key_on_a_history_table_is_refused(tmp_path: Path) -> None:
    path = config_with_setting(tmp_path, 'time_column = "t"')

    with pytest.raises(ConfigError, match=in_order("`time_column`", "does not apply", "remove")):
        load_config(path)


def test_table_naming_an_unconfigured_source_lists_the_sources(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'source = "warehouse"', 'source = "lake"')

    with pytest.raises(ConfigError, match=in_order("`lake`", "not configured", "warehouse")):
        load_config(path)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, "[store]", "[store")

    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pitsync.toml"
    path.write_bytes('[store]\npath = "Zoë.duckdb"\n'.encode("latin-1"))

    with pytest.raises(ConfigError, match=in_order("not UTF-8", "byte offset 18", "as UTF-8")):
        load_config(str(path))


def test_a_config_file_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "pitsync.toml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())

    assert load_config(str(path)).store_path == tmp_path / "store.duckdb"


def test_a_byte_not_utf8_after_a_byte_order_mark_counts_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "pitsync.toml"
    path.write_bytes(b"\xef\xbb\xbf" + '[store]\npath = "Zoë.duckdb"\n'.encode("latin-1"))

    # The mark is 3 bytes, then `[store]\npath = "Zo` is 18.
    with pytest.raises(ConfigError, match=in_order("not UTF-8", "byte offset 21")):
        load_config(str(path))


@pytest.mark.parametrize("name", ["events", "runs", "quarantine", "all_events", "Runs", "EVENTS"])
def test_history_table_may_not_take_a_name_the_store_reserves(tmp_path: Path, name: str) -> None:
    # DuckDB names are case-insensitive, so `Runs` would collide with the runs view too.
    path = config_file(tmp_path, "[tables.company_plan_history]", f"[tables.{name}]")

    with pytest.raises(ConfigError, match=in_order(f"[tables.{name}]", f"`{name}`", "rename")):
        load_config(path)


def test_memory_limit_that_is_no_size_is_refused(tmp_path: Path) -> None:
    path = config_file(
        tmp_path, 'path = "store.duckdb"', 'path = "store.duckdb"\nmemory_limit = "lots"'
    )

    with pytest.raises(ConfigError, match=in_order("`memory_limit`", "'lots'", '"1GB"')):
        load_config(path)


@pytest.mark.parametrize("size", ["\uff12GB", "\u0661\u0660\u0660MB", "1\u2003GB", "1GB\u3000"])
def test_memory_limit_of_digits_or_spaces_beyond_ascii_is_refused_as_no_size(
    tmp_path: Path, size: str
) -> None:
    # DuckDB reads ASCII digits and spaces only, and refused these later, with a traceback.
    path = config_file(
        tmp_path, 'path = "store.duckdb"', f'path = "store.duckdb"\nmemory_limit = "{size}"'
    )

    with pytest.raises(ConfigError, match=in_order("`memory_limit`", "is not a size")):
        load_config(path)


@pytest.mark.parametrize("size", ["0B", "1MB", "99999999TB"])
def test_memory_limit_out_of_range_is_refused(tmp_path: Path, size: str) -> None:
    path = config_file(
        tmp_path, 'path = "store.duckdb"', f'path = "store.duckdb"\nmemory_limit = "{size}"'
    )

    with pytest.raises(ConfigError, match=in_order("`memory_limit`", "out of range", '"64MB"')):
        load_config(path)


SECRET_URI = "postgresql://u:secretpw@127.0.0.1:5432/test"


@pytest.mark.parametrize(
    ("old", "new", "setting"),
    [
        ('path = "store.duckdb"', f'path = "{SECRET_URI}"', "[store]: `path`"),
        ('path = "warehouse.duckdb"', f'path = "{SECRET_URI}"', "[sources.warehouse]: `path`"),
        ('kind = "group_history"', f'kind = "group_history"\nfrom = "{SECRET_URI}"', "`from`"),
        ('id_column = "company_id"', 'id_column = "host=db password=secretpw"', "`id_column`"),
        (
            'path = "warehouse.duckdb"',
            'path = "postgresql://u:secret pw@127.0.0.1/test"',
            "[sources.warehouse]: `path`",
        ),
        ("[tables.company_plan_history]", f'[tables."{SECRET_URI}"]', "[tables]: a section"),
        ('kind = "group_history"', f'kind = "group_history"\n"{SECRET_URI}" = 1', "a section"),
    ],
    ids=["store-path", "source-path", "from", "libpq-words", "blank", "table-name", "key-name"],
)
def test_a_password_anywhere_but_a_uri_is_refused_without_being_shown(
    tmp_path: Path, old: str, new: str, setting: str
) -> None:
    # It would be printed by the first message naming the setting, and kept in `runs`.
    path = config_file(tmp_path, old, new)

    with pytest.raises(ConfigError) as refused:
        load_config(path)

    assert setting in str(refused.value) and "holds a password (not shown)" in str(refused.value)
    assert "secret" not in str(refused.value)


def test_a_path_starting_with_the_home_folder_is_read_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = config_file(tmp_path, 'path = "store.duckdb"', 'path = "~/stores/store.duckdb"')

    assert load_config(path).store_path == tmp_path / "home" / "stores" / "store.duckdb"


def test_a_tilde_naming_no_user_is_read_as_written_as_a_shell_reads_it(tmp_path: Path) -> None:
    # `~backup.duckdb` is a file of that name, next to the config, not an error.
    path = config_file(tmp_path, 'path = "store.duckdb"', 'path = "~nobody-at-all-here.duckdb"')

    assert load_config(path).store_path == tmp_path / "~nobody-at-all-here.duckdb"


def test_memory_limit_caps_the_store_connection(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.write_config()
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(
        text.replace('path = "store.duckdb"', 'path = "store.duckdb"\nmemory_limit = "64MB"'),
        encoding="utf-8",
    )
    project.sync("company_plan_history")

    config = project.config()
    with QuerySession(config.store_path, config.memory_limit) as session:
        # DuckDB reports the limit in its own units: 64 MB is 61.0 MiB.
        assert session.query("SELECT current_setting('memory_limit')").fetchall() == [("61.0 MiB",)]


def test_a_schedule_that_is_not_cron_is_refused(tmp_path: Path) -> None:
    path = config_with_setting(tmp_path, 'schedule = "every hour"')

    with pytest.raises(ConfigError, match=in_order("`schedule`", "'every hour'", "@daily")):
        load_config(path)


def test_a_schedule_that_never_comes_is_refused(tmp_path: Path) -> None:
    path = config_with_setting(tmp_path, 'schedule = "0 0 30 2 *"')

    with pytest.raises(ConfigError, match=in_order("`schedule`", "30 February")):
        load_config(path)


def test_a_mistyped_schedule_word_is_shown_as_written(tmp_path: Path) -> None:
    path = config_with_setting(tmp_path, 'schedule = "@dialy"')

    with pytest.raises(ConfigError, match=in_order("`schedule` = '@dialy'", "not a cron")):
        load_config(path)


@pytest.mark.parametrize("schedule", ["R * * * *", "0 r(0-6) * * *"])
def test_a_schedule_with_a_random_field_is_refused(tmp_path: Path, schedule: str) -> None:
    # croniter draws a random field again for every slot it computes, so the runs would
    # come at no regular time.
    path = config_with_setting(tmp_path, f'schedule = "{schedule}"')

    with pytest.raises(ConfigError, match=in_order("`schedule`", "random field")):
        load_config(path)
    assert load_config(config_with_setting(tmp_path, 'schedule = "0 * * * MON-FRI"'))


@pytest.mark.parametrize("schedule", [" @hourly ", "@hourly\\n", " 0 * * * * "])
def test_a_schedule_with_blanks_around_it_is_read_without_them(
    tmp_path: Path, schedule: str
) -> None:
    path = config_with_setting(tmp_path, f'schedule = "{schedule}"')

    [table] = load_config(path).tables.values()

    assert table.schedule == schedule.replace("\\n", "").strip()


def test_a_schedule_with_a_field_for_years_is_refused(tmp_path: Path) -> None:
    # Five fields, or six with seconds: a seventh (years) is nothing pitsync promises.
    path = config_with_setting(tmp_path, 'schedule = "0 * * * * 0 2030"')

    with pytest.raises(ConfigError, match=in_order("`schedule`", "is not a cron expression")):
        load_config(path)


def test_append_mode_needs_a_cursor_and_a_lookback_is_a_duration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=in_order("`cursor` is required")):
        load_config(config_with_setting(tmp_path, 'mode = "append"'))
    bad_lookback = 'mode = "append"\ncursor = "updated_at"\nlookback = "two hours"'
    with pytest.raises(ConfigError, match=in_order("`lookback`", "'two hours'", '"2h"')):
        load_config(config_with_setting(tmp_path, bad_lookback))


def test_a_zone_file_that_is_not_a_zone_name_is_refused(tmp_path: Path) -> None:
    # The system's zone folder holds `localtime`, which DuckDB cannot convert with.
    path = config_with_setting(tmp_path, 'timezone = "localtime"')

    with pytest.raises(ConfigError, match=in_order("timezone", "'localtime'", "IANA")):
        load_config(path)


def test_table_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    path = config_with_setting(
        tmp_path,
        VALID.split("\n\n")[-1].replace(
            "[tables.company_plan_history]", "[tables.Company_Plan_History]"
        ),
    )

    with pytest.raises(ConfigError, match=in_order("Company_Plan_History", "differ only in case")):
        load_config(path)


def test_a_group_key_spelled_in_two_cases_is_refused(tmp_path: Path) -> None:
    second = VALID.split("\n\n")[-1].replace("[tables.company_plan_history]", "[tables.orgs]")
    path = config_with_setting(tmp_path, second.replace('"company_id"\n', '"Company_Id"\n', 2))

    with pytest.raises(ConfigError, match=in_order("orgs", "`Company_Id`", "`company_id`")):
        load_config(path)

    # DuckDB folds ASCII letters alone: a dotted capital I makes another name.
    path = config_with_setting(tmp_path, second.replace('"company_id"\n', '"COMPANY_İD"\n', 2))
    assert load_config(path).table("orgs").group_key == "COMPANY_İD"


def test_a_table_name_with_the_internal_prefix_is_refused(tmp_path: Path) -> None:
    path = config_file(tmp_path, "[tables.company_plan_history]", "[tables.__pitsync_staged]")

    with pytest.raises(ConfigError, match=in_order("__pitsync_", "rename the table")):
        load_config(path)


def test_the_store_may_not_be_a_source_file(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'path = "store.duckdb"', 'path = "warehouse.duckdb"')

    with pytest.raises(ConfigError, match=in_order("[store] path", "[sources.warehouse]")):
        load_config(path)


@pytest.mark.parametrize("name", ["_pitsync.duckdb", "_PITSYNC.v2.duckdb", "_pitsync"])
def test_a_store_file_named_as_the_internal_schema_is_refused(tmp_path: Path, name: str) -> None:
    # DuckDB names a database after its file up to the first dot, and `_pitsync.runs`
    # would then be ambiguous in every statement.
    path = config_file(tmp_path, 'path = "store.duckdb"', f'path = "{name}"')

    with pytest.raises(ConfigError, match=in_order("[store] path", name, "name the file")):
        load_config(path)

    other = config_file(tmp_path, 'path = "store.duckdb"', 'path = "x_pitsync.duckdb"')
    assert load_config(other).store_path.name == "x_pitsync.duckdb"


@pytest.mark.parametrize("name", ["", " "])
def test_a_table_without_a_name_is_refused(tmp_path: Path, name: str) -> None:
    path = config_file(
        tmp_path,
        "[tables.company_plan_history]",
        f'[tables."{name}"]\nfrom = "company_plan_history"',
    )

    with pytest.raises(ConfigError, match=in_order(f'[tables."{name}"]', "needs a name", "`from`")):
        load_config(path)


@pytest.mark.parametrize(
    ("document", "section"),
    [
        ('[sources]\nwarehouse = "x"\n', "[sources.warehouse]"),
        ("[tables]\nplans = 5\n", "[tables.plans]"),
    ],
)
def test_a_setting_where_a_section_belongs_names_the_section(
    tmp_path: Path, document: str, section: str
) -> None:
    path = tmp_path / "pitsync.toml"
    path.write_text(document, encoding="utf-8")

    with pytest.raises(ConfigError, match=in_order("must be a table", f"({section})")):
        load_config(str(path))


def test_the_largest_memory_limit_the_message_names_is_accepted(tmp_path: Path) -> None:
    setting = 'path = "store.duckdb"\nmemory_limit = "{}"'
    path = config_file(tmp_path, 'path = "store.duckdb"', setting.format("1025TiB"))
    with pytest.raises(ConfigError, match="out of range") as refused:
        load_config(path)
    largest = re.findall(r'"([^"]+)"', str(refused.value))[-1]

    path = config_file(tmp_path, 'path = "store.duckdb"', setting.format(largest))

    assert load_config(path).memory_limit == "1024TiB"


def test_a_database_source_needs_exactly_one_of_uri_and_uri_env(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'type = "duckdb"\npath = "warehouse.duckdb"', 'type = "postgres"')

    with pytest.raises(ConfigError, match=in_order("exactly one of `uri`", "`uri_env`")):
        load_config(path)


def test_uri_env_naming_an_unset_variable_is_refused_as_the_source_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PITSYNC_TEST_UNSET_URI", raising=False)
    path = config_file(
        tmp_path,
        'type = "duckdb"\npath = "warehouse.duckdb"',
        'type = "postgres"\nuri_env = "PITSYNC_TEST_UNSET_URI"',
    )
    source = load_config(path).sources["warehouse"]

    with pytest.raises(ConfigError, match=in_order("PITSYNC_TEST_UNSET_URI", "not set")):
        open_source(source)


def test_a_uri_written_into_uri_env_is_refused_without_showing_it(tmp_path: Path) -> None:
    # uri_env names a variable; a URI put there by mistake holds the password.
    uri = "postgresql://postgres:Sekr1tQ@127.0.0.1:5432/test"
    path = config_file(
        tmp_path,
        'type = "duckdb"\npath = "warehouse.duckdb"',
        f'type = "postgres"\nuri_env = "{uri}"',
    )

    with pytest.raises(ConfigError, match="must be the name of an environment variable") as raised:
        load_config(path)
    assert "Sekr1tQ" not in str(raised.value) and "holds a password" in str(raised.value)


KIND, HIDDEN = "got a string", "a connection string (not shown)"


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        # Of the wrong kind: a source written as one line, its URI where its section goes.
        (
            '[sources.warehouse]\ntype = "duckdb"\npath = "warehouse.duckdb"',
            "[sources]\nwarehouse = {uri!r}",
            KIND,
        ),
        (
            'type = "duckdb"\npath = "warehouse.duckdb"',
            'type = "postgres"\nuri_env = [{uri!r}]',
            "got an array",
        ),
        ('path = "warehouse.duckdb"', "path = [{uri!r}]", "got an array"),
        ('[store]\npath = "store.duckdb"', "store = {uri!r}", KIND),
        # Settings of words.
        ('type = "duckdb"\npath = "warehouse.duckdb"', "type = {uri!r}", HIDDEN),
        ('kind = "group_history"', "kind = {uri!r}", HIDDEN),
        ('start_time = "start_timestamp"', 'start_time = "x"\nmode = {uri!r}', HIDDEN),
        ('start_time = "start_timestamp"', 'start_time = "x"\nschedule = {uri!r}', HIDDEN),
        ('start_time = "start_timestamp"', 'start_time = "x"\ntimezone = {uri!r}', HIDDEN),
        ('path = "store.duckdb"', 'path = "store.duckdb"\nmemory_limit = {uri!r}', HIDDEN),
        ('source = "warehouse"', "source = {uri!r}", HIDDEN),
    ],
)
@pytest.mark.parametrize(
    ("uri", "with_password"),
    [
        ("postgresql://postgres:Sekr1tQ@127.0.0.1:5432/test", True),
        ("postgresql://127.0.0.1:5432/Sekr1tQ?sslmode=require", False),
    ],
    ids=["password", "no-password"],
)
def test_a_uri_put_in_another_setting_is_refused_without_showing_it(
    tmp_path: Path, old: str, new: str, said: str, uri: str, with_password: bool
) -> None:
    # Any setting may be where a URI was put by mistake, password and all. One with a
    # password is refused before any setting is read; one without is still not shown.
    path = config_file(tmp_path, old, new.format(uri=uri).replace("'", '"'))

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert "Sekr1tQ" not in str(raised.value)
    assert ("holds a password (not shown)" if with_password else said) in str(raised.value)


def test_a_file_source_refuses_a_uri(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'type = "duckdb"', 'type = "duckdb"\nuri = "postgresql://x"')

    with pytest.raises(ConfigError, match=in_order("`uri` does not apply", "reads `path`")):
        load_config(path)


# --- columns the config names --------------------------------------------------------------


def test_missing_start_column_names_everything_and_creates_no_store(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.configure(
        "company_plan_history", **{**project.tables["company_plan_history"], "start_time": "ts"}
    )

    result = project.cli("sync", "--table", "company_plan_history", check=False)

    assert_user_error(
        result,
        "`ts`",
        "company_plan_history",
        "company_id, plan, seats, start_timestamp, updated_at",
        "`start_time`",
    )
    assert not project.store.exists()


def test_missing_start_column_leaves_an_existing_store_unchanged(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.sync("company_plan_history")
    before = checksum(project.store)

    # The column is renamed in the source; the config still names the old one.
    project.source_sql("ALTER TABLE company_plan_history RENAME start_timestamp TO valid_from")
    with pytest.raises(
        ConfigError, match=in_order("`start_timestamp`", "valid_from", "start_time")
    ):
        project.sync("company_plan_history")

    assert checksum(project.store) == before


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("End_Time", "reserves"),  # DuckDB would silently rename it End_Time_1
        ("START_TIME", "reserves"),
        ("__pitsync_start", "starts with `__pitsync_`"),
    ],
)
def test_a_property_column_colliding_with_a_stored_name_is_refused(
    project: Project, column: str, message: str
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    project.source_sql(f'ALTER TABLE company_plan_history ADD COLUMN "{column}" VARCHAR')

    with pytest.raises(ConfigError, match=in_order(f"`{column}`", message)):
        project.sync("company_plan_history")
    assert not project.store.exists()


@pytest.mark.parametrize(
    ("setting", "column"),
    [("id_column", "end_time"), ("id_column", "Start_Time"), ("tie_breaker", "END_TIME")],
)
def test_an_id_or_tie_breaker_column_colliding_with_a_stored_name_is_refused(
    project: Project, setting: str, column: str
) -> None:
    # Both are stored under their own names, beside start_time and end_time: the sync
    # failed on a type mismatch, and the model printed a view with two end_time columns.
    project.source_sql(
        f'CREATE TABLE h ("{column}" VARCHAR, start_timestamp TIMESTAMPTZ, company_id VARCHAR)',
        "INSERT INTO h VALUES ('x', '2024-01-01 00:00:00+00', 'c1')",
    )
    keys = {"id_column": "company_id", setting: column}
    project.configure("h", kind="user_history", start_time="start_timestamp", **keys)
    expected = (f"{setting} `{column}`", "reserves", "start_time, end_time")

    with pytest.raises(ConfigError, match=in_order(*expected)):
        project.sync("h")
    model = project.cli("model", "--table", "h", "--engine", "duckdb", check=False)

    assert_user_error(model, *expected)
    assert not project.store.exists()


def test_sync_of_an_unknown_table_lists_the_configured_ones(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])

    result = project.cli("sync", "--table", "company_plan_hist", check=False)

    assert_user_error(result, "`company_plan_hist`", "not configured", "company_plan_history")
    assert not project.store.exists()


def test_a_table_is_synced_by_its_name_in_any_case_and_once_however_often_named(
    project: Project,
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])

    project.cli(
        "sync", "--table", "COMPANY_PLAN_HISTORY", "--table", "company_plan_history", "--dry-run"
    )
    project.cli("sync", "--table", "Company_Plan_History")

    runs = project.query("SELECT table_name, rows_read FROM _pitsync.runs")
    assert runs == [("company_plan_history", 1)]


# --- finding the config file ---------------------------------------------------------------


def test_missing_config_file_given_by_flag_is_a_user_error(tmp_path: Path) -> None:
    result = run_pitsync(tmp_path, "--config", "nowhere.toml", "runs")

    assert_user_error(result, "nowhere.toml", "not found", "--config")


def test_a_config_file_that_cannot_be_read_is_a_user_error(tmp_path: Path) -> None:
    path = Path(config_file(tmp_path))
    prefix = unreadable(path)

    result = run_pitsync(tmp_path, "--config", str(path), "runs", prefix=prefix)

    assert_user_error(result, f"cannot read config file {path}: permission denied")


def test_a_config_file_in_a_folder_that_cannot_be_entered_is_a_user_error(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    path = config_file(locked)
    prefix = unreadable(locked)

    result = run_pitsync(tmp_path, "--config", path, "runs", prefix=prefix)

    assert_user_error(result, f"cannot read config file {path}", "permission denied")


@pytest.mark.parametrize("command", [["runs"], ["delete-profiles", "--id", "u1"]])
def test_a_store_that_cannot_be_read_is_a_user_error(tmp_path: Path, command: list[str]) -> None:
    config_file(tmp_path)
    store = tmp_path / "store.duckdb"
    duckdb.connect(str(store)).close()
    prefix = unreadable(store)

    result = run_pitsync(tmp_path, *command, prefix=prefix)

    assert_user_error(result, f"cannot read the store {store}: permission denied")


ON_A_STORE = [["runs"], ["delete-profiles", "--id", "u1"], ["drop-table", "plans"]]


@pytest.mark.parametrize("command", ON_A_STORE)
def test_a_store_path_naming_a_pipe_is_refused_without_waiting_on_it(
    tmp_path: Path, command: list[str]
) -> None:
    config_file(tmp_path)
    os.mkfifo(tmp_path / "store.duckdb")

    result = run_pitsync(tmp_path, *command)  # opening the pipe would wait for a writer

    assert_user_error(result, "is not a regular file")


@pytest.mark.parametrize("command", ON_A_STORE)
def test_a_store_path_naming_a_folder_says_so(tmp_path: Path, command: list[str]) -> None:
    config_file(tmp_path)
    (tmp_path / "store.duckdb").mkdir()

    result = run_pitsync(tmp_path, *command)

    assert_user_error(result, "store.duckdb is a folder; set [store] path to a file")


@pytest.mark.parametrize("command", ON_A_STORE)
def test_an_empty_store_file_says_to_remove_it(tmp_path: Path, command: list[str]) -> None:
    config_file(tmp_path)
    store = tmp_path / "store.duckdb"
    store.touch()

    result = run_pitsync(tmp_path, *command)

    assert_user_error(result, "is an empty file", "remove it")
    assert store.read_bytes() == b""


def test_a_config_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "settings").mkdir()

    result = run_pitsync(tmp_path, "--config", "settings", "runs")

    assert_user_error(result, "config file settings is a folder", "settings/pitsync.toml")
    assert "not found" not in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_empty_config_path_is_a_usage_error(tmp_path: Path, where: str) -> None:
    # An unset variable in `--config "$CONFIG"` must not quietly mean ./pitsync.toml.
    config_file(tmp_path)
    args = ["--config", "", "runs"] if where == "before" else ["runs", "--config", ""]

    result = run_pitsync(tmp_path, *args)

    assert result.returncode == 2, result.stderr
    assert "--config: the config path is empty" in result.stderr


def test_pitsync_config_variable_is_used_without_the_flag(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    moved = project.config_path.rename(project.root / "elsewhere.toml")
    (project.root / "cwd").mkdir()

    result = run_pitsync(project.root / "cwd", "sync", "--all", env_config=str(moved))

    # The store path is read from the config's folder, not the working folder.
    assert result.returncode == 0, result.stderr
    assert project.store.is_file()
    assert list((project.root / "cwd").iterdir()) == []


def test_missing_file_named_by_pitsync_config_names_the_variable(tmp_path: Path) -> None:
    result = run_pitsync(tmp_path, "runs", env_config=str(tmp_path / "gone.toml"))

    assert_user_error(result, "gone.toml", "PITSYNC_CONFIG")


def test_config_flag_wins_over_the_variable(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])

    result = run_pitsync(
        project.root,
        "--config",
        str(project.config_path),
        "sync",
        "--all",
        env_config=str(project.root / "gone.toml"),
    )

    assert result.returncode == 0, result.stderr
    assert project.store.is_file()


def test_pitsync_toml_in_the_working_folder_is_used_by_default(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])

    result = run_pitsync(project.root, "sync", "--all")

    assert result.returncode == 0, result.stderr
    assert project.store.is_file()


# --- each history table owns its properties (DESIGN rule 11) -------------------------------


def billing_history(
    project: Project, *, kind: str = "group_history", plan_column: str = "plan"
) -> None:
    """A second history table of companies that also has a `plan` column."""
    project.source_sql(
        f"CREATE TABLE company_billing (company_id VARCHAR, {plan_column} VARCHAR, mrr INTEGER, "
        "billed_from TIMESTAMPTZ)",
        "INSERT INTO company_billing VALUES ('c1', 'annual', 100, '2024-01-05 00:00:00+00')",
    )
    settings = {"group_key": "company_id"} if kind == "group_history" else {}
    project.configure(
        "company_billing", kind=kind, id_column="company_id", start_time="billed_from", **settings
    )


def test_second_table_of_a_group_with_the_same_property_fails_naming_both(
    project: Project,
) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    billing_history(project)
    project.cli("sync", "--table", "company_plan_history")

    result = project.cli("sync", "--table", "company_billing", check=False)

    assert_user_error(
        result, "company_billing", "company_plan_history", "`plan`", "drop or rename the column"
    )
    # Nothing of the refused table reached the store.
    con = duckdb.connect(str(project.store), read_only=True)
    try:
        names = con.execute(
            "SELECT table_name FROM duckdb_tables() UNION ALL "
            "SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        assert not [name for (name,) in names if "billing" in name]
        assert ("company_plan_history",) in names
    finally:
        con.close()


def test_the_same_property_in_another_case_is_the_same_property(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    billing_history(project, plan_column="Plan")
    project.cli("sync", "--table", "company_plan_history")

    result = project.cli("sync", "--table", "company_billing", check=False)

    assert_user_error(result, "company_billing", "company_plan_history", "`Plan`")


def test_same_property_on_a_different_kind_of_entity_is_allowed(project: Project) -> None:
    company_history(project, [("c1", "free", 1, "2024-01-01 00:00:00+00", None)])
    billing_history(project, kind="user_history")
    project.sync("company_plan_history")

    # A user's `plan` and a company's `plan` describe different entities.
    record = project.sync("company_billing")

    assert (record.status, record.inserted) == ("succeeded", 1)


@pytest.mark.parametrize("kind", ['"user_profiles"', '"events"', '"group_history"'])
def test_a_table_named_profiles_is_refused_as_the_name_of_profile_update_runs(
    tmp_path: Path, kind: str
) -> None:
    # `pitsync runs --table profiles` and the quarantine would mix its runs with those
    # of engage and import-csv.
    path = config_file(tmp_path, "[tables.company_plan_history]", "[tables.Profiles]")
    Path(path).write_text(
        Path(path).read_text().replace('kind = "group_history"', f"kind = {kind}"),
        encoding="utf-8",
    )

    with pytest.raises(ConfigError, match=in_order("`Profiles`", "profile updates", 'from = "')):
        load_config(path)


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            "[tables.company_plan_history]",
            '[tables."a\\u0000b"]',
            '[tables."a\\u0000b"]: the table',
        ),
        ("[sources.warehouse]", '[sources."w\\u0000"]', '[sources."w\\u0000"]: the source'),
    ],
)
def test_a_nul_character_in_a_section_name_is_refused(
    tmp_path: Path, old: str, new: str, said: str
) -> None:
    config_file(tmp_path, old, new)

    result = run_pitsync(tmp_path, "runs")

    assert_user_error(result, said, "holds a NUL character")


@pytest.mark.parametrize(("value", "said"), [("true", "got true"), ("false", "got false")])
def test_a_boolean_where_text_goes_is_named_as_toml_writes_it(
    tmp_path: Path, value: str, said: str
) -> None:
    path = config_file(
        tmp_path, 'path = "store.duckdb"', f'path = "store.duckdb"\nmemory_limit = {value}'
    )

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"[store]: `memory_limit` must be a non-empty string, {said}"


@pytest.mark.parametrize(
    ("insert_id", "key"),
    [("distinct_id", "id_column"), ("EVENT", "event_column"), ("ts", "time_column")],
)
def test_an_insert_id_that_is_the_events_own_name_user_or_time_is_refused(
    tmp_path: Path, insert_id: str, key: str
) -> None:
    path = tmp_path / "pitsync.toml"
    path.write_text(
        VALID + '\n[tables.ev]\nsource = "warehouse"\nkind = "events"\nmode = "append"\n'
        f'cursor = "loaded"\ntime_column = "ts"\ninsert_id = "{insert_id}"\n',
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as raised:
        load_config(str(path))

    assert str(raised.value).startswith(
        f"[tables.ev]: `insert_id` = `{insert_id}` is the events' `{key}`; an insert id "
        "tells events apart by a column of its own"
    )
