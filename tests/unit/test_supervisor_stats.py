"""Statistics as pure functions: call volume, workload, periods in the center's time zone, and safe CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callcenter.web.csvexport import to_csv
from callcenter.web.errors import InvalidInput
from seats.ports import SeatInterval
from supervisor.stats import (
    bucket_start,
    buckets,
    call_volume,
    resolve_range,
    stays,
    workload,
)

UTC_ZONE = ZoneInfo("UTC")
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = datetime(2030, 3, 4, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def stay(
    queue: str,
    entered: datetime,
    *,
    agent: str | None = None,
    wait: float | None = None,
    talk: float | None = None,
    abandoned: bool = False,
) -> dict[str, Any]:
    answered = entered + timedelta(seconds=wait or 0) if agent else None
    return {
        "queue": queue,
        "agent": agent,
        "entered": entered.isoformat(),
        "answered_at": answered.isoformat() if answered else None,
        "wait_time": wait,
        "talk_time": talk,
        "abandoned": abandoned,
    }


def record(started: datetime, outcome: str, *segments: dict[str, Any]) -> tuple[datetime, str, str]:
    return started, outcome, json.dumps(list(segments))


def test_stays_skip_what_cannot_be_read() -> None:
    assert stays(None) == []
    assert stays("not json") == []
    assert stays('{"queue": "support"}') == []
    (only,) = stays('[1, {"queue": "support", "wait_time": "3", "answered_at": "yesterday", "abandoned": true}]')
    assert (only.queue, only.wait, only.answered_at, only.abandoned) == ("support", None, None, True)


def test_call_volume_counts_each_call_once_in_total_and_each_queue_stay_in_its_queue() -> None:
    rows = [
        # 09:00-09:15: two answered (one within 20 s), one abandoned, one after hours.
        record(at(9, 1), "answered", stay("support", at(9, 1), agent="PJSIP/1001", wait=12, talk=60)),
        record(at(9, 5), "answered", stay("support", at(9, 5), agent="PJSIP/1002", wait=45, talk=30)),
        record(at(9, 7), "abandoned", stay("support", at(9, 7), abandoned=True, wait=80)),
        record(at(9, 14, 59), "after_hours"),
        # 09:15-09:30: an expert handoff (two stays), a voicemail to an expert nobody took, a caller lost in the IVR.
        record(
            at(9, 20),
            "answered",
            stay("support", at(9, 20), agent="PJSIP/1001", wait=5, talk=100),
            stay("expert", at(9, 22), agent="PJSIP/2001", wait=25, talk=200),
        ),
        record(
            at(9, 25),
            "voicemail",
            stay("support", at(9, 25), agent="PJSIP/1002", wait=3, talk=20),
            stay("expert", at(9, 26)),
        ),
        record(at(9, 29), "abandoned_in_ivr"),
        record(at(9, 29, 30), "something new"),
    ]
    result = call_volume(rows, start=at(9), end=at(10), interval="15m", zone=UTC_ZONE, service_level=20)
    totals = {row["period"]: row for row in result["totals"]}
    assert list(totals) == [at(9, m).isoformat() for m in (0, 15, 30, 45)]
    first = totals[at(9).isoformat()]
    assert {k: first[k] for k in ("offered", "answered", "abandoned", "after_hours", "voicemail", "failed")} == {
        "offered": 4,
        "answered": 2,
        "abandoned": 1,
        "after_hours": 1,
        "voicemail": 0,
        "failed": 0,
    }
    # Three calls reached a queue; one was answered within 20 s.
    assert (first["answered_within_sl"], first["service_level"]) == (1, round(1 / 3, 4))
    assert (first["avg_wait"], first["avg_talk"]) == (28.5, 45.0)
    second = totals[at(9, 15).isoformat()]
    assert (second["offered"], second["answered"], second["voicemail"], second["abandoned_in_ivr"]) == (4, 1, 1, 1)
    # An outcome the statistics do not know is counted as failed, never dropped.
    assert second["failed"] == 1
    assert totals[at(9, 30).isoformat()]["offered"] == 0
    assert totals[at(9, 45).isoformat()]["service_level"] is None

    queues = {(row["period"], row["queue"]): row for row in result["queues"]}
    support = queues[(at(9).isoformat(), "support")]
    assert (support["offered"], support["answered"], support["abandoned"], support["answered_within_sl"]) == (
        3,
        2,
        1,
        1,
    )
    assert support["service_level"] == round(1 / 3, 4)
    assert (support["avg_wait"], support["avg_talk"]) == (28.5, 45.0)
    none = queues[(at(9).isoformat(), None)]
    assert (none["offered"], none["after_hours"], none["service_level"]) == (1, 1, None)
    expert = queues[(at(9, 15).isoformat(), "expert")]
    assert (expert["offered"], expert["answered"], expert["voicemail"], expert["answered_within_sl"]) == (2, 1, 1, 0)
    late_support = queues[(at(9, 15).isoformat(), "support")]
    assert (late_support["offered"], late_support["answered"], late_support["answered_within_sl"]) == (2, 2, 2)
    late_none = queues[(at(9, 15).isoformat(), None)]
    assert (late_none["offered"], late_none["abandoned_in_ivr"], late_none["failed"]) == (2, 1, 1)


def test_days_and_hours_follow_the_center_s_time_zone() -> None:
    # 23:30 UTC on the 3rd is 07:30 on the 4th in Shanghai.
    late = datetime(2030, 3, 3, 23, 30, tzinfo=UTC)
    assert bucket_start(late, "day", SHANGHAI).isoformat() == "2030-03-04T00:00:00+08:00"
    assert bucket_start(late, "hour", SHANGHAI).isoformat() == "2030-03-04T07:00:00+08:00"
    assert bucket_start(late.replace(minute=44), "15m", SHANGHAI).isoformat() == "2030-03-04T07:30:00+08:00"
    start = datetime(2030, 3, 4, tzinfo=SHANGHAI)
    days = buckets(start, start + timedelta(days=3), "day", SHANGHAI)
    assert [day.isoformat() for day in days] == [
        "2030-03-04T00:00:00+08:00",
        "2030-03-05T00:00:00+08:00",
        "2030-03-06T00:00:00+08:00",
    ]
    result = call_volume(
        [record(late, "answered")],
        start=start,
        end=start + timedelta(days=1),
        interval="day",
        zone=SHANGHAI,
        service_level=20,
    )
    assert [row["offered"] for row in result["totals"]] == [1]


def test_a_day_with_a_daylight_saving_change_has_23_hours() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2030, 3, 31, tzinfo=paris)
    hours = buckets(start, datetime(2030, 4, 1, tzinfo=paris), "hour", paris)
    assert len(hours) == 23
    assert "2030-03-31T02:00:00+01:00" not in [hour.isoformat() for hour in hours]


def test_too_many_periods_and_bad_ranges_are_refused() -> None:
    with pytest.raises(InvalidInput):
        buckets(at(0), at(0) + timedelta(days=200), "15m", UTC_ZONE)
    now = at(12)
    with pytest.raises(InvalidInput):
        resolve_range(at(10), at(9), now=now, zone=UTC_ZONE, max_days=31)
    with pytest.raises(InvalidInput):
        resolve_range(at(0), at(0) + timedelta(days=32), now=now, zone=UTC_ZONE, max_days=31)
    # Naive times are the center's local time; the default is today so far.
    begin, end = resolve_range(datetime(2030, 3, 4, 8), None, now=now, zone=SHANGHAI, max_days=31)
    assert (begin, end) == (datetime(2030, 3, 4, 0, tzinfo=UTC), now)
    assert resolve_range(None, None, now=now, zone=SHANGHAI, max_days=31)[0] == datetime(2030, 3, 3, 16, tzinfo=UTC)


def _interval(kind: str, user: int, start: datetime, end: datetime | None, reason: str | None = None) -> SeatInterval:
    names = {1: "ann", 2: "bob"}
    interfaces = {1: "PJSIP/1001", 2: "PJSIP/1002"}
    return SeatInterval(user, names[user], interfaces[user], kind, reason, start, end)


def test_workload_attributes_calls_to_whoever_sat_at_the_seat_and_splits_time_by_hour() -> None:
    intervals = [
        _interval("login", 1, at(8, 30), at(10, 30)),
        _interval("pause", 1, at(9, 50), at(10, 10), "lunch"),
        _interval("pause", 1, at(10, 15), at(10, 20), "break"),
        # bob logs in at 1001 after ann left, and is still logged in.
        _interval("login", 2, at(10, 30), None),
    ]
    segments = [
        json.dumps([stay("support", at(9), agent="PJSIP/1001", wait=10, talk=120)]),
        json.dumps([stay("support", at(9, 40), agent="PJSIP/1001", wait=0, talk=60)]),
        json.dumps([stay("expert", at(10, 40), agent="PJSIP/1001", wait=0, talk=30)]),
        # Answered before the range: not counted.
        json.dumps([stay("support", at(7), agent="PJSIP/1001", wait=0, talk=30)]),
        # Nobody was logged in at 1002: counted under the seat alone.
        json.dumps([stay("support", at(9, 5), agent="PJSIP/1002", wait=0, talk=15)]),
    ]
    wrapups = {"support": 10.0, "expert": 30.0}
    agents, hours = workload(
        [replace_interface(item) for item in intervals],
        segments,
        start=at(8),
        end=at(11),
        wrapup_for=wrapups.__getitem__,
        zone=UTC_ZONE,
    )
    by_name = {row["username"]: row for row in agents}
    ann = by_name["ann"]
    assert ann["login_seconds"] == 2 * 3600
    assert ann["pause_seconds"] == 25 * 60
    assert ann["pause_by_reason"] == {"break": 300.0, "lunch": 1200.0}
    assert (ann["handled"], ann["talk_seconds"], ann["wrapup_seconds_estimated"]) == (2, 180.0, 20.0)
    assert ann["aht_seconds"] == 100.0
    assert ann["calls_per_hour"] == 1.0
    bob = by_name["bob"]
    assert (bob["login_seconds"], bob["handled"], bob["talk_seconds"], bob["wrapup_seconds_estimated"]) == (
        1800.0,
        1,
        30.0,
        30.0,
    )
    assert bob["calls_per_hour"] == 2.0
    seat_only = by_name[None]
    assert (seat_only["interfaces"], seat_only["handled"], seat_only["login_seconds"]) == (["PJSIP/1002"], 1, 0.0)
    assert seat_only["calls_per_hour"] is None

    ann_hours = {row["hour"]: row for row in hours if row["username"] == "ann"}
    assert {hour: row["login_seconds"] for hour, row in ann_hours.items()} == {
        at(8).isoformat(): 1800.0,
        at(9).isoformat(): 3600.0,
        at(10).isoformat(): 1800.0,
    }
    assert ann_hours[at(9).isoformat()]["pause_seconds"] == 600.0
    assert ann_hours[at(10).isoformat()]["pause_seconds"] == 900.0
    assert ann_hours[at(9).isoformat()]["handled"] == 2
    assert ann_hours[at(9).isoformat()]["talk_seconds"] == 180.0
    bob_hours = [row for row in hours if row["username"] == "bob"]
    assert [(row["hour"], row["login_seconds"], row["handled"]) for row in bob_hours] == [
        (at(10).isoformat(), 1800.0, 1)
    ]


def replace_interface(interval: SeatInterval) -> SeatInterval:
    # bob's login is at ann's seat (PJSIP/1001): the seat, not the person, answers calls.
    if interval.username == "bob":
        return SeatInterval(
            interval.user_id,
            "bob",
            "PJSIP/1001",
            interval.kind,
            interval.reason,
            interval.started_at,
            interval.ended_at,
        )
    return interval


def test_csv_quotes_what_needs_it_and_defuses_formulas() -> None:
    hostile = [
        {"queue": '=HYPERLINK("http://evil.example","x")', "n": 1},
        {"queue": "+1-555", "n": -2},
        {"queue": "@SUM(A1)", "n": None},
        {"queue": '-cmd|" /C calc"!A0', "n": 3.5},
        {"queue": 'line\nbreak, "quoted"', "n": True},
        {"queue": "\tTAB", "n": 0},
    ]
    text = to_csv(("queue", "n"), hostile)
    assert text.startswith("queue,n\r\n")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1:] == [
        ['\'=HYPERLINK("http://evil.example","x")', "1"],
        ["'+1-555", "-2"],
        ["'@SUM(A1)", ""],
        ['\'-cmd|" /C calc"!A0', "3.5"],
        ['line\nbreak, "quoted"', "true"],
        ["'\tTAB", "0"],
    ]
