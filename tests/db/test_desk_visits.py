"""Callback visits and evaluation items (issue 18, item 4) on SQLite and PostgreSQL: visits made once per cause,
the list with its causes and its CSV, placing a visit's call (and every refusal, with nothing written), its one
result with the scores validated, who may do what, and caller text kept verbatim."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.services import AuthService
from callcenter.db import Database
from callcenter.keys import AUTH
from callcenter.web.errors import Conflict, error_middleware
from calls.ports import PlacedCallback
from crm_bridge.desk import Desk, DeskRules
from crm_bridge.http import crm_routes
from crm_bridge.keys import CRM, CRM_OUTBOX, DESK, EVALUATION_ITEMS, VISITS
from crm_bridge.models import RecordType, ServiceRecord
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import CustomerIn, PhoneIn, ServiceRecordIn, ServiceRecordPatch, TransitionIn
from crm_bridge.services import CrmService
from crm_bridge.visit_models import VisitCall, VisitResult, VisitScore
from crm_bridge.visits import EvaluationItems, Visits

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>\"'; DROP TABLE visit_results; --\r\n客户" + "满" * 300
FORMULA = '=HYPERLINK("http://evil.example","click")'
SHANGHAI = ZoneInfo("Asia/Shanghai")

TestClientT = TestClient[web.Request, web.Application]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeCallbacks:
    """The calls' port as the desk sees it: what was asked, and a refusal when told to."""

    def __init__(self) -> None:
        self.placed: list[dict[str, Any]] = []
        self.refuse: Exception | None = None

    async def place(
        self,
        *,
        user_id: int,
        username: str,
        extension: str | None,
        number: str,
        service_record_id: int | None = None,
        customer_id: int | None = None,
        remote: str | None = None,
    ) -> PlacedCallback:
        if self.refuse is not None:
            raise self.refuse
        self.placed.append({"user": username, "extension": extension, "number": number, "record": service_record_id})
        callback_id = f"cb-{len(self.placed):016x}"
        return PlacedCallback(callback_id, f"{callback_id}-a", number, f"PJSIP/{extension}")


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2030, 1, 4, 10, 0, tzinfo=UTC))


@pytest.fixture
def crm(database: Database, clock: Clock) -> CrmService:
    return CrmService(database, clock=clock)


@pytest.fixture
def callbacks() -> FakeCallbacks:
    return FakeCallbacks()


@pytest.fixture
def visits(database: Database, crm: CrmService, callbacks: FakeCallbacks, clock: Clock) -> Visits:
    return Visits(database, crm.records, callbacks, zone=SHANGHAI, clock=clock)


@pytest.fixture
async def client(
    service: AuthService, database: Database, crm: CrmService, visits: Visits, clock: Clock, tmp_path: Path
) -> AsyncIterator[TestClientT]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[CRM] = crm
    app[CRM_OUTBOX] = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    app[DESK] = Desk(database, DeskRules(SHANGHAI), clock=clock)
    app[VISITS] = visits
    app[EVALUATION_ITEMS] = EvaluationItems(database, clock=clock)
    app.add_routes(crm_routes)
    check_routes_declared(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def headers(service: AuthService) -> dict[str, dict[str, str]]:
    """Bearer headers per user: a back-office worker with a phone and one without, an agent, a supervisor, QA, an
    admin."""
    people = {
        "office": ("backoffice", "1005"),
        "office_nophone": ("backoffice", None),
        "agent": ("agent", "1001"),
        "boss": ("supervisor", "1009"),
        "qa": ("qa", None),
        "admin": ("admin", None),
    }
    found = {}
    for name, (role, extension) in people.items():
        await service.create_user(name, PASSWORD, roles=[role], extension=extension)
        token, _ = await service.login(name, PASSWORD)
        found[name] = {"Authorization": f"Bearer {token}"}
    return found


async def customer(crm: CrmService, name: str = "王伟", number: str | None = "+86 138 0013 8000") -> int:
    file = await crm.customers.create(
        CustomerIn(name=name, phones=[PhoneIn(number=number)] if number else []), actor="test"
    )
    return file.customer.id


async def visit(crm: CrmService, key: str | None, *, customer_id: int | None = None, number: str | None = None) -> int:
    created, _ = await crm.records.create(
        ServiceRecordIn(
            type=RecordType.CALLBACK_VISIT,
            content="Call them back",
            customer_id=customer_id,
            caller_number=number,
            idempotency_key=key,
        ),
        actor="test",
    )
    return created.id


async def resolved_complaint(crm: CrmService, service: AuthService, customer_id: int) -> int:
    created, _ = await crm.records.create(
        ServiceRecordIn(type=RecordType.COMPLAINT, content="The technician was late", customer_id=customer_id),
        actor="agent",
    )
    owner = await service.create_user(f"owner{created.id}", PASSWORD, roles=["backoffice"])
    for action in ("assign", "start", "resolve"):
        await crm.records.transition(
            created.id, TransitionIn(action=action, assigned_to=owner.id if action == "assign" else None), actor="x"
        )
    return created.id


async def count(database: Database, table: Any) -> int:
    async with database.session() as session:
        return await session.scalar(select(func.count()).select_from(table)) or 0


# -- visits made once per cause ---------------------------------------------------------------------------------


async def test_a_resolved_complaint_and_a_finished_repair_each_leave_one_visit(
    crm: CrmService, visits: Visits, service: AuthService, clock: Clock, database: Database
) -> None:
    someone = await customer(crm)
    complaint = await resolved_complaint(crm, service, someone)
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 1
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 0

    repair, _ = await crm.records.create(
        ServiceRecordIn(type=RecordType.REPAIR_BOOKING, content="Washer", customer_id=someone, caller_number=FORMULA),
        actor="agent",
    )
    assert await visits.for_repair(41, repair.id, someone) is True
    assert await visits.for_repair(41, repair.id, someone) is False

    # A complaint resolved long before the desk's window (history, seeded data) gets none.
    clock.now -= timedelta(days=30)
    await resolved_complaint(crm, service, someone)
    clock.now += timedelta(days=30)
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 0
    # One resolved after the first sweep is found by the next ones, which read only the history added since.
    later = await resolved_complaint(crm, service, someone)
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 1
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 0

    items, total = await visits.find(_query())
    assert total == 3
    by_cause = {item["cause"]: item for item in items}  # the last of each cause
    assert [item["cause_ref"] for item in items if item["cause"] == "complaint"] == [str(complaint), str(later)]
    assert by_cause["complaint"]["customer"] == {"id": someone, "name": "王伟"}
    assert by_cause["complaint"]["number"] == "+86 138 0013 8000"  # the customer's, the record has none
    assert by_cause["repair"]["cause_ref"] == "41"
    assert by_cause["repair"]["number"] == FORMULA  # the booking's caller number, verbatim
    async with database.session() as session:
        keys = set(
            await session.scalars(select(ServiceRecord.idempotency_key).where(ServiceRecord.type == "callback_visit"))
        )
    assert keys == {f"visit:complaint:{complaint}", f"visit:complaint:{later}", "visit:repair:41"}


async def test_a_change_to_a_resolved_complaint_is_no_resolution_and_makes_no_visit(
    crm: CrmService, visits: Visits, service: AuthService, clock: Clock, database: Database
) -> None:
    someone = await customer(crm)
    # Resolved long before the window: its history row moving to resolved is too old to count.
    clock.now -= timedelta(days=30)
    old = await resolved_complaint(crm, service, someone)
    clock.now += timedelta(days=30)
    recent = await resolved_complaint(crm, service, someone)
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 1

    # The desk completes both afterwards (PATCH): each an ``update`` row whose status before and after is resolved.
    for record_id in (old, recent):
        await crm.records.update(record_id, ServiceRecordPatch(fault_type="no_power"), actor="office")
        await crm.records.update(record_id, ServiceRecordPatch(fault_type="noise"), actor="office")
    # Neither a later sweep nor a new engine's first one (which reads the whole window) sees a resolution there.
    assert await visits.for_resolved_complaints(within=timedelta(days=7)) == 0
    fresh = Visits(database, crm.records, None, zone=SHANGHAI, clock=clock)
    assert await fresh.for_resolved_complaints(within=timedelta(days=7)) == 0
    async with database.session() as session:
        keys = list(
            await session.scalars(select(ServiceRecord.idempotency_key).where(ServiceRecord.type == "callback_visit"))
        )
    assert keys == [f"visit:complaint:{recent}"]


def _query(**values: Any) -> Any:
    from crm_bridge.visit_schemas import VisitQuery

    return VisitQuery.model_validate(values)


async def test_the_list_names_each_visits_cause_and_filters_by_it(
    client: TestClientT, crm: CrmService, headers: dict[str, dict[str, str]]
) -> None:
    someone = await customer(crm, name=FORMULA, number="+86 137 1111 2222")
    abandoned = await visit(crm, "abandoned:1700000000.42", number="13800138000")
    expert = await visit(crm, "expert-callback:h-9", number="13900139000")
    by_hand = await visit(crm, None, customer_id=someone)
    office = headers["office"]

    response = await client.get("/api/v1/visits", headers=office)
    assert response.status == 200
    body = await response.json()
    assert body["total"] == 3
    assert [(item["id"], item["cause"], item["cause_ref"]) for item in body["items"]] == [
        (abandoned, "abandoned_call", "1700000000.42"),
        (expert, "expert_callback", "h-9"),
        (by_hand, "other", None),
    ]
    only = await (await client.get("/api/v1/visits?cause=abandoned_call", headers=office)).json()
    assert [item["id"] for item in only["items"]] == [abandoned]
    other = await (await client.get("/api/v1/visits?cause=other", headers=office)).json()
    assert [item["id"] for item in other["items"]] == [by_hand]
    mine = await (await client.get(f"/api/v1/visits?customer_id={someone}", headers=office)).json()
    assert [item["customer"]["name"] for item in mine["items"]] == [FORMULA]
    assert (await (await client.get("/api/v1/visits?since=2030-01-05", headers=office)).json())["total"] == 0
    assert (await (await client.get("/api/v1/visits?since=2030-01-04", headers=office)).json())["total"] == 3
    for bad in ("cause=gossip", "state=maybe", "limit=0", "since=yesterday", "owner=me", "evil=1"):
        refused = await client.get(f"/api/v1/visits?{bad}", headers=office)
        assert refused.status == 400, bad
        assert (await refused.json())["error"]["id"] == "invalid_input"

    csv = await client.get("/api/v1/visits?format=csv", headers=office)
    assert csv.status == 200
    assert csv.content_type == "text/csv"
    text = await csv.text()
    lines = text.splitlines()
    assert lines[0].startswith("id,cause,cause_ref,status,customer_id,customer_name,number")
    assert "'=HYPERLINK" in text
    assert ",=HYPERLINK" not in text
    assert '"=HYPERLINK' not in text


# -- placing the call -------------------------------------------------------------------------------------------


async def test_placing_a_visit_rings_the_users_phone_and_links_the_call(
    client: TestClientT,
    crm: CrmService,
    callbacks: FakeCallbacks,
    headers: dict[str, dict[str, str]],
    service: AuthService,
) -> None:
    someone = await customer(crm)
    visit_id = await visit(crm, "abandoned:L1", customer_id=someone, number="+86 (138) 0013-8000")
    response = await client.post(f"/api/v1/visits/{visit_id}/place", headers=headers["office"])
    assert response.status == 202, await response.text()
    placed = await response.json()
    assert callbacks.placed == [{"user": "office", "extension": "1005", "number": "+8613800138000", "record": visit_id}]
    assert placed["linkedid"] == "cb-0000000000000001-a"
    assert placed["agent"] == "PJSIP/1005"

    shown = await (await client.get(f"/api/v1/visits/{visit_id}", headers=headers["office"])).json()
    assert [call["linkedid"] for call in shown["calls"]] == [placed["linkedid"]]
    assert shown["status"] == "in_progress"
    office = await service.authenticate(headers["office"]["Authorization"].removeprefix("Bearer "))
    assert office is not None
    assert shown["assigned_to"] == office.user_id
    record, history = await crm.records.get(visit_id)
    assert history[-1].action == "visit_call"
    assert history[-1].changes["linkedid"] == placed["linkedid"]

    # Placed again (nobody answered the first time): a second call on the same visit.
    again = await client.post(f"/api/v1/visits/{visit_id}/place", headers=headers["boss"])
    assert again.status == 202
    shown = await (await client.get(f"/api/v1/visits/{visit_id}", headers=headers["office"])).json()
    assert len(shown["calls"]) == 2
    assert shown["assigned_to"] == office.user_id  # the one who took it first keeps it
    assert record.type == "callback_visit"


async def test_placing_is_refused_with_the_rule_and_nothing_written(
    client: TestClientT,
    crm: CrmService,
    callbacks: FakeCallbacks,
    headers: dict[str, dict[str, str]],
    database: Database,
) -> None:
    nobody = await customer(crm, name="No phone", number=None)
    without_number = await visit(crm, None, customer_id=nobody)
    junk = await visit(crm, "abandoned:L2", number=HOSTILE[:200])
    good = await visit(crm, "abandoned:L3", number="13800138000")
    not_a_visit, _ = await crm.records.create(
        ServiceRecordIn(type=RecordType.COMPLAINT, content="x", caller_number="13800138000"), actor="t"
    )
    archived = await visit(crm, "abandoned:L7", number="13800138000")
    async with database.session() as session:
        await session.execute(update(ServiceRecord).where(ServiceRecord.id == archived).values(status="archived"))
    cases = [
        (archived, "office", 409, "visit_closed"),
        (without_number, "office", 409, "visit_without_number"),
        (junk, "office", 409, "visit_number_not_dialable"),
        (good, "office_nophone", 409, "no_seat"),
        (not_a_visit.id, "office", 404, "visit_not_found"),
        (999999, "office", 404, "visit_not_found"),
    ]
    for visit_id, who, status, error_id in cases:
        response = await client.post(f"/api/v1/visits/{visit_id}/place", headers=headers[who])
        assert response.status == status, (visit_id, await response.text())
        error = (await response.json())["error"]
        assert error["id"] == error_id
        assert error["message"]
        assert "<script>" not in json.dumps(error)
    # The phone is busy: the port's refusal comes through as it is.
    callbacks.refuse = Conflict("your phone is busy with a call", {"state": "on_call"})
    busy = await client.post(f"/api/v1/visits/{good}/place", headers=headers["office"])
    assert busy.status == 409
    assert (await busy.json())["error"]["message"] == "your phone is busy with a call"
    assert callbacks.placed == []
    assert await count(database, VisitCall) == 0
    record, history = await crm.records.get(good)
    assert record.status == "new"
    assert [entry.action for entry in history] == ["create"]


# -- the result -------------------------------------------------------------------------------------------------


async def items(client: TestClientT, headers: dict[str, str]) -> dict[str, int]:
    made = {}
    for name, applies_to in (("Attitude", "visit"), ("Timeliness", "visit"), ("Courtesy on the phone", "call")):
        response = await client.post(
            "/api/v1/evaluation-items", json={"name": name, "applies_to": applies_to}, headers=headers
        )
        assert response.status == 201, await response.text()
        made[name] = (await response.json())["id"]
    return made


async def test_a_visits_result_is_stored_once_with_its_scores_and_the_record_moves_on(
    client: TestClientT, crm: CrmService, headers: dict[str, dict[str, str]], database: Database
) -> None:
    made = await items(client, headers["office"])
    visit_id = await visit(crm, "abandoned:L4", number="13800138000")
    await client.post(f"/api/v1/visits/{visit_id}/place", headers=headers["office"])
    body = {
        "outcome": "reached",
        "satisfaction": 4,
        "scores": [{"item_id": made["Timeliness"], "score": 2}, {"item_id": made["Attitude"], "score": 5}],
        "comment": HOSTILE,
    }
    response = await client.post(f"/api/v1/visits/{visit_id}/result", json=body, headers=headers["office"])
    assert response.status == 201, await response.text()
    stored = await response.json()
    result = stored["result"]
    assert (result["outcome"], result["satisfaction"], result["comment"]) == ("reached", 4, HOSTILE)
    assert [(score["name"], score["score"]) for score in result["scores"]] == [("Attitude", 5), ("Timeliness", 2)]
    assert result["linkedid"] == stored["calls"][0]["linkedid"]
    assert result["recorded_by"] == "office"
    assert stored["status"] == "feedback_recorded"

    record, history = await crm.records.get(visit_id)
    assert (record.status, record.outcome, record.feedback) == ("feedback_recorded", "reached", HOSTILE)
    assert (history[-1].action, history[-1].from_status, history[-1].to_status) == (
        "visit_result",
        "in_progress",
        "feedback_recorded",
    )
    due = await (await client.get("/api/v1/visits", headers=headers["office"])).json()
    assert visit_id not in [item["id"] for item in due["items"]]
    done = await (await client.get("/api/v1/visits?state=done", headers=headers["office"])).json()
    assert [item["id"] for item in done["items"]] == [visit_id]

    again = await client.post(f"/api/v1/visits/{visit_id}/result", json={"outcome": "refused"}, headers=headers["boss"])
    assert again.status == 409
    assert (await again.json())["error"]["id"] == "visit_result_recorded"
    placed = await client.post(f"/api/v1/visits/{visit_id}/place", headers=headers["office"])
    assert placed.status == 409
    assert (await count(database, VisitResult), await count(database, VisitScore)) == (1, 2)


async def test_of_two_results_for_one_visit_at_once_one_is_stored(
    client: TestClientT, crm: CrmService, headers: dict[str, dict[str, str]], database: Database
) -> None:
    visit_id = await visit(crm, "abandoned:L5", number="13800138000")
    bodies = ({"outcome": "reached", "satisfaction": 5}, {"outcome": "refused"})
    responses = await asyncio.gather(
        *(
            client.post(f"/api/v1/visits/{visit_id}/result", json=body, headers=headers[who])
            for body, who in zip(bodies, ("office", "boss"), strict=True)
        )
    )
    assert sorted(response.status for response in responses) == [201, 409]
    (loser,) = [await response.json() for response in responses if response.status == 409]
    assert loser["error"]["id"] in ("visit_result_recorded", "visit_closed")
    (winner,) = [await response.json() for response in responses if response.status == 201]
    assert await count(database, VisitResult) == 1
    record, history = await crm.records.get(visit_id)
    # The record took the stored result's outcome, and moved once.
    assert (record.status, record.outcome) == ("feedback_recorded", winner["result"]["outcome"])
    assert [entry.action for entry in history] == ["create", "visit_result"]


async def test_a_result_that_breaks_a_rule_is_refused_and_nothing_is_written(
    client: TestClientT, crm: CrmService, headers: dict[str, dict[str, str]], database: Database
) -> None:
    made = await items(client, headers["office"])
    retired = made["Timeliness"]
    assert (
        await client.patch(f"/api/v1/evaluation-items/{retired}", json={"active": False}, headers=headers["office"])
    ).status == 200
    visit_id = await visit(crm, "abandoned:L5", number="13800138000")
    url = f"/api/v1/visits/{visit_id}/result"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"outcome": "reached"}, "satisfaction"),
        ({"outcome": "reached", "satisfaction": 6}, "satisfaction"),
        ({"outcome": "reached", "satisfaction": 0}, "satisfaction"),
        ({"outcome": "not_reached", "satisfaction": 3}, "satisfaction"),
        ({"outcome": "refused", "scores": [{"item_id": made["Attitude"], "score": 3}]}, "scores"),
        ({"outcome": "happy"}, "outcome"),
        ({"outcome": "reached", "satisfaction": 3, "scores": [{"item_id": 999999, "score": 3}]}, "scores"),
        ({"outcome": "reached", "satisfaction": 3, "scores": [{"item_id": retired, "score": 3}]}, "scores"),
        # An item of calls, not of visits.
        (
            {
                "outcome": "reached",
                "satisfaction": 3,
                "scores": [{"item_id": made["Courtesy on the phone"], "score": 3}],
            },
            "scores",
        ),
        ({"outcome": "reached", "satisfaction": 3, "scores": [{"item_id": made["Attitude"], "score": 9}]}, "scores"),
        (
            {
                "outcome": "reached",
                "satisfaction": 3,
                "scores": [{"item_id": made["Attitude"], "score": 3}, {"item_id": made["Attitude"], "score": 4}],
            },
            "scores",
        ),
        ({"outcome": "reached", "satisfaction": 3, "comment": "bad\x00byte"}, "comment"),
    ]
    for body, field in cases:
        response = await client.post(url, json=body, headers=headers["office"])
        assert response.status == 400, (body, await response.text())
        error = (await response.json())["error"]
        assert any(name.split(".")[0] == field for name in error["details"]["fields"]), (body, error)
    unknown = await client.post(
        url,
        json={
            "outcome": "reached",
            "satisfaction": 3,
            "scores": [{"item_id": 999999, "score": 3}, {"item_id": retired, "score": 1}],
        },
        headers=headers["office"],
    )
    assert (await unknown.json())["error"]["details"]["unknown_items"] == sorted([retired, 999999])
    assert (await count(database, VisitResult), await count(database, VisitScore)) == (0, 0)
    record, history = await crm.records.get(visit_id)
    assert record.status == "new"
    assert len(history) == 1
    gone = await client.post("/api/v1/visits/999999/result", json={"outcome": "refused"}, headers=headers["office"])
    assert gone.status == 404
    # An outcome other than reached takes neither satisfaction nor scores, and closes the visit too.
    closed = await client.post(url, json={"outcome": "wrong_number"}, headers=headers["office"])
    assert closed.status == 201
    assert (await closed.json())["result"]["satisfaction"] is None


# -- evaluation items and permissions ---------------------------------------------------------------------------


async def test_evaluation_items_are_read_by_anyone_and_kept_by_the_desk(
    client: TestClientT, headers: dict[str, dict[str, str]]
) -> None:
    made = await items(client, headers["office"])
    duplicate = await client.post(
        "/api/v1/evaluation-items", json={"name": "Attitude", "applies_to": "visit"}, headers=headers["boss"]
    )
    assert duplicate.status == 409
    assert (await duplicate.json())["error"]["id"] == "evaluation_item_exists"
    # The same name for another kind is another item.
    outlet = await client.post(
        "/api/v1/evaluation-items", json={"name": HOSTILE[:200], "applies_to": "outlet"}, headers=headers["boss"]
    )
    assert outlet.status == 201
    assert (await outlet.json())["name"] == HOSTILE[:200].strip()
    renamed = await client.patch(
        f"/api/v1/evaluation-items/{made['Attitude']}",
        json={"name": "Attitude of the technician", "position": 9},
        headers=headers["office"],
    )
    assert renamed.status == 200
    clash = await client.patch(
        f"/api/v1/evaluation-items/{made['Timeliness']}",
        json={"name": "Attitude of the technician"},
        headers=headers["office"],
    )
    assert clash.status == 409
    for body in ({"applies_to": "call"}, {"name": None}, {"name": "  "}):
        assert (
            await client.patch(f"/api/v1/evaluation-items/{made['Timeliness']}", json=body, headers=headers["office"])
        ).status == 400
    assert (await client.patch("/api/v1/evaluation-items/99999", json={}, headers=headers["office"])).status == 404

    for who in ("agent", "qa", "admin"):
        listed = await client.get("/api/v1/evaluation-items?applies_to=visit", headers=headers[who])
        assert listed.status == 200
        assert [item["name"] for item in (await listed.json())["items"]] == ["Timeliness", "Attitude of the technician"]
        refused = await client.post(
            "/api/v1/evaluation-items", json={"name": "x", "applies_to": "visit"}, headers=headers[who]
        )
        assert refused.status == 403
        assert (await refused.json())["error"]["details"]["missing"] == ["desk.work"]
    assert (await client.get("/api/v1/evaluation-items")).status == 401


async def test_an_owner_id_out_of_range_is_a_bad_request_not_a_failure(
    client: TestClientT, headers: dict[str, dict[str, str]]
) -> None:
    office = headers["office"]
    for url in ("/api/v1/visits", "/api/v1/desk/due", "/api/v1/desk/overdue"):
        for owner in ("2147483648", "9999999999"):
            response = await client.get(url, params={"owner": owner}, headers=office)
            body = await response.json()
            assert response.status == 400, (url, owner, body)
            assert body["error"]["id"] == "invalid_input"
        fits = await client.get(url, params={"owner": "2147483647"}, headers=office)
        assert fits.status == 200, url


@pytest.mark.parametrize("who", ["agent", "qa", "admin"])
async def test_only_the_desk_works_the_visits(
    client: TestClientT, crm: CrmService, callbacks: FakeCallbacks, headers: dict[str, dict[str, str]], who: str
) -> None:
    visit_id = await visit(crm, "abandoned:L6", number="13800138000")
    for method, url, body in (
        ("GET", "/api/v1/visits", None),
        ("GET", f"/api/v1/visits/{visit_id}", None),
        ("POST", f"/api/v1/visits/{visit_id}/place", None),
        ("POST", f"/api/v1/visits/{visit_id}/result", {"outcome": "refused"}),
        ("GET", "/api/v1/desk/overdue", None),
    ):
        response = await client.request(method, url, json=body, headers=headers[who])
        assert response.status == 403, (who, url)
    assert callbacks.placed == []
    record, _ = await crm.records.get(visit_id)
    assert record.status == "new"


async def test_the_seed_gives_a_new_center_its_evaluation_items_once(database: Database) -> None:
    from callcenter_devtools.seed import SeedOptions, seed
    from crm_bridge.visit_schemas import EvaluationItemQuery

    await seed(database, SeedOptions(customers=0))
    await seed(database, SeedOptions(customers=0))
    found = await EvaluationItems(database).find(EvaluationItemQuery())
    assert {item["applies_to"] for item in found} == {"visit", "call", "outlet"}
    assert len(found) == len({(item["applies_to"], item["name"]) for item in found}) >= 9
    visit_items = [item for item in found if item["applies_to"] == "visit"]
    assert [item["position"] for item in visit_items] == list(range(len(visit_items)))


async def test_a_work_order_done_leaves_one_visit_through_the_outbox(
    crm: CrmService, visits: Visits, database: Database, tmp_path: Path
) -> None:
    from callcenter.bus import Bus
    from crm_bridge.visit_notifier import RepairVisits
    from outlets.events import WorkOrderDone

    someone = await customer(crm, number="+86 139 0000 1111")
    booking, _ = await crm.records.create(
        ServiceRecordIn(
            type=RecordType.REPAIR_BOOKING, content="Fridge", customer_id=someone, caller_number=HOSTILE[:200]
        ),
        actor="agent",
    )
    bus = Bus()
    outbox = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    notifier = RepairVisits(visits, outbox, bus)
    notifier.start()
    try:
        for _ in range(2):
            bus.publish(WorkOrderDone(order_id=77, service_record_id=booking.id, customer_id=someone, outlet_id=3))
            await bus.drain()
    finally:
        notifier.close()
        await outbox.close()
    items, total = await visits.find(_query(cause="repair"))
    assert total == 1
    assert (items[0]["cause_ref"], items[0]["customer"]["id"], items[0]["number"]) == ("77", someone, HOSTILE[:200])
    assert items[0]["linkedid"] is None
