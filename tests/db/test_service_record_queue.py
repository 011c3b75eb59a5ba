"""The work queue over HTTP (``GET /api/v1/service-records``) on SQLite and PostgreSQL: each filter (type, status,
owner, due and overdue as the desk's rules say, customer), each order, paging, a 400 naming each bad parameter,
who may ask, and the customer's name with every record, hostile text and all, read in one statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, text

from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.services import AuthService
from callcenter.db import Database
from callcenter.keys import AUTH
from callcenter.web.errors import error_middleware
from crm_bridge.desk import DeskRules
from crm_bridge.http import crm_routes
from crm_bridge.keys import CRM, CRM_OUTBOX, RECORD_QUEUE
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.record_queue import RecordQueue
from crm_bridge.records import listing
from crm_bridge.schemas import CustomerIn, ServiceRecordIn, ServiceRecordQuery, TransitionIn
from crm_bridge.services import CrmService
from tests.db.conftest import FakeClock

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>\"'; DROP TABLE customers; --\r\n\u202e王<b>伟</b>" + "客" * 300
URL = "/api/v1/service-records"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def crm(database: Database, service: AuthService, clock: FakeClock) -> CrmService:
    return CrmService(database, audit=service, clock=clock)


@pytest.fixture
async def client(
    service: AuthService, crm: CrmService, database: Database, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[CRM] = crm
    app[CRM_OUTBOX] = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    rules = DeskRules(ZoneInfo("UTC"), appointment_lead=timedelta(minutes=60), appointment_grace=timedelta(minutes=30))
    app[RECORD_QUEUE] = RecordQueue(database, rules, clock=clock)
    app.add_routes(crm_routes)
    check_routes_declared(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


class Desk:
    """The people and records of one test: two owners, two customers (one with a hostile name) and five records."""

    def __init__(self) -> None:
        self.headers: dict[str, dict[str, str]] = {}
        self.users: dict[str, int] = {}
        self.records: dict[str, int] = {}
        self.customers: dict[str, int] = {}


@pytest.fixture
async def desk(service: AuthService, crm: CrmService, clock: FakeClock) -> Desk:
    found = Desk()
    for name, roles in (("agent1", ["agent"]), ("backoffice1", ["backoffice"]), ("nobody1", [])):
        user = await service.create_user(name, PASSWORD, roles=roles)
        token, _ = await service.login(name, PASSWORD)
        found.headers[name] = {"Authorization": f"Bearer {token}"}
        found.users[name] = user.id
    for key, name in (("hostile", HOSTILE), ("plain", "Li Lei")):
        file = await crm.customers.create(CustomerIn.model_validate({"name": name}))
        found.customers[key] = file.customer.id
    now = clock()
    today = now.date()
    plan: list[tuple[str, dict[str, Any], str | None]] = [
        # A follow-up from yesterday: due and overdue.
        (
            "late_call",
            {"type": "complaint", "customer_id": found.customers["hostile"], "follow_up": "2029-12-31"},
            None,
        ),
        # An appointment in half an hour: due (within the lead time), not overdue.
        (
            "visit_soon",
            {
                "type": "repair_booking",
                "customer_id": found.customers["plain"],
                "appointment_at": now + timedelta(minutes=30),
            },
            "agent1",
        ),
        # A follow-up next week: neither.
        (
            "next_week",
            {"type": "fault_consultation", "follow_up": (today + timedelta(days=7)).isoformat()},
            "backoffice1",
        ),
        # An appointment two hours past that nobody started: overdue.
        (
            "missed_visit",
            {
                "type": "complaint",
                "customer_id": found.customers["hostile"],
                "appointment_at": now - timedelta(hours=2),
            },
            "agent1",
        ),
        # A follow-up today, but the record is closed: never due.
        ("closed", {"type": "voicemail", "follow_up": today.isoformat()}, "agent1"),
    ]
    for key, body, owner in plan:
        clock.advance(60)
        created, _ = await crm.records.create(ServiceRecordIn.model_validate({"content": key, **body}), actor="test")
        found.records[key] = created.id
        if owner is not None:
            await crm.records.transition(
                created.id, TransitionIn(action="assign", assigned_to=found.users[owner]), actor="test"
            )
    for action in ("start", "resolve"):
        clock.advance(60)
        await crm.records.transition(found.records["closed"], TransitionIn(action=action), actor="test")
    # The first record is touched last: its update time is the newest.
    clock.advance(60)
    await crm.records.transition(
        found.records["late_call"], TransitionIn(action="assign", assigned_to=found.users["backoffice1"]), actor="test"
    )
    return found


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements the database receives while the test runs."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


async def listed(client: Client, desk: Desk, params: Any, *, who: str = "backoffice1") -> list[str]:
    """The records' keys the list gives, in its order."""
    response = await client.get(URL, params=params, headers=desk.headers[who])
    assert response.status == 200, await response.text()
    names = {record_id: key for key, record_id in desk.records.items()}
    return [names[item["id"]] for item in (await response.json())["items"]]


async def test_the_queue_is_newest_first_with_every_record(client: Client, desk: Desk) -> None:
    assert await listed(client, desk, {}) == ["closed", "missed_visit", "next_week", "visit_soon", "late_call"]


async def test_type_takes_one_or_several_repeated_or_comma_separated(client: Client, desk: Desk) -> None:
    assert await listed(client, desk, {"type": "complaint"}) == ["missed_visit", "late_call"]
    several = ["missed_visit", "visit_soon", "late_call"]
    assert await listed(client, desk, {"type": "complaint,repair_booking"}) == several
    assert await listed(client, desk, [("type", "complaint"), ("type", "repair_booking")]) == several
    assert await listed(client, desk, [("type", "repair_booking, voicemail"), ("type", "complaint")]) == [
        "closed",
        *several,
    ]


async def test_status_takes_several_too(client: Client, desk: Desk) -> None:
    assert await listed(client, desk, {"status": "resolved"}) == ["closed"]
    assert await listed(client, desk, {"status": "new,assigned,in_progress"}) == [
        "missed_visit",
        "next_week",
        "visit_soon",
        "late_call",
    ]


async def test_assigned_to_takes_a_user_me_or_none(client: Client, desk: Desk) -> None:
    agent = str(desk.users["agent1"])
    assert await listed(client, desk, {"assigned_to": agent}) == ["closed", "missed_visit", "visit_soon"]
    assert await listed(client, desk, {"assigned_to": "me"}, who="agent1") == ["closed", "missed_visit", "visit_soon"]
    assert await listed(client, desk, {"assigned_to": "me"}) == ["next_week", "late_call"]
    assert await listed(client, desk, {"assigned_to": "none"}) == []


async def test_nobodys_records(client: Client, desk: Desk, crm: CrmService) -> None:
    fresh, _ = await crm.records.create(ServiceRecordIn.model_validate({"type": "suggestion"}), actor="test")
    desk.records["fresh"] = fresh.id
    assert await listed(client, desk, {"assigned_to": "none"}) == ["fresh"]


async def test_due_and_overdue_follow_the_desks_rules(client: Client, desk: Desk) -> None:
    assert await listed(client, desk, {"due": "due"}) == ["missed_visit", "visit_soon", "late_call"]
    assert await listed(client, desk, {"due": "overdue"}) == ["missed_visit", "late_call"]
    response = await client.get(URL, params={"due": "due", "sort": "created_at"}, headers=desk.headers["agent1"])
    items = {item["content"]: item for item in (await response.json())["items"]}
    assert (items["late_call"]["due"], items["late_call"]["overdue"]) == (["follow_up"], ["follow_up"])
    assert (items["visit_soon"]["due"], items["visit_soon"]["overdue"]) == (["appointment"], [])
    assert (items["missed_visit"]["due"], items["missed_visit"]["overdue"]) == (["appointment"], ["appointment"])


async def test_due_moves_with_the_clock(client: Client, desk: Desk, clock: FakeClock, service: AuthService) -> None:
    async def days_on(days: int) -> None:
        clock.now = clock.now + timedelta(days=days)
        # Sessions last an hour: a new login each day.
        token, _ = await service.login("backoffice1", PASSWORD)
        desk.headers["backoffice1"] = {"Authorization": f"Bearer {token}"}

    # A week on, next week's follow-up is today: due, not yet overdue; the day after, overdue.
    await days_on(7)
    assert "next_week" in await listed(client, desk, {"due": "due"})
    assert "next_week" not in await listed(client, desk, {"due": "overdue"})
    await days_on(1)
    assert "next_week" in await listed(client, desk, {"due": "overdue"})


async def test_filters_combine(client: Client, desk: Desk) -> None:
    hostile = desk.customers["hostile"]
    assert await listed(client, desk, {"customer_id": hostile}) == ["missed_visit", "late_call"]
    params = {"customer_id": hostile, "due": "overdue", "assigned_to": str(desk.users["agent1"])}
    assert await listed(client, desk, params) == ["missed_visit"]
    assert await listed(client, desk, {"type": "voicemail", "due": "due"}) == []
    assert await listed(client, desk, {"type": "complaint", "status": "new"}) == []


async def test_each_order(client: Client, desk: Desk) -> None:
    everything = ["late_call", "visit_soon", "next_week", "missed_visit", "closed"]
    assert await listed(client, desk, {"sort": "created_at"}) == everything
    assert await listed(client, desk, {"sort": "-created_at"}) == everything[::-1]
    # Soonest first, records without the date last (then oldest first).
    assert await listed(client, desk, {"sort": "follow_up"}) == [
        "late_call",
        "closed",
        "next_week",
        "visit_soon",
        "missed_visit",
    ]
    assert await listed(client, desk, {"sort": "appointment_at"}) == [
        "missed_visit",
        "visit_soon",
        "late_call",
        "next_week",
        "closed",
    ]
    # The least lately touched first.
    assert await listed(client, desk, {"sort": "updated_at"}) == [
        "visit_soon",
        "next_week",
        "missed_visit",
        "closed",
        "late_call",
    ]


async def test_pages_follow_the_order(client: Client, desk: Desk) -> None:
    pages = []
    for offset in range(0, 6, 2):
        response = await client.get(
            URL, params={"sort": "follow_up", "limit": 2, "offset": offset}, headers=desk.headers["agent1"]
        )
        body = await response.json()
        assert (body["limit"], body["offset"]) == (2, offset)
        pages.append([item["content"] for item in body["items"]])
    assert pages == [["late_call", "closed"], ["next_week", "visit_soon"], ["missed_visit"]]


async def test_each_record_names_its_customer_verbatim_in_one_statement(
    client: Client, desk: Desk, statements: list[str]
) -> None:
    statements.clear()
    response = await client.get(URL, params={"sort": "created_at"}, headers=desk.headers["agent1"])
    items = (await response.json())["items"]
    assert [item["customer"] for item in items] == [
        {"id": desk.customers["hostile"], "name": HOSTILE},
        {"id": desk.customers["plain"], "name": "Li Lei"},
        None,
        {"id": desk.customers["hostile"], "name": HOSTILE},
        None,
    ]
    assert items[0]["customer_id"] == desk.customers["hostile"]
    # The session's own statements aside (BEGIN, the token's check), the page is one SELECT on service_records.
    reads = [sql for sql in statements if "service_records" in sql]
    assert len(reads) == 1, reads
    assert "JOIN customers" in reads[0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "gossip"}, "type"),
        ({"type": "complaint,"}, "type"),
        ([("type", "complaint"), ("type", "<script>")], "type"),
        ({"status": "lost"}, "status"),
        ({"assigned_to": "you"}, "assigned_to"),
        ({"assigned_to": "0"}, "assigned_to"),
        ({"assigned_to": "9999999999"}, "assigned_to"),
        ({"assigned_to": "1 OR 1=1"}, "assigned_to"),
        ({"due": "soon"}, "due"),
        ({"customer_id": "x"}, "customer_id"),
        ({"customer_id": "0"}, "customer_id"),
        ({"sort": "id"}, "sort"),
        ({"sort": "-follow_up"}, "sort"),
        ({"limit": "500"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"owner": "me"}, "owner"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(client: Client, desk: Desk, params: Any, field: str) -> None:
    response = await client.get(URL, params=params, headers=desk.headers["agent1"])
    assert response.status == 400, await response.text()
    assert list((await response.json())["error"]["details"]["fields"]) == [field]


async def test_who_may_list_is_as_before(client: Client, desk: Desk, database: Database) -> None:
    assert (await client.get(URL, params={"type": "complaint"})).status == 401
    refused = await client.get(URL, params={"assigned_to": "me"}, headers=desk.headers["nobody1"])
    assert refused.status == 403
    assert (await refused.json())["error"]["details"]["missing"] == ["customers.read"]
    # Hostile text in a parameter is a value, never SQL: the table is still there.
    await client.get(URL, params={"type": "complaint'; DROP TABLE service_records; --"}, headers=desk.headers["agent1"])
    async with database.session() as session:
        assert await session.scalar(text("SELECT count(*) FROM service_records")) == 5


async def test_the_follow_up_the_list_gives_is_the_record_s(client: Client, desk: Desk) -> None:
    response = await client.get(URL, params={"type": "complaint"}, headers=desk.headers["agent1"])
    follow_ups = [item["follow_up"] for item in (await response.json())["items"]]
    assert follow_ups == [None, date(2029, 12, 31).isoformat()]


@pytest.mark.parametrize(
    "query",
    [
        ServiceRecordQuery(),
        ServiceRecordQuery(type=["complaint"]),
        ServiceRecordQuery(sort="created_at"),
        ServiceRecordQuery(sort="follow_up"),
        ServiceRecordQuery(sort="appointment_at"),
        ServiceRecordQuery(customer_id=1),
        ServiceRecordQuery(assigned_to="1"),
    ],
    ids=["newest", "type", "oldest", "follow_up", "appointment_at", "customer", "owner"],
)
async def test_each_page_walks_an_index(database: Database, query: ServiceRecordQuery) -> None:
    """The queue's pages read an index, not the whole table (a table of a few rows would tempt the planner to scan:
    on PostgreSQL scans are made dear, so the plan shows whether an index can serve at all)."""
    statement = listing(query, me=1)
    sql = str(statement.compile(database.engine.sync_engine, compile_kwargs={"literal_binds": True}))
    async with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            plan = [row[-1] for row in (await connection.execute(text("EXPLAIN QUERY PLAN " + sql))).all()]
            scans = [step for step in plan if "service_records" in step]
            assert scans, plan
            assert all("USING" in step for step in scans), plan
        else:
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = list((await connection.execute(text("EXPLAIN " + sql))).scalars())
            assert any("Index" in step and "service_records" in step for step in plan), plan
            assert not any("Seq Scan on service_records" in step for step in plan), plan
