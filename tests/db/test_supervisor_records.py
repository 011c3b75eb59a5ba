"""Statistics and the board's day from stored rows, on SQLite and PostgreSQL, through the HTTP API (JSON and CSV).

The rows are written here as the call recorder and the seat service write them, for a scripted day whose every
figure is known; the answers must match exactly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import String, Text, column, inspect, table

from callcenter.auth.directory import UserDirectory
from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import auth_middleware
from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService
from callcenter.db import Database, UtcDateTime
from callcenter.keys import AUTH
from callcenter.model import LiveModel
from callcenter.web.errors import error_middleware
from calls.models import CallRecord
from calls.reads import CallReads
from crm_bridge.reads import CrmReads
from seats.models import AgentInterval, AgentSeat
from seats.reads import SeatReads
from supervisor.board import BoardService
from supervisor.http import supervisor_routes
from supervisor.keys import BOARD, STATS
from supervisor.stats import StatsService

PASSWORD = "statistics-password-1"
DAY = datetime(2031, 5, 6, tzinfo=UTC)
WRAPUP = {"support": 10.0, "expert": 30.0}


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def _stay(queue: str, entered: datetime, agent: str | None, wait: float, talk: float | None) -> dict[str, Any]:
    answered = entered + timedelta(seconds=wait) if agent else None
    return {
        "queue": queue,
        "agent": agent,
        "entered": entered.isoformat(),
        "answered_at": answered.isoformat() if answered else None,
        "wait_time": wait,
        "talk_time": talk,
        "abandoned": agent is None and talk is None,
    }


def call(
    linkedid: str, started: datetime, outcome: str, *stays: dict[str, Any], direction: str = "inbound"
) -> CallRecord:
    waits = [stay["wait_time"] for stay in stays if stay["wait_time"] is not None]
    talks = [stay["talk_time"] for stay in stays if stay["talk_time"] is not None]
    return CallRecord(
        linkedid=linkedid,
        direction=direction,
        caller_number='=cmd|"/C calc"!A0',
        caller_name="Caller",
        did="4000",
        started_at=started,
        ended_at=started + timedelta(minutes=5),
        outcome=outcome,
        ivr_flow=None,
        ivr_outcome=None,
        ivr_choice=None,
        ivr_path="[]",
        queues=json.dumps([stay["queue"] for stay in stays]),
        segments=json.dumps(list(stays)),
        wait_time=sum(waits) if waits else None,
        talk_time=sum(talks) if talks else None,
        agent=next((stay["agent"] for stay in stays if stay["agent"]), None),
        expert=None,
        handoff_notes=None,
        recording_ids="[]",
        source="live",
        created_at=started + timedelta(minutes=5),
    )


def calls() -> list[CallRecord]:
    """The scripted day, 09:00-11:00 UTC (new rows each time: a row object belongs to one database)."""
    return [
        call("c1", at(9, 2), "answered", _stay("support", at(9, 2), "PJSIP/1001", 8, 120)),
        call("c2", at(9, 10), "answered", _stay("support", at(9, 10), "PJSIP/1002", 40, 60)),
        call("c3", at(9, 20), "abandoned", _stay("support", at(9, 20), None, 65, None)),
        call("c4", at(9, 40), "after_hours"),
        call(
            "c5",
            at(10, 5),
            "answered",
            _stay("support", at(10, 5), "PJSIP/1001", 5, 90),
            _stay("expert", at(10, 7), "PJSIP/2001", 12, 300),
        ),
        call("c6", at(10, 30), "voicemail"),
        call("c7", at(10, 50), "abandoned_in_ivr"),
        # A supervisor's listen call and a call of another day are not the day's customer calls.
        call("desk", at(10, 20), "failed", direction="internal"),
        call("ccspy-0123456789abcdef", at(10, 21), "failed"),
        call(
            "old",
            at(9) - timedelta(days=1),
            "answered",
            _stay("support", at(9) - timedelta(days=1), "PJSIP/1001", 1, 1),
        ),
        # A hostile queue name reaches the CSV untouched by any spreadsheet.
        call("c8", at(10, 55), "abandoned", _stay("=HYPERLINK(1)", at(10, 55), None, 3, None)),
    ]


def interval(
    user_id: int,
    username: str,
    interface: str,
    kind: str,
    start: datetime,
    end: datetime | None,
    reason: str | None = None,
) -> AgentInterval:
    return AgentInterval(
        user_id=user_id,
        username=username,
        interface=interface,
        kind=kind,
        reason=reason,
        queues=None,
        started_at=start,
        ended_at=end,
    )


@pytest.fixture
async def stats_client(
    database: Database, service: AuthService
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], dict[str, int]]]:
    ids = {}
    for name, roles, ext in (
        ("ann", [Role.AGENT], "1001"),
        ("bob", [Role.AGENT], "1002"),
        ("eve", [Role.EXPERT], "2001"),
        ("boss", [Role.SUPERVISOR], "3001"),
        ("root", [Role.ADMIN], None),
    ):
        ids[name] = (
            await service.create_user(name, PASSWORD, roles=roles, extension=ext, teams=["blue"] if ext else [])
        ).id
    async with database.session() as session:
        session.add_all(calls())
        session.add_all(
            [
                interval(ids["ann"], "ann", "PJSIP/1001", "login", at(8, 45), at(10, 45)),
                interval(ids["ann"], "ann", "PJSIP/1001", "pause", at(9, 30), at(9, 45), "break"),
                interval(ids["bob"], "bob", "PJSIP/1002", "login", at(9), None),
                interval(ids["bob"], "bob", "PJSIP/1002", "pause", at(10, 30), at(11, 15), "lunch"),
                interval(ids["eve"], "eve", "PJSIP/2001", "login", at(10), at(12)),
                # Another day's interval does not count.
                interval(
                    ids["eve"], "eve", "PJSIP/2001", "login", at(8) - timedelta(days=2), at(9) - timedelta(days=2)
                ),
            ]
        )
    stats = StatsService(
        CallReads(database),
        SeatReads(database),
        business=CrmReads(database),
        zone=ZoneInfo("UTC"),
        service_level=20,
        wrapup_for=WRAPUP.__getitem__,
        max_days=31,
        now=lambda: at(11, 30),
    )
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[STATS] = stats
    app[BOARD] = board_service(database)
    app.add_routes(auth_routes)
    app.add_routes(supervisor_routes)
    async with TestClient(TestServer(app)) as client:
        yield client, ids


def board_service(database: Database) -> BoardService:
    """The board at 10:59 of the scripted day, on the ports the composition root gives it."""
    return BoardService(
        CallReads(database),
        SeatReads(database),
        UserDirectory(database),
        LiveModel,
        zone=ZoneInfo("UTC"),
        service_level=20,
        clock=at(10, 59).timestamp,
    )


async def _get(client: TestClient[web.Request, web.Application], user: str, path: str) -> tuple[int, Any, str]:
    login = await client.post("/api/v1/login", json={"username": user, "password": PASSWORD})
    token = (await login.json())["token"]
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    text = await response.text()
    body = json.loads(text) if response.content_type == "application/json" else text
    return response.status, body, response.content_type


RANGE = "from=2031-05-06T09:00:00Z&to=2031-05-06T11:00:00Z"


async def test_call_volume_of_a_scripted_day_matches_exactly(
    stats_client: tuple[TestClient[web.Request, web.Application], dict[str, int]],
) -> None:
    client, _ = stats_client
    status, body, _ = await _get(client, "boss", f"/api/v1/stats/calls?{RANGE}&interval=hour")
    assert status == 200, body
    assert (body["from"], body["to"], body["timezone"]) == (
        "2031-05-06T09:00:00+00:00",
        "2031-05-06T11:00:00+00:00",
        "UTC",
    )
    nine, ten = body["totals"]
    counts = ("offered", "answered", "abandoned", "after_hours", "voicemail", "abandoned_in_ivr", "failed")
    assert [nine[key] for key in counts] == [4, 2, 1, 1, 0, 0, 0]
    assert [ten[key] for key in counts] == [4, 1, 1, 0, 1, 1, 0]
    assert (nine["answered_within_sl"], nine["service_level"], nine["avg_wait"], nine["avg_talk"]) == (
        1,
        round(1 / 3, 4),
        24.0,
        90.0,
    )
    queues = {(row["period"][11:16], row["queue"]): row for row in body["queues"]}
    assert set(queues) == {
        ("09:00", "support"),
        ("09:00", None),
        ("10:00", "support"),
        ("10:00", "expert"),
        ("10:00", None),
        ("10:00", "=HYPERLINK(1)"),
    }
    support = queues[("09:00", "support")]
    assert [support[key] for key in ("offered", "answered", "abandoned", "answered_within_sl")] == [3, 2, 1, 1]
    assert queues[("10:00", "expert")]["answered_within_sl"] == 1
    assert queues[("10:00", None)]["offered"] == 2

    status, text, content_type = await _get(client, "boss", f"/api/v1/stats/calls?{RANGE}&interval=day&format=csv")
    assert (status, content_type) == (200, "text/csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    total = next(row for row in rows if row["queue"] == "(all)")
    assert (total["period"], total["offered"], total["answered"], total["abandoned"]) == (
        "2031-05-06T00:00:00+00:00",
        "8",
        "3",
        "2",
    )
    assert {row["queue"] for row in rows} == {"(all)", "(none)", "support", "expert", "'=HYPERLINK(1)"}


async def test_workload_per_agent_and_per_hour_matches_exactly(
    stats_client: tuple[TestClient[web.Request, web.Application], dict[str, int]],
) -> None:
    client, ids = stats_client
    status, body, _ = await _get(client, "root", f"/api/v1/stats/agents?{RANGE}")
    assert status == 200, body
    agents = {row["username"]: row for row in body["agents"]}
    assert set(agents) == {"ann", "bob", "eve"}
    ann = agents["ann"]
    assert ann["user_id"] == ids["ann"]
    assert (ann["login_seconds"], ann["pause_seconds"], ann["pause_by_reason"]) == (6300.0, 900.0, {"break": 900.0})
    assert (ann["handled"], ann["talk_seconds"], ann["wrapup_seconds_estimated"], ann["aht_seconds"]) == (
        2,
        210.0,
        20.0,
        115.0,
    )
    assert ann["calls_per_hour"] == round(2 / 1.75, 3)
    bob = agents["bob"]
    # Logged in from 09:00, still: counted to the end of the range; paused for lunch from 10:30.
    assert (bob["login_seconds"], bob["pause_seconds"], bob["handled"]) == (7200.0, 1800.0, 1)
    eve = agents["eve"]
    assert (eve["login_seconds"], eve["handled"], eve["talk_seconds"], eve["wrapup_seconds_estimated"]) == (
        3600.0,
        1,
        300.0,
        30.0,
    )

    status, body, _ = await _get(client, "boss", f"/api/v1/stats/agents/hourly?{RANGE}")
    assert status == 200, body
    ann_hours = [
        (row["hour"][11:16], row["login_seconds"], row["pause_seconds"], row["handled"])
        for row in body["items"]
        if row["username"] == "ann"
    ]
    assert ann_hours == [("09:00", 3600.0, 900.0, 1), ("10:00", 2700.0, 0.0, 1)]

    status, text, _ = await _get(client, "boss", f"/api/v1/stats/agents?{RANGE}&format=csv")
    rows = {row["username"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}
    assert (rows["ann"]["pause_break"], rows["bob"]["pause_lunch"], rows["ann"]["interfaces"]) == (
        "900.0",
        "1800.0",
        "PJSIP/1001",
    )


async def test_business_volume_counts_service_records_by_type_and_status(
    stats_client: tuple[TestClient[web.Request, web.Application], dict[str, int]], database: Database
) -> None:
    client, _ = stats_client
    async with database.engine.connect() as connection:
        present = await connection.run_sync(lambda sync: inspect(sync).has_table("service_records"))
    if present:
        records = table(
            "service_records",
            column("type", String),
            column("status", String),
            column("content", Text),
            column("created_by", String),
            column("created_at", UtcDateTime),
            column("updated_at", UtcDateTime),
        )
        rows = [
            ("complaint", "new", at(9)),
            ("complaint", "new", at(9, 30)),
            ("complaint", "resolved", at(10)),
            ("repair_booking", "assigned", at(10, 59)),
            ("repair_booking", "assigned", at(11)),  # the end is not in the range
        ]
        async with database.session() as session:
            for kind, status, created in rows:
                await session.execute(
                    records.insert().values(
                        type=kind, status=status, content="x", created_by="ann", created_at=created, updated_at=created
                    )
                )
    status, body, _ = await _get(client, "boss", f"/api/v1/stats/business?{RANGE}")
    assert status == 200, body
    assert body["available"] is present
    if present:
        assert body["items"] == [
            {"type": "complaint", "status": "new", "count": 2},
            {"type": "complaint", "status": "resolved", "count": 1},
            {"type": "repair_booking", "status": "assigned", "count": 1},
        ]
        assert (body["by_type"], body["total"]) == ({"complaint": 3, "repair_booking": 1}, 4)
        status, text, _ = await _get(client, "boss", f"/api/v1/stats/business?{RANGE}&format=csv")
        assert text.splitlines()[0] == "type,status,count"


async def test_statistics_need_their_permission_and_a_sane_range(
    stats_client: tuple[TestClient[web.Request, web.Application], dict[str, int]],
) -> None:
    client, _ = stats_client
    assert (await _get(client, "ann", f"/api/v1/stats/calls?{RANGE}"))[0] == 403
    assert (await _get(client, "ann", "/api/v1/board"))[0] == 403
    assert (await _get(client, "boss", "/api/v1/stats/calls?from=2031-05-06&to=2031-05-05"))[0] == 400
    assert (await _get(client, "boss", "/api/v1/stats/calls?from=2031-01-01&to=2031-05-05"))[0] == 400
    assert (await _get(client, "boss", "/api/v1/stats/calls?interval=week"))[0] == 400
    assert (await _get(client, "boss", "/api/v1/stats/calls?from=yesterday"))[0] == 400
    assert (await _get(client, "boss", "/api/v1/stats/agents?format=xml"))[0] == 400
    # A date alone is local midnight; the default end is now.
    status, body, _ = await _get(client, "boss", "/api/v1/stats/calls?from=2031-05-06&interval=day")
    assert status == 200, body
    assert (body["from"], body["to"]) == ("2031-05-06T00:00:00+00:00", "2031-05-06T11:30:00+00:00")
    assert body["totals"][0]["offered"] == 8


async def test_the_board_counts_today_s_records_once_and_knows_who_sits_where(
    database: Database, service: AuthService
) -> None:
    ann = await service.create_user("ann", PASSWORD, roles=[Role.AGENT], extension="1001", teams=["blue", "night"])
    async with database.session() as session:
        session.add_all(calls())
        session.add(
            AgentSeat(
                user_id=ann.id,
                interface="PJSIP/1001",
                extension="1001",
                queues='[{"queue": "support", "penalty": 0}]',
                logged_in_at=at(8, 45),
                paused=False,
            )
        )
    board = board_service(database)
    await board.load_directory()
    assert board.directory["PJSIP/1001"].username == "ann"
    assert board.directory["PJSIP/1001"].teams == ("blue", "night")
    assert await board.load_today() == 11
    assert await board.load_today() == 0
    # A record folded in at load is not counted again when its CallRecorded comes.
    known = await CallReads(database).record("c1")
    assert known is not None
    assert not board.record(known)
    snapshot = board.snapshot()
    seats = {seat["interface"]: seat for seat in snapshot["seats"]}
    assert (seats["PJSIP/1001"]["handled_today"], seats["PJSIP/1001"]["handled_this_hour"]) == (2, 1)
    assert seats["PJSIP/1001"]["user"] == "ann"
    support = next(queue for queue in snapshot["queues"] if queue["queue"] == "support")
    assert (support["offered"], support["answered"], support["abandoned"], support["answered_within_sl"]) == (
        4,
        3,
        1,
        2,
    )
