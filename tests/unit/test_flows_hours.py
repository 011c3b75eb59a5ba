"""Business hours: weekly spans in a time zone, holidays and special days, at injected times."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ivr_flows.route import SHIPPED_FLOWS
from ivr_flows.schema import FlowSet, Schedule, Span
from ivr_flows.simulator import simulate
from ivr_flows.steps import evaluate_hours
from ivr_flows.validator import load_flows

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")

SCHEDULE = Schedule.model_validate(
    {
        "weekly": {"mon": "09:00-18:00", "tue": ["09:00-12:00", "13:00-18:00"], "sat": "09:00-12:00", "sun": "closed"},
        "holidays": ["2026-10-01..2026-10-07", {"date": "2026-12-25", "name": "Christmas"}],
        "special": {"2026-10-04": "10:00-16:00", "2026-11-24": "closed"},
    }
)


def local(text: str, zone: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("at", "verdict"),
    [
        ("2026-11-23T08:59", "closed"),
        ("2026-11-23T09:00", "open"),
        ("2026-11-23T17:59", "open"),
        ("2026-11-23T18:00", "closed"),
        ("2026-11-17T12:30", "closed"),  # Tuesday lunch break
        ("2026-11-17T13:00", "open"),
        ("2026-11-21T11:59", "open"),  # Saturday morning
        ("2026-11-21T12:00", "closed"),
        ("2026-11-22T10:00", "closed"),  # Sunday
        ("2026-11-19T10:00", "closed"),  # Thursday: no hours at all
        ("2026-10-02T10:00", "holiday"),
        ("2026-12-25T10:00", "holiday"),
        ("2026-10-04T11:00", "open"),  # a special day inside a holiday wins
        ("2026-10-04T16:00", "closed"),
        ("2026-11-24T10:00", "closed"),  # a special closed Tuesday
    ],
)
def test_open_closed_or_holiday(at: str, verdict: str) -> None:
    assert evaluate_hours(SCHEDULE, local(at), SHANGHAI) == verdict


def test_the_time_zone_decides_the_local_time() -> None:
    # 01:30 UTC is 09:30 in Shanghai; 10:30 UTC is 18:30 there.
    assert evaluate_hours(SCHEDULE, datetime(2026, 11, 23, 1, 30, tzinfo=UTC), SHANGHAI) == "open"
    assert evaluate_hours(SCHEDULE, datetime(2026, 11, 23, 10, 30, tzinfo=UTC), SHANGHAI) == "closed"
    # The same instant seen from Berlin is 02:30 on Monday: closed.
    assert evaluate_hours(SCHEDULE, datetime(2026, 11, 23, 1, 30, tzinfo=UTC), BERLIN) == "closed"


def test_daylight_saving_time_is_followed() -> None:
    # Berlin moves to summer time on 2026-03-29; 2026-03-30 is a Monday.
    assert evaluate_hours(SCHEDULE, datetime(2026, 3, 30, 7, 0, tzinfo=UTC), BERLIN) == "open"  # 09:00 CEST
    # The same UTC time a week earlier is 08:00 CET, before opening.
    assert evaluate_hours(SCHEDULE, datetime(2026, 3, 23, 7, 0, tzinfo=UTC), BERLIN) == "closed"
    assert evaluate_hours(SCHEDULE, datetime(2026, 3, 30, 6, 59, tzinfo=UTC), BERLIN) == "closed"


@pytest.mark.parametrize("bad", ["18:00-09:00", "25:00-26:00", "09:60-10:00", "nine to five", "24:30-24:45"])
def test_spans_that_are_not_a_time_range_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        Span.model_validate(bad)


def test_a_span_may_end_at_midnight() -> None:
    span = Span.model_validate("18:00-24:00")
    assert span.contains(23 * 60 + 59)
    assert str(span) == "18:00-24:00"


def test_a_holiday_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="end on or after"):
        Schedule.model_validate({"holidays": ["2026-10-07..2026-10-01"]})


# -- the entry node of the shipped main flow decides which flow runs ------------------------------------


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    return load_flows(SHIPPED_FLOWS, entry="main")


@pytest.mark.parametrize(
    ("at", "second_flow"),
    [
        ("2026-11-23T10:00", "main/welcome"),  # Monday morning
        ("2026-11-23T22:00", "after_hours/closed"),  # Monday night
        ("2026-11-22T10:00", "after_hours/closed"),  # Sunday
        ("2026-10-02T10:00", "holiday/holiday_closed"),  # National Day
        ("2026-02-17T10:00", "holiday/holiday_closed"),  # Spring Festival
        ("2026-09-20T10:00", "main/welcome"),  # a Sunday worked to make up for the holiday
        ("2026-12-31T15:30", "after_hours/closed"),  # New Year's Eve closes early
    ],
)
async def test_the_hours_node_picks_the_flow(flows: FlowSet, at: str, second_flow: str) -> None:
    sim = await simulate(flows, "main", inputs=[], at=datetime.fromisoformat(at))
    assert sim.result.nodes()[:2] == ["main/entry", second_flow]


async def test_a_naive_time_is_local_to_the_flow(flows: FlowSet) -> None:
    sim = await simulate(flows, "main", inputs=[], at=datetime(2026, 11, 23, 22, 0))
    assert sim.at.utcoffset() == SHANGHAI.utcoffset(datetime(2026, 11, 23))
    assert sim.result.path[0].result == "closed"
