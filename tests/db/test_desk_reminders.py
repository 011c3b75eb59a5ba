"""Follow-ups and reminders (issue 18, item 3) on SQLite and PostgreSQL: which records are due and overdue in the
center's calendar, the reminder pushed once to its owner, the overdue notice to the desk, a database outage, and
the due lists over HTTP with who may see whose."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.permissions import Permission
from callcenter.auth.services import AuthService
from callcenter.db import Database
from callcenter.keys import AUTH, HUB
from callcenter.web.errors import error_middleware
from callcenter.web.ws import Client, Hub, ws_routes
from crm_bridge.desk import Desk, DeskRules, ReminderJob, occasions, unclaimed_condition
from crm_bridge.http import crm_routes
from crm_bridge.keys import CRM, CRM_OUTBOX, DESK, EVALUATION_ITEMS, VISITS
from crm_bridge.models import RecordStatus, RecordType, ServiceRecord
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import ServiceRecordIn
from crm_bridge.services import CrmService
from crm_bridge.visit_models import DeskReminder, ReminderKind
from crm_bridge.visits import EvaluationItems, Visits

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>\"'; DROP TABLE service_records; --\r\n=cmd|' /C calc'!A0"
SHANGHAI = ZoneInfo("Asia/Shanghai")

TestClientT = TestClient[web.Request, web.Application]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeHub(Hub):
    """The real hub's choice of recipients, told by hand who has a page open; frames kept instead of sent."""

    def __init__(self) -> None:
        super().__init__(revalidate_seconds=0)
        self.online: dict[int, set[Permission]] = {}
        self.frames: list[tuple[str, dict[str, Any], int | None, Permission | None]] = []

    def recipients(
        self, *, user_id: int | None = None, permission: Permission | None = None, extension: str | None = None
    ) -> list[Client]:
        chosen = [
            uid
            for uid, granted in self.online.items()
            if (user_id is None or uid == user_id) and (permission is None or permission in granted)
        ]
        return [_client(uid) for uid in chosen]

    def send(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        user_id: int | None = None,
        permission: Permission | None = None,
        extension: str | None = None,
        coalesce: float | None = None,
    ) -> int:
        count = len(self.recipients(user_id=user_id, permission=permission))
        if count:
            self.frames.append((event_type, data, user_id, permission))
        return count


class _Who:
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id


class _Client:
    def __init__(self, user_id: int) -> None:
        self.who = _Who(user_id)


def _client(user_id: int) -> Client:
    # The job reads only .who.user_id of a recipient.
    return cast("Client", _Client(user_id))


@pytest.fixture
def clock() -> Clock:
    # 16:30 UTC on the 4th is 00:30 on the 5th in Shanghai: the center's day has turned, UTC's has not.
    return Clock(datetime(2030, 1, 4, 16, 30, tzinfo=UTC))


@pytest.fixture
def rules() -> DeskRules:
    return DeskRules(SHANGHAI, appointment_lead=timedelta(minutes=60), appointment_grace=timedelta(minutes=30))


@pytest.fixture
def crm(database: Database, clock: Clock) -> CrmService:
    return CrmService(database, clock=clock)


@pytest.fixture
def desk(database: Database, rules: DeskRules, clock: Clock) -> Desk:
    return Desk(database, rules, clock=clock)


@pytest.fixture
def visits(database: Database, crm: CrmService, clock: Clock) -> Visits:
    return Visits(database, crm.records, None, zone=SHANGHAI, clock=clock)


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


def job_of(database: Database, desk: Desk, hub: Hub, visits: Visits, clock: Clock) -> ReminderJob:
    return ReminderJob(database, desk, hub, visits, interval=60, complaint_visit_window=timedelta(days=7), clock=clock)


@pytest.fixture
def job(database: Database, desk: Desk, hub: FakeHub, visits: Visits, clock: Clock) -> ReminderJob:
    return job_of(database, desk, hub, visits, clock)


@pytest.fixture
async def users(service: AuthService) -> dict[str, int]:
    found = {}
    for name, role in (("owner", "agent"), ("other", "agent"), ("desk", "backoffice"), ("boss", "supervisor")):
        found[name] = (await service.create_user(name, PASSWORD, roles=[role])).id
    return found


async def record(
    crm: CrmService,
    database: Database,
    *,
    owner: int | None,
    follow_up: date | None = None,
    appointment_at: datetime | None = None,
    status: RecordStatus = RecordStatus.ASSIGNED,
    content: str = "Call back about the washer",
) -> int:
    created, _ = await crm.records.create(
        ServiceRecordIn(
            type=RecordType.REPAIR_BOOKING,
            content=content,
            follow_up=follow_up,
            appointment_at=appointment_at,
            caller_number="13800138000",
            caller_name=HOSTILE,
        ),
        actor="test",
    )
    async with database.session() as session:
        await session.execute(
            update(ServiceRecord).where(ServiceRecord.id == created.id).values(assigned_to=owner, status=status.value)
        )
    return created.id


async def test_follow_ups_are_due_by_the_centers_calendar_not_utcs(
    crm: CrmService, database: Database, desk: Desk, clock: Clock, users: dict[str, int]
) -> None:
    owner = users["owner"]
    today = await record(crm, database, owner=owner, follow_up=date(2030, 1, 5))  # Shanghai's today, UTC's tomorrow
    tomorrow = await record(crm, database, owner=owner, follow_up=date(2030, 1, 6))
    yesterday = await record(crm, database, owner=owner, follow_up=date(2030, 1, 4))  # UTC's today: overdue here
    done = await record(crm, database, owner=owner, follow_up=date(2030, 1, 1), status=RecordStatus.RESOLVED)
    others = await record(crm, database, owner=users["other"], follow_up=date(2030, 1, 5))

    found = await desk.due(owner)
    assert found["today"] == "2030-01-05"
    assert [item["id"] for item in found["items"]] == [yesterday, today]
    assert found["items"][0]["overdue"] == ["follow_up"]
    assert found["items"][1]["overdue"] == []
    assert found["items"][1]["caller_name"] == HOSTILE
    assert (found["due"], found["overdue"]) == (2, 1)
    assert tomorrow not in {item["id"] for item in found["items"]}
    assert done not in {item["id"] for item in (await desk.due("all"))["items"]}
    assert {item["id"] for item in (await desk.due("all"))["items"]} == {yesterday, today, others}

    # A minute before Shanghai's midnight the 5th is not due yet, and the 4th is due but not overdue.
    clock.now = datetime(2030, 1, 4, 15, 59, tzinfo=UTC)
    found = await desk.due(owner)
    assert found["today"] == "2030-01-04"
    assert [(item["id"], item["overdue"]) for item in found["items"]] == [(yesterday, [])]


async def test_a_page_of_the_due_or_overdue_list_holds_the_most_urgent_whatever_their_kind(
    crm: CrmService, database: Database, desk: Desk, clock: Clock, users: dict[str, int]
) -> None:
    owner = users["owner"]
    # Today's follow-ups are due, not overdue; a missed appointment (nobody started) is overdue though it has no
    # follow-up date, which the engines sort last.
    for _ in range(3):
        await record(crm, database, owner=owner, follow_up=date(2030, 1, 5))
    missed = await record(crm, database, owner=owner, appointment_at=clock.now - timedelta(hours=2))
    page = await desk.due(owner, limit=2)
    assert page["items"][0]["id"] == missed
    assert page["items"][0]["overdue"] == ["appointment"]
    assert len(page["items"]) == 2

    # Among overdue ones, the one overdue longest comes first, a follow-up or an appointment alike.
    for _ in range(3):
        await record(crm, database, owner=owner, follow_up=date(2030, 1, 4))
    older = await record(crm, database, owner=owner, appointment_at=clock.now - timedelta(days=3))
    overdue = await desk.overdue("all", limit=2)
    assert [item["id"] for item in overdue["items"]][:1] == [older]
    assert overdue["counts"]["total"] == 5


async def test_appointments_are_due_within_the_lead_and_overdue_past_the_grace_unless_started(
    crm: CrmService, database: Database, desk: Desk, clock: Clock, users: dict[str, int]
) -> None:
    owner, now = users["owner"], clock.now
    soon = await record(crm, database, owner=owner, appointment_at=now + timedelta(minutes=59))
    later = await record(crm, database, owner=owner, appointment_at=now + timedelta(minutes=61))
    missed = await record(crm, database, owner=owner, appointment_at=now - timedelta(minutes=31))
    started = await record(
        crm, database, owner=owner, appointment_at=now - timedelta(minutes=31), status=RecordStatus.IN_PROGRESS
    )
    just_past = await record(crm, database, owner=owner, appointment_at=now - timedelta(minutes=29))

    found = {item["id"]: item for item in (await desk.due(owner))["items"]}
    assert set(found) == {soon, missed, started, just_past}
    assert later not in found
    assert found[missed]["overdue"] == ["appointment"]
    assert found[started]["overdue"] == []
    assert found[just_past]["overdue"] == []
    board = await desk.overdue("all")
    assert [item["id"] for item in board["items"]] == [missed]
    assert board["counts"] == {
        "total": 1,
        "by_owner": [{"user_id": owner, "count": 1}],
        "by_type": {"repair_booking": 1},
    }


def test_occasions_name_the_date_so_a_moved_follow_up_is_a_new_one(rules: DeskRules) -> None:
    now = datetime(2030, 1, 4, 16, 30, tzinfo=UTC)
    row = ServiceRecord(status="assigned", follow_up=date(2030, 1, 4), appointment_at=None)
    assert occasions(row, rules, now) == (["follow_up:2030-01-04"], ["overdue:follow_up:2030-01-04"])
    row.follow_up = date(2030, 1, 5)
    assert occasions(row, rules, now) == (["follow_up:2030-01-05"], [])
    row.status = "archived"
    assert occasions(row, rules, now) == ([], [])


async def test_a_reminder_goes_to_its_owner_once_and_again_only_when_the_date_moves(
    crm: CrmService,
    database: Database,
    desk: Desk,
    visits: Visits,
    hub: FakeHub,
    job: ReminderJob,
    clock: Clock,
    users: dict[str, int],
) -> None:
    owner = users["owner"]
    due = await record(crm, database, owner=owner, follow_up=date(2030, 1, 5), content=HOSTILE)
    await record(crm, database, owner=owner, follow_up=date(2030, 1, 9))
    hub.online = {owner: set(), users["other"]: set()}

    await job.run_once()
    await job.run_once()
    reminders = [frame for frame in hub.frames if frame[0] == "reminder"]
    assert [(data["record"]["id"], user_id) for _, data, user_id, _ in reminders] == [(due, owner)]
    assert reminders[0][1]["record"]["content"] == HOSTILE

    # Another engine, or this one after a restart: what was pushed is in the database, nothing again.
    again = job_of(database, desk, hub, visits, clock)
    await again.run_once()
    assert len([frame for frame in hub.frames if frame[0] == "reminder"]) == 1

    # The follow-up moved to tomorrow: when that day comes it is a new occasion.
    async with database.session() as session:
        await session.execute(update(ServiceRecord).where(ServiceRecord.id == due).values(follow_up=date(2030, 1, 6)))
    await job.run_once()
    assert len([frame for frame in hub.frames if frame[0] == "reminder"]) == 1
    clock.now += timedelta(days=1)
    await job.run_once()
    assert [data["record"]["follow_up"] for name, data, _, _ in hub.frames if name == "reminder"] == [
        "2030-01-05",
        "2030-01-06",
    ]


async def test_an_owner_away_is_reminded_when_they_open_a_page(
    crm: CrmService, database: Database, hub: FakeHub, job: ReminderJob, users: dict[str, int]
) -> None:
    owner = users["owner"]
    due = await record(crm, database, owner=owner, follow_up=date(2030, 1, 5))
    await job.run_once()
    assert not [frame for frame in hub.frames if frame[0] == "reminder"]
    async with database.session() as session:
        claimed = await session.scalar(
            select(func.count()).select_from(DeskReminder).where(DeskReminder.kind == "reminder")
        )
    assert claimed == 0
    hub.online = {owner: set()}
    await job.run_once()
    assert [(name, data["record"]["id"]) for name, data, _, _ in hub.frames if name == "reminder"] == [
        ("reminder", due)
    ]


async def test_overdue_records_are_told_to_the_desk_once_in_one_frame(
    crm: CrmService, database: Database, hub: FakeHub, job: ReminderJob, users: dict[str, int], rules: DeskRules
) -> None:
    late = [await record(crm, database, owner=users["owner"], follow_up=date(2030, 1, 1)) for _ in range(3)]
    nobodys = await record(crm, database, owner=None, follow_up=date(2030, 1, 2))
    hub.online = {users["boss"]: {Permission.DESK_WORK}, users["other"]: set()}
    await job.run_once()
    await job.run_once()
    overdue = [frame for frame in hub.frames if frame[0] == "overdue"]
    assert len(overdue) == 1
    _, data, user_id, permission = overdue[0]
    assert permission == Permission.DESK_WORK
    assert user_id is None
    assert data["new"] == 4
    assert sorted(item["id"] for item in data["records"]) == sorted([*late, nobodys])
    # The next passes ask the database for none of them: each one's occasion is claimed.
    now = datetime(2030, 1, 4, 16, 30, tzinfo=UTC)
    async with database.session() as session:
        waiting = await session.scalar(
            select(func.count()).select_from(ServiceRecord).where(unclaimed_condition(ReminderKind.OVERDUE, rules, now))
        )
    assert waiting == 0
    async with database.session() as session:
        await session.execute(
            update(ServiceRecord).where(ServiceRecord.id == nobodys).values(follow_up=date(2030, 1, 3))
        )
    await job.run_once()
    assert [data["records"][0]["id"] for name, data, _, _ in hub.frames if name == "overdue"][1:] == [nobodys]


async def test_a_database_outage_is_one_warning_and_the_job_goes_on(
    crm: CrmService,
    database: Database,
    hub: FakeHub,
    job: ReminderJob,
    users: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = users["owner"]
    await record(crm, database, owner=owner, follow_up=date(2030, 1, 5))
    hub.online = {owner: set()}
    caplog.set_level(logging.DEBUG, logger="crm_bridge.desk")
    await database.close()
    try:
        for _ in range(3):
            await job.run_once()
    finally:
        await database.open()
    warnings = [r for r in caplog.records if r.name == "crm_bridge.desk" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert not warnings[0].exc_info
    assert job.passes == 3
    await job.run_once()
    assert [name for name, *_ in hub.frames] == ["reminder"]
    assert any("work again" in r.getMessage() for r in caplog.records if r.name == "crm_bridge.desk")


# -- over HTTP -------------------------------------------------------------------------------------------------


@pytest.fixture
async def client(
    service: AuthService, database: Database, crm: CrmService, desk: Desk, visits: Visits, tmp_path: Path
) -> AsyncIterator[TestClientT]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[CRM] = crm
    app[CRM_OUTBOX] = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    app[DESK] = desk
    app[VISITS] = visits
    app[EVALUATION_ITEMS] = EvaluationItems(database)
    app.add_routes(crm_routes)
    check_routes_declared(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def bearer(service: AuthService, username: str) -> dict[str, str]:
    token, _ = await service.login(username, PASSWORD)
    return {"Authorization": f"Bearer {token}"}


async def test_the_due_list_is_ones_own_unless_one_works_the_desk(
    client: TestClientT, service: AuthService, crm: CrmService, database: Database, users: dict[str, int]
) -> None:
    mine = await record(crm, database, owner=users["owner"], follow_up=date(2030, 1, 4))
    theirs = await record(crm, database, owner=users["other"], follow_up=date(2030, 1, 5))
    nobodys = await record(crm, database, owner=None, follow_up=date(2030, 1, 5))
    agent = await bearer(service, "owner")

    response = await client.get("/api/v1/desk/due", headers=agent)
    assert response.status == 200
    body = await response.json()
    assert [item["id"] for item in body["items"]] == [mine]
    assert body["items"][0]["caller_name"] == HOSTILE
    assert (await client.get(f"/api/v1/desk/due?owner={users['owner']}", headers=agent)).status == 200
    for other in ("all", "none", str(users["other"])):
        refused = await client.get(f"/api/v1/desk/due?owner={other}", headers=agent)
        assert refused.status == 403
        assert (await refused.json())["error"]["details"]["missing"] == ["desk.work"]
    assert (await client.get("/api/v1/desk/overdue", headers=agent)).status == 403
    assert (await client.get("/api/v1/desk/due?owner=everyone", headers=agent)).status == 400

    office = await bearer(service, "desk")
    everyone = await (await client.get("/api/v1/desk/due?owner=all", headers=office)).json()
    assert {item["id"] for item in everyone["items"]} == {mine, theirs, nobodys}
    unowned = await (await client.get("/api/v1/desk/due?owner=none", headers=office)).json()
    assert [item["id"] for item in unowned["items"]] == [nobodys]
    board = await client.get("/api/v1/desk/overdue", headers=await bearer(service, "boss"))
    assert board.status == 200
    assert (await board.json())["counts"]["total"] == 1


async def test_frames_reach_the_owner_and_the_desk_through_the_real_websocket(
    service: AuthService,
    crm: CrmService,
    database: Database,
    desk: Desk,
    visits: Visits,
    clock: Clock,
    users: dict[str, int],
) -> None:
    mine = await record(crm, database, owner=users["owner"], follow_up=date(2030, 1, 5), content=HOSTILE)
    late = await record(crm, database, owner=users["other"], follow_up=date(2030, 1, 2))
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[HUB] = hub = Hub(revalidate_seconds=0)
    app.add_routes(ws_routes)
    job = job_of(database, desk, hub, visits, clock)
    async with TestClient(TestServer(app)) as client:
        sockets = {
            name: await client.ws_connect("/api/v1/ws", headers=await bearer(service, name))
            for name in ("owner", "other", "desk")
        }
        for _ in range(100):
            if hub.connections == 3:
                break
            await asyncio.sleep(0.02)
        for socket in sockets.values():
            assert json.loads((await socket.receive(timeout=2)).data)["type"] == "hello"
        await job.run_once()
        await job.run_once()
        reminder = json.loads((await sockets["owner"].receive(timeout=2)).data)
        assert (reminder["type"], reminder["record"]["id"], reminder["record"]["content"]) == (
            "reminder",
            mine,
            HOSTILE,
        )
        assert reminder["record"]["type"] == "repair_booking"
        other = json.loads((await sockets["other"].receive(timeout=2)).data)
        # The other agent's record is overdue since the 2nd: reminded to them, told to the desk.
        assert (other["type"], other["record"]["id"], other["record"]["overdue"]) == ("reminder", late, ["follow_up"])
        board = json.loads((await sockets["desk"].receive(timeout=2)).data)
        assert (board["type"], [item["id"] for item in board["records"]], board["new"]) == ("overdue", [late], 1)
        for socket in sockets.values():
            with pytest.raises(asyncio.TimeoutError):
                await socket.receive(timeout=0.3)
            await socket.close()
    await hub.close()


async def test_the_job_runs_every_interval_until_closed(
    database: Database, desk: Desk, hub: FakeHub, visits: Visits, clock: Clock
) -> None:
    job = ReminderJob(database, desk, hub, visits, interval=0.02, complaint_visit_window=timedelta(days=7), clock=clock)
    job.start()
    try:
        for _ in range(200):
            if job.passes >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        await job.close()
    assert job.passes >= 3
    passes = job.passes
    await asyncio.sleep(0.1)
    assert job.passes == passes
