"""The bundled sample warehouse, built by its script and synced by the real command line.

Its hard cases (sample_warehouse/README.md) each carry an answer worked out by hand; the
events below are theirs, and the expected plan and seats are the README's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project

ROOT = Path(__file__).resolve().parents[1]

# insert_id -> (plan, seats) at the event's moment; None where nothing is defined.
COMPANY_ANSWERS = {
    "hard-ev-dup-1": ("starter", 5),
    "hard-ev-dup-2": ("pro", 12),
    "hard-ev-conflict-1": ("team", 20),
    "hard-ev-conflict-2": ("team", 20),
    "hard-ev-tie-1": ("starter", 5),
    "hard-ev-nullseats-1": ("pro", 10),
    "hard-ev-nullseats-2": ("team", None),
    "hard-ev-nullseats-3": ("team", 30),
    "hard-ev-expiry-1": ("pro", 8),
    "hard-ev-expiry-2": (None, None),
    "hard-ev-expiry-3": (None, None),
    "hard-ev-future-1": ("starter", 2),
    "hard-ev-future-2": ("starter", 2),
    "hard-ev-micro-1": ("starter", 4),
    "hard-ev-micro-2": ("pro", 9),
    "hard-ev-micro-3": ("pro", 9),
    "hard-ev-early-1": (None, None),
    "hard-ev-early-2": ("pro", 7),
    "hard-ev-nohist-1": (None, None),
    "hard-ev-nohist-2": (None, None),
    "hard-ev-badrows-1": ("team", 25),
}
USER_ANSWERS = {
    "hard-ev-naive-1": "free",
    "hard-ev-naive-2": "pro",
    "hard-ev-naive-3": "pro",
    "hard-ev-naive-4": "pro",
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The sample warehouse built into a temporary folder and synced with the shipped config."""
    root = tmp_path_factory.mktemp("sample")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "sample_warehouse" / "build.py"),
            "--out",
            str(root / "sample_warehouse" / "warehouse.duckdb"),
        ],
        check=True,
        capture_output=True,
    )
    shutil.copy(ROOT / "pitsync.toml", root / "pitsync.toml")
    project = Project(root=root)
    project.cli("sync", "--all")
    return project


def query_json(project: Project, sql: str) -> list[dict]:
    return json.loads(project.cli("query", sql, "--format", "json").stdout)


@pytest.mark.slow
def test_hard_case_events_resolve_to_the_documented_company_plan(sample: Project) -> None:
    rows = query_json(
        sample,
        "SELECT e.insert_id, h.plan, h.seats FROM events AS e "
        "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
        "ON h.company_id = e.company_id WHERE e.insert_id LIKE 'hard-ev-%'",
    )
    got = {row["insert_id"]: (row["plan"], row["seats"]) for row in rows}

    assert {key: got[key] for key in COMPANY_ANSWERS} == COMPANY_ANSWERS
    # The equal-tie-breaker conflict resolves to one whole row, 15 seats either way.
    assert got["hard-ev-tie-2"] in {("pro", 15), ("team", 15)}
    assert len(rows) == len({row["insert_id"] for row in rows}), "no event is repeated"


@pytest.mark.slow
def test_naive_user_history_resolves_in_utc(sample: Project) -> None:
    rows = query_json(
        sample,
        "SELECT e.insert_id, u.plan FROM events AS e "
        "LEFT JOIN user_plan_history FOR SYSTEM_TIME AS OF e.time AS u "
        "ON u.user_id = e.distinct_id WHERE e.insert_id LIKE 'hard-ev-naive-%'",
    )
    assert {row["insert_id"]: row["plan"] for row in rows} == USER_ANSWERS


@pytest.mark.slow
def test_sample_bad_rows_are_quarantined_and_future_row_waits(sample: Project) -> None:
    quarantined = query_json(
        sample, "SELECT reason FROM quarantine WHERE table_name = 'company_plan_history'"
    )
    assert sorted(row["reason"] for row in quarantined) == ["missing id", "missing start time"]

    future = json.loads(
        sample.cli(
            "profile",
            "900006",
            "--group-key",
            "company_id",
            "--at",
            "2030-01-01T00:00:00Z",
            "--format",
            "json",
        ).stdout
    )
    assert future == {"plan": "enterprise", "seats": 500}


@pytest.mark.slow
def test_sample_profiles_merge_the_crm_tables_with_history_now(sample: Project) -> None:
    rows = query_json(
        sample,
        "SELECT group_id, properties FROM group_profiles "
        "WHERE group_key = 'company_id' AND group_id IN ('900001', '900006') ORDER BY 1",
    )
    profiles = {row["group_id"]: row["properties"] for row in rows}
    # Name and industry from the companies table; plan and seats from the history, now.
    assert profiles["900001"]["name"] == "Hard Case Duplicate Rows"
    assert profiles["900001"]["industry"] == "software"
    assert (profiles["900001"]["plan"], profiles["900001"]["seats"]) == ("pro", 12)
    # 900006's enterprise row starts in 2030: today it is still on starter.
    assert (profiles["900006"]["plan"], profiles["900006"]["seats"]) == ("starter", 2)

    user = json.loads(sample.cli("profile", "hard-dup-1", "--format", "json").stdout)
    assert user["email"] == "dup.one@hard900001.example"
    assert user["company_id"] == 900001
