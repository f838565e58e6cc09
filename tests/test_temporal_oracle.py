"""The temporal SQL against a brute-force oracle, on random histories.

Histories are small on purpose, so that ties, NULLs, duplicates and unsorted rows are
common. The oracle reads DESIGN section 2 literally: at moment t, take the entity's rows
with the highest start not after t; identical rows are one row; among differing ones the
highest tie-breaker wins (NULL lowest), then the greatest property values in column
order (NULL lowest), so exactly one answer is right.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitsync.queries.execute import QuerySession
from tests.conftest import Project, company_history

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ONE_MICROSECOND = dt.timedelta(microseconds=1)
ENTITIES = ["a", "b", "c"]

Row = tuple[str, str | None, int | None, dt.datetime, int | None]

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(ENTITIES),
        st.sampled_from(["free", "pro", "team", None]),
        st.sampled_from([1, 5, None]),
        st.integers(min_value=0, max_value=6).map(
            lambda minute: EPOCH + dt.timedelta(minutes=minute)
        ),
        st.sampled_from([1, 2, None]),
    ),
    max_size=14,
)


def oracle(rows: list[Row], entity: str, moment: dt.datetime) -> set[tuple]:
    """The one right (plan, seats) answer at the moment, as a set; {None} when undefined."""
    starts = [start for who, _, _, start, _ in rows if who == entity and start <= moment]
    if not starts:
        return {None}
    latest = max(starts)
    candidates: dict[tuple, int | None] = {}
    for who, plan, seats, start, tie in rows:
        if who == entity and start == latest:
            previous = candidates.get((plan, seats))
            candidates[(plan, seats)] = tie if previous is None else max(previous, tie or previous)
    best = max((tie for tie in candidates.values() if tie is not None), default=None)
    # Then the greatest property values decide, in column order, NULL lowest.
    tied = [values for values, tie in candidates.items() if tie == best]
    return {max(tied, key=lambda values: tuple((v is not None, v) for v in values))}


def probe_moments(rows: list[Row]) -> list[dt.datetime]:
    """Each start, one microsecond before and after it, and a moment before everything."""
    starts = {start for *_, start, _ in rows}
    moments = {EPOCH - dt.timedelta(days=1)}
    for start in starts:
        moments.update({start - ONE_MICROSECOND, start, start + ONE_MICROSECOND})
    return sorted(moments)


def seed(project: Project, rows: list[Row], moments: list[dt.datetime]) -> None:
    company_history(
        project,
        [
            (who, plan, seats, start.isoformat(), updated_at(tie))
            for who, plan, seats, start, tie in rows
        ],
        tie_breaker="updated_at",
    )
    probes = list(itertools.product(ENTITIES + ["nobody"], moments))
    project.source_sql(
        "CREATE OR REPLACE TABLE events (probe INTEGER, event VARCHAR, distinct_id VARCHAR, "
        "company_id VARCHAR, time TIMESTAMPTZ)",
        "INSERT INTO events VALUES "
        + ", ".join(
            f"({n}, 'probe', '{who}', '{who}', '{at.isoformat()}')"
            for n, (who, at) in enumerate(probes)
        ),
    )
    project.configure("probes", kind="events", **{"from": "events"})


def updated_at(tie: int | None) -> str | None:
    """The tie-breaker as the instant the warehouse column holds: later means higher."""
    return None if tie is None else (EPOCH + dt.timedelta(hours=tie)).isoformat()


JOIN_SQL = (
    "SELECT e.distinct_id, e.time, h.plan, h.seats, h.company_id FROM events AS e "
    "LEFT JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
    "ON h.company_id = e.company_id"
)


def check_join_matches_oracle(session: QuerySession, rows: list[Row], probe_count: int) -> None:
    answers = session.query(JOIN_SQL).fetchall()
    assert len(answers) == probe_count, "every probe event is kept exactly once"
    for who, moment, plan, seats, matched in answers:
        expected = oracle(rows, who, moment)
        got = None if matched is None else (plan, seats)
        assert got in expected, (who, moment, got, expected)


FILTERED_JOIN_SQL = (
    "SELECT e.distinct_id, e.time, h.plan, h.seats FROM events AS e "
    "{side} JOIN company_plan_history FOR SYSTEM_TIME AS OF e.time AS h "
    "ON h.company_id = e.company_id AND h.plan = 'pro'"
)


def check_filtered_join_tests_the_holding_interval(session: QuerySession, probe_count: int) -> None:
    """A condition in ON tests the interval that holds the moment, never an older one."""
    plain = {
        (who, moment): (plan, seats)
        for who, moment, plan, seats, matched in session.query(JOIN_SQL).fetchall()
        if matched is not None
    }
    holding_pro = {key: value for key, value in plain.items() if value[0] == "pro"}

    left = session.query(FILTERED_JOIN_SQL.format(side="LEFT")).fetchall()
    assert len(left) == probe_count, "a LEFT JOIN keeps every probe event"
    for who, moment, plan, seats in left:
        expected = holding_pro.get((who, moment), (None, None))
        assert (plan, seats) == expected, (who, moment)

    inner = session.query(FILTERED_JOIN_SQL.format(side="")).fetchall()
    assert {(who, moment): (plan, seats) for who, moment, plan, seats in inner} == holding_pro
    assert len(inner) == len(holding_pro)


def check_filter_matches_oracle(
    session: QuerySession, rows: list[Row], moment: dt.datetime
) -> None:
    answers = session.query(
        "SELECT company_id, plan, seats FROM company_plan_history "
        f"FOR SYSTEM_TIME AS OF TIMESTAMPTZ '{moment.isoformat()}'"
    ).fetchall()
    got = {who: (plan, seats) for who, plan, seats in answers}
    assert len(got) == len(answers), "at most one interval per entity holds a moment"
    for who in ENTITIES:
        assert got.get(who) in oracle(rows, who, moment), (who, moment)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=rows_strategy)
def test_temporal_sql_agrees_with_brute_force_oracle(rows: list[Row]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = Project(root=Path(folder))
        moments = probe_moments(rows)
        seed(project, rows, moments)
        project.sync("company_plan_history")
        project.sync("probes")

        with QuerySession(project.store) as session:
            check_join_matches_oracle(session, rows, probe_count=len(moments) * 4)
            check_filtered_join_tests_the_holding_interval(session, probe_count=len(moments) * 4)
            for moment in moments:
                check_filter_matches_oracle(session, rows, moment)
