"""Reported point-in-time failures (fixtures/point_in_time_cases.json), with their answers.

Each case is seeded into a real warehouse file, synced, and asked through the temporal
SQL; the expected values are the ones the case file states.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Project,
    company_history,
    configure_company_history,
    login_events,
    resolved,
    utc,
)

CASES = {
    case["id"]: case
    for case in json.loads(
        (Path(__file__).parent / "fixtures" / "point_in_time_cases.json").read_text()
    )
}


def seed_case(project: Project, case: dict[str, Any], **settings: Any) -> None:
    """The case's history rows and events, as a warehouse table each."""
    rows = [
        (
            row["company_id"],
            row["plan"],
            row.get("seats"),
            row["start_timestamp"],
            row.get("updated_at"),
        )
        for row in case["input"]["history"]["rows"]
    ]
    company_history(project, rows, **settings)
    login_events(project, [(e["id"], e["distinct_id"], e["time"]) for e in case["input"]["events"]])
    project.sync("company_plan_history")
    project.sync("product_events")


def stored_intervals(project: Project) -> list[dict[str, Any]]:
    rows = project.query(
        "SELECT start_time, end_time FROM company_plan_history ORDER BY start_time"
    )
    return [{"start": start, "end": end} for start, end in rows]


def expected_intervals(intervals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"start": utc(i["start"]), "end": utc(i["end"]) if i["end"] else None} for i in intervals
    ]


def test_c01_null_makes_property_undefined_not_unchanged(project: Project) -> None:
    case = CASES["C01"]
    seed_case(project, case)

    assert resolved(project) == case["expected"]["resolved"]
    assert stored_intervals(project) == expected_intervals(case["expected"]["row_intervals"])
    profile = json.loads(
        project.cli("profile", "c1", "--group-key", "company_id", "--format", "json").stdout
    )
    assert profile == case["expected"]["latest_profile"]


def test_c03_start_inclusive_end_exclusive_to_the_microsecond(project: Project) -> None:
    case = CASES["C03"]
    seed_case(project, case)

    assert resolved(project) == case["expected"]["resolved"]
    assert stored_intervals(project) == expected_intervals(case["expected"]["row_intervals"])


def test_c04_ties_resolve_by_tie_breaker_without_fan_out(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    case = CASES["C04"]
    expected = case["expected"]
    with caplog.at_level(logging.WARNING, logger="pitsync"):
        seed_case(project, case, tie_breaker=case["input"]["tie_break_column"])

    answers = resolved(project)
    assert len(answers) == expected["output_event_rows"]
    assert answers == expected["resolved"]
    assert stored_intervals(project) == expected_intervals(expected["row_intervals_of_winners"])
    hidden = project.query("SELECT count(*) FROM all_events WHERE event = 'company_plan_history'")
    assert hidden == [(expected["hidden_event_count"],)]
    assert any(expected["warnings"][0] in message for message in caplog.messages)


def test_c04_without_tie_breaker_one_whole_row_wins_in_any_input_order(
    project: Project,
) -> None:
    case = CASES["C04"]
    seed_case(project, case)
    first = resolved(project)["e2"]

    # The same rows inserted in reverse order must give the same winner.
    reversed_case = json.loads(json.dumps(case))
    reversed_case["input"]["history"]["rows"].reverse()
    seed_case(project, reversed_case)
    second = resolved(project)["e2"]

    assert first == second
    assert (first["plan"], first["seats"]) in {("pro", 10), ("team", 12)}
    assert project.query(
        "SELECT conflicts FROM runs WHERE table_name = 'company_plan_history' "
        "ORDER BY run_id DESC LIMIT 1"
    ) == [(1,)]


def test_c06_events_without_a_matching_interval_are_kept_with_nulls(project: Project) -> None:
    case = CASES["C06"]
    seed_case(project, case)

    answers = resolved(project)
    assert len(answers) == case["expected"]["output_event_rows"]
    assert answers == case["expected"]["resolved"]


def test_c06_empty_history_keeps_every_event(project: Project) -> None:
    case = CASES["C06"]
    empty = json.loads(json.dumps(case))
    empty["input"]["history"]["rows"] = []
    seed_case(project, empty)

    answers = resolved(project)
    assert len(answers) == case["expected"]["variant_empty_history"]["output_event_rows"]
    assert all(value == {"plan": None, "seats": None} for value in answers.values())


@pytest.mark.slow
@pytest.mark.parametrize("process_zone", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_c10_naive_start_means_utc_whatever_the_process_zone(
    project: Project, process_zone: str
) -> None:
    case = CASES["C10"]
    project.source_sql(
        "CREATE TABLE company_plan_history (company_id VARCHAR, plan VARCHAR, "
        "start_timestamp TIMESTAMP)",
        *(
            f"INSERT INTO company_plan_history VALUES ('{r['company_id']}', '{r['plan']}', "
            f"'{r['start_timestamp']}')"
            for r in case["input"]["history"]["rows"]
        ),
    )
    configure_company_history(project)
    login_events(project, [(e["id"], e["distinct_id"], e["time"]) for e in case["input"]["events"]])

    env = {"TZ": process_zone}
    project.cli("sync", "--all", env=env)
    out = project.cli(
        "query",
        "SELECT e.insert_id, h.plan, h.start_time FROM events AS e "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id ORDER BY e.insert_id",
        "--format",
        "json",
        env=env,
    )
    rows = json.loads(out.stdout)
    expected = case["expected"]["resolved_for_every_session_time_zone"]
    assert {row["insert_id"]: {"plan": row["plan"]} for row in rows} == expected
    pro_start = {row["start_time"] for row in rows if row["plan"] == "pro"}
    assert pro_start == {"2024-03-01T14:00:00+00:00"}
