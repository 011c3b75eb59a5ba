"""Service outlets and work orders against SQLite and PostgreSQL, through the HTTP API: the dispatch rule (region,
category, fewest open orders, name), overrides, every refused rule with its code and nothing half-written, the
outlet's feedback once, fee settlements, evaluations, who may do what, and hostile text kept as it was sent."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, bindparam, func, inspect, select, text

from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.services import AuthService
from callcenter.bus import Bus
from callcenter.db import Base, Database, DatabaseUnavailable, UtcDateTime, include_name, migrate
from callcenter.keys import AUTH
from callcenter.web.errors import error_middleware
from crm_bridge.http import crm_routes
from crm_bridge.keys import CRM
from crm_bridge.models import Product, ServiceRecordHistory
from crm_bridge.ports import LifecycleRefused, ServiceRecordFacts
from crm_bridge.reads import CrmServiceDesk
from crm_bridge.schemas import CustomerIn, ServiceRecordIn, ServiceRecordPatch, TransitionIn
from crm_bridge.services import CrmService
from outlets.events import FeeReviewed, WorkOrderDispatched, WorkOrderDone
from outlets.exceptions import RuleRefused
from outlets.http import outlet_routes
from outlets.keys import OUTLETS
from outlets.models import FeeSettlement, OrderFeedback, Outlet, OutletHistory, WorkOrder
from outlets.schemas import DispatchIn, FeedbackIn, OutletIn
from outlets.services import OutletService

PASSWORD = "correct horse battery"
HOSTILE = '=HYPERLINK("http://x")<script>alert(1)</script>"\'; DROP TABLE work_orders; --\r\n\u202e' + "修" * 300
# A region is a short key (100 characters at most), matched as it is once trimmed.
HOSTILE_REGION = "<b>'; DELETE FROM service_outlets; --\u202e区</b>"
OUTLET_TABLES = {
    "service_outlets",
    "outlet_categories",
    "work_orders",
    "work_order_feedback",
    "fee_settlements",
    "outlet_evaluations",
    "outlet_history",
}

Client = TestClient[web.Request, web.Application]
Headers = dict[str, str]


@pytest.fixture
def crm(database: Database, service: AuthService) -> CrmService:
    return CrmService(database, audit=service)


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def events(bus: Bus) -> list[object]:
    seen: list[object] = []
    bus.subscribe_all(seen.append)
    return seen


@pytest.fixture
def outlets(database: Database, crm: CrmService, bus: Bus) -> OutletService:
    return OutletService(database, CrmServiceDesk(database, crm.records), bus)


@pytest.fixture
async def client(service: AuthService, outlets: OutletService, crm: CrmService) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[OUTLETS] = outlets
    app[CRM] = crm
    app.add_routes(outlet_routes)
    # The CRM's routes too, for completing a record before it is dispatched.
    app.add_routes(crm_routes)
    check_routes_declared(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def users(service: AuthService) -> dict[str, Headers]:
    """Bearer headers per role."""
    found: dict[str, Headers] = {}
    for role in ("agent", "supervisor", "qa", "admin", "backoffice"):
        await service.create_user(role + "1", PASSWORD, roles=[role])
        token, _ = await service.login(role + "1", PASSWORD)
        found[role] = {"Authorization": f"Bearer {token}"}
    return found


async def _product(database: Database, code: str, category: str) -> int:
    async with database.session() as session:
        product = Product(
            code=code, name=f"{category} {code}", category=category, price=Decimal("100"), availability="in_stock"
        )
        session.add(product)
        await session.flush()
        return product.id


class Desk:
    """Customers and records made through the CRM itself, as an agent would make them on a call."""

    def __init__(self, database: Database, crm: CrmService) -> None:
        self.database = database
        self.crm = crm
        self.products: dict[str, int] = {}

    async def product(self, category: str) -> int:
        if category not in self.products:
            self.products[category] = await _product(self.database, f"P{len(self.products) + 1}", category)
        return self.products[category]

    async def record(
        self,
        *,
        region: str | None = "Haidian",
        category: str | None = "air_conditioner",
        kind: str = "repair_booking",
        fault_type: str | None = "no_power",
    ) -> int:
        file = await self.crm.customers.create(CustomerIn(name="Li Lei", region=region))
        product_id = None if category is None else await self.product(category)
        created, _ = await self.crm.records.create(
            ServiceRecordIn.model_validate(
                {
                    "type": kind,
                    "content": "it does not start",
                    "customer_id": file.customer.id,
                    "product_id": product_id,
                    "fault_type": fault_type,
                    "appointment_at": "2030-01-02T09:00:00+08:00",
                }
            ),
            actor="agent1",
        )
        return created.id

    async def status(self, record_id: int) -> str:
        record, _ = await self.crm.records.get(record_id)
        return record.status

    async def history_length(self, record_id: int) -> int:
        _, history = await self.crm.records.get(record_id)
        return len(history)


@pytest.fixture
def desk(database: Database, crm: CrmService) -> Desk:
    return Desk(database, crm)


async def _ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def _refused(response: Any, status: int, code: str) -> dict[str, Any]:
    body = await response.json()
    assert response.status == status, body
    assert body["error"]["id"] == code, body
    if status == 409:
        assert body["error"]["details"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


async def _outlet(client: Client, headers: Headers, name: str, region: str = "Haidian", *categories: str) -> int:
    body = {"name": name, "region": region, "categories": list(categories or ("air_conditioner",))}
    created = await _ok(await client.post("/api/v1/outlets", json=body, headers=headers), 201)
    outlet_id: int = created["id"]
    return outlet_id


async def _dispatch(client: Client, headers: Headers, record_id: int, **extra: Any) -> Any:
    return await client.post("/api/v1/work-orders", json={"service_record_id": record_id, **extra}, headers=headers)


async def _orders(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(WorkOrder)) or 0)


# schema


async def test_the_migrations_make_the_outlets_tables_as_the_models_describe_them(database: Database) -> None:
    def check(connection: Connection) -> tuple[set[str], list[Any]]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
        return set(inspect(connection).get_table_names()), list(compare_metadata(context, Base.metadata))

    async with database.engine.connect() as connection:
        names, differences = await connection.run_sync(check)
    assert names >= OUTLET_TABLES
    assert differences == []


async def test_adding_the_product_to_service_records_keeps_every_record_and_what_refers_to_it(
    db_target: Any,
) -> None:
    # SQLite copies the table to add the key; dropping the old one must not cascade into the records' history nor
    # into any other table that refers to them (the desk's, directly or through another: these two stand for them).
    await migrate(db_target.url, schema=db_target.schema, revision="0002")
    database = Database(db_target.url, schema=db_target.schema)
    await database.open()
    try:
        at = bindparam("at", datetime(2030, 1, 1, 9, tzinfo=UTC), type_=UtcDateTime())
        async with database.session() as session:
            for statement in (
                "CREATE TABLE child_0010 (id INTEGER PRIMARY KEY, "
                "record_id BIGINT NOT NULL REFERENCES service_records (id) ON DELETE CASCADE)",
                "CREATE TABLE grandchild_0010 (id INTEGER PRIMARY KEY, "
                "child_id INTEGER NOT NULL REFERENCES child_0010 (id) ON DELETE CASCADE, note TEXT)",
            ):
                await session.execute(text(statement))
            await session.execute(
                text(
                    "INSERT INTO service_records (id, type, status, content, created_by, created_at, updated_at) "
                    "VALUES (7, 'repair_booking', 'new', :content, 'agent1', :at, :at)"
                ).bindparams(at),
                {"content": HOSTILE},
            )
            await session.execute(
                text(
                    "INSERT INTO service_record_history (record_id, at, actor, action, to_status) "
                    "VALUES (7, :at, 'agent1', 'create', 'new')"
                ).bindparams(at)
            )
            await session.execute(text("INSERT INTO child_0010 (id, record_id) VALUES (3, 7)"))
            await session.execute(
                text("INSERT INTO grandchild_0010 (id, child_id, note) VALUES (1, 3, :note)"), {"note": HOSTILE}
            )
        await database.migrate()
        async with database.session() as session:
            content = await session.scalar(text("SELECT content FROM service_records WHERE id = 7"))
            history = await session.scalar(select(func.count()).select_from(ServiceRecordHistory))
            product = await session.scalar(text("SELECT product_id FROM service_records WHERE id = 7"))
            child = await session.scalar(text("SELECT record_id FROM child_0010 WHERE id = 3"))
            note = await session.scalar(text("SELECT note FROM grandchild_0010 WHERE child_id = 3"))
        assert (content, history, product, child, note) == (HOSTILE, 1, None, 7, HOSTILE)
        # The copy is the table the others refer to: a record's history still goes with it.
        async with database.session() as session:
            await session.execute(text("DELETE FROM service_records WHERE id = 7"))
            left = await session.scalar(select(func.count()).select_from(ServiceRecordHistory))
            children = await session.scalar(text("SELECT count(*) FROM child_0010"))
        assert (left, children) == (0, 0)
    finally:
        await database.close()


# the dispatch rule


async def test_the_rule_picks_an_active_outlet_of_the_region_serving_the_category(
    client: Client, users: dict[str, Headers], desk: Desk, events: list[object]
) -> None:
    office = users["backoffice"]
    await _outlet(client, office, "Elsewhere", "Chaoyang", "air_conditioner")
    await _outlet(client, office, "Wrong category", "Haidian", "washing_machine")
    retired = await _outlet(client, office, "Retired", "Haidian", "air_conditioner")
    await _ok(await client.post(f"/api/v1/outlets/{retired}/retire", json={"reason": "closed"}, headers=office))
    right = await _outlet(client, office, "Right", "Haidian", "washing_machine", "air_conditioner")

    record_id = await desk.record()
    order = await _ok(await _dispatch(client, office, record_id), 201)
    assert (order["outlet_id"], order["chosen"], order["override_reason"]) == (right, "auto", None)
    assert (order["kind"], order["status"], order["region"], order["product_category"]) == (
        "repair",
        "dispatched",
        "Haidian",
        "air_conditioner",
    )
    assert order["fault_type"] == "no_power"
    assert order["appointment_at"] == "2030-01-02T01:00:00+00:00"
    assert order["dispatched_by"] == "backoffice1"
    # The CRM's lifecycle: assigned to the dispatcher, then started.
    assert await desk.status(record_id) == "in_progress"
    record, history = await desk.crm.records.get(record_id)
    assert [entry.action for entry in history] == ["create", "assign", "start"]
    assert "Right" in history[1].changes["note"]
    assert WorkOrderDispatched(order["id"], record_id, record.customer_id, right, "repair", "auto") in events


async def test_the_preview_shows_the_rule_s_choice_or_its_refusal_and_writes_nothing(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    zeta = await _outlet(client, office, "Zeta", "Haidian")
    alpha = await _outlet(client, office, "Alpha", "Haidian")
    await _outlet(client, office, "Elsewhere", "Chaoyang")
    record_id = await desk.record()

    async def preview(record: int, headers: Headers = office) -> Any:
        return await client.get("/api/v1/work-orders/preview", params={"service_record_id": record}, headers=headers)

    shown = await _ok(await preview(record_id, users["supervisor"]))
    assert (shown["kind"], shown["region"], shown["category"], shown["refusal"]) == (
        "repair",
        "Haidian",
        "air_conditioner",
        None,
    )
    assert shown["chosen"]["id"] == alpha
    assert [outlet["id"] for outlet in shown["candidates"]] == [alpha, zeta]
    assert await _orders(database) == 0
    assert await desk.status(record_id) == "new"

    order = await _ok(await _dispatch(client, office, record_id), 201)
    assert order["outlet_id"] == alpha
    again = await _ok(await preview(record_id))
    assert again["chosen"] is None
    assert again["refusal"]["code"] == "open_order_exists"
    assert again["refusal"]["details"]["order_id"] == order["id"]
    # The next record would go to Zeta: Alpha has an open order now.
    other = await _ok(await preview(await desk.record()))
    assert [outlet["id"] for outlet in other["candidates"]] == [zeta, alpha]
    complaint = await _ok(await preview(await desk.record(kind="complaint")))
    assert (complaint["kind"], complaint["refusal"]["code"]) == (None, "record_wrong_type")
    nowhere = await _ok(await preview(await desk.record(region="Xicheng")))
    assert (nowhere["candidates"], nowhere["refusal"]["code"]) == ([], "no_matching_outlet")
    await _refused(await preview(99999), 404, "service_record_not_found")
    await _refused(await client.get("/api/v1/work-orders/preview", headers=office), 400, "invalid_input")
    await _refused(await preview(record_id, users["agent"]), 403, "forbidden")


async def test_the_rule_breaks_ties_by_fewest_open_orders_then_by_name(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    zeta = await _outlet(client, office, "Zeta", "Haidian")
    alpha = await _outlet(client, office, "Alpha", "Haidian")
    chosen = []
    for _ in range(4):
        order = await _ok(await _dispatch(client, office, await desk.record()), 201)
        chosen.append(order["outlet_id"])
    # Alpha first (the name), then Zeta (fewer open orders), and so on in turn.
    assert chosen == [alpha, zeta, alpha, zeta]
    listed = await _ok(await client.get("/api/v1/outlets", params={"region": "Haidian"}, headers=office))
    assert {item["id"]: item["open_orders"] for item in listed["items"]} == {zeta: 2, alpha: 2}


async def test_an_installation_booking_becomes_an_installation_order(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    await _outlet(client, office, "Fitters", "Haidian", "water_heater")
    record_id = await desk.record(kind="installation_booking", category="water_heater", fault_type=None)
    order = await _ok(await _dispatch(client, office, record_id), 201)
    assert (order["kind"], order["product_category"], order["fault_type"]) == ("installation", "water_heater", None)


async def test_the_dispatcher_overrides_the_rule_with_a_reason_that_is_kept(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    await _outlet(client, office, "Near", "Haidian")
    far = await _outlet(client, office, HOSTILE, "Chaoyang", "television")
    record_id = await desk.record()

    without_reason = await _dispatch(client, office, record_id, outlet_id=far)
    error = await _refused(without_reason, 400, "invalid_input")
    assert "override_reason" in error["details"]["fields"]
    reason_alone = await _dispatch(client, office, record_id, override_reason="because")
    await _refused(reason_alone, 400, "invalid_input")
    assert await desk.status(record_id) == "new"

    order = await _ok(await _dispatch(client, office, record_id, outlet_id=far, override_reason=HOSTILE), 201)
    assert (order["outlet_id"], order["outlet_name"], order["chosen"], order["override_reason"]) == (
        far,
        HOSTILE,
        "override",
        HOSTILE,
    )
    one = await _ok(await client.get(f"/api/v1/work-orders/{order['id']}", headers=office))
    assert one["history"][0]["action"] == "dispatch"
    assert one["history"][0]["actor"] == "backoffice1"
    assert one["history"][0]["changes"]["override_reason"] == HOSTILE
    assert one["history"][0]["changes"]["chosen"] == "override"


# refusals: the rule's code, and nothing written


async def _nothing_written(database: Database, desk: Desk, record_id: int, status: str, history: int) -> None:
    assert await _orders(database) == 0
    assert await desk.status(record_id) == status
    assert await desk.history_length(record_id) == history


async def test_no_matching_outlet_names_the_region_and_the_category(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    await _outlet(client, office, "Chaoyang AC", "Chaoyang")
    retired = await _outlet(client, office, "Haidian AC", "Haidian")
    await _ok(await client.post(f"/api/v1/outlets/{retired}/retire", json={}, headers=office))
    record_id = await desk.record(region=HOSTILE_REGION)
    error = await _refused(await _dispatch(client, office, record_id), 409, "no_matching_outlet")
    assert error["details"]["region"] == HOSTILE_REGION
    assert error["details"]["category"] == "air_conditioner"
    assert "air_conditioner" in error["message"]

    haidian = await desk.record()
    error = await _refused(await _dispatch(client, office, haidian), 409, "no_matching_outlet")
    assert (error["details"]["region"], error["details"]["category"]) == ("Haidian", "air_conditioner")

    no_region = await desk.record(region=None)
    error = await _refused(await _dispatch(client, office, no_region), 409, "no_matching_outlet")
    assert error["details"]["region"] is None
    assert "no region" in error["message"]
    no_product = await desk.record(category=None)
    error = await _refused(await _dispatch(client, office, no_product), 409, "no_matching_outlet")
    assert error["details"]["category"] is None
    for record in (record_id, haidian, no_region, no_product):
        await _nothing_written(database, desk, record, "new", 1)


async def test_a_record_completed_with_its_product_after_the_call_is_dispatched(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, "Shop", "Haidian")
    record_id = await desk.record(region=None, category=None, fault_type=None)
    await _refused(await _dispatch(client, office, record_id), 409, "no_matching_outlet")
    customer_id = (await desk.crm.records.get(record_id))[0].customer_id
    customer_url = f"/api/v1/customers/{customer_id}"
    await _refused(await client.patch(customer_url, json={"region": ""}, headers=office), 400, "invalid_input")
    placed = await _ok(await client.patch(customer_url, json={"region": " Haidian\t"}, headers=office))
    assert placed["customer"]["region"] == "Haidian"
    assert (await _ok(await client.get(customer_url, headers=office)))["customer"]["region"] == "Haidian"
    error = await _refused(await _dispatch(client, office, record_id), 409, "no_matching_outlet")
    assert (error["details"]["region"], error["details"]["category"]) == ("Haidian", None)
    product_id = await desk.product("air_conditioner")
    url = f"/api/v1/service-records/{record_id}"
    await _refused(await client.patch(url, json={"product_id": 99999}, headers=office), 400, "invalid_input")
    await _refused(await client.patch(url, json={"fault_type": " "}, headers=office), 400, "invalid_input")
    await _refused(await client.patch(url, json={"status": "archived"}, headers=office), 400, "invalid_input")
    await _refused(await client.patch(url, json={"product_id": product_id}, headers=users["qa"]), 403, "forbidden")
    body = {"product_id": product_id, "fault_type": HOSTILE[:64]}
    completed = await _ok(await client.patch(url, json=body, headers=users["agent"]))
    assert (completed["product_id"], completed["fault_type"], completed["status"]) == (
        product_id,
        HOSTILE[:64].strip(),
        "new",
    )
    order = await _ok(await _dispatch(client, office, record_id), 201)
    assert (order["outlet_id"], order["product_id"], order["fault_type"]) == (shop, product_id, HOSTILE[:64].strip())
    record = await _ok(await client.get(url, headers=office))
    assert [entry["action"] for entry in record["history"]] == ["create", "update", "assign", "start"]
    assert record["history"][1]["changes"]["product_id"] == {"from": None, "to": product_id}
    assert record["history"][1]["actor"] == "agent1"


async def test_a_retired_outlet_takes_no_order_even_by_override(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    retired = await _outlet(client, office, "Gone", "Haidian")
    await _ok(await client.post(f"/api/v1/outlets/{retired}/retire", json={"reason": "closed"}, headers=office))
    record_id = await desk.record()
    response = await _dispatch(client, office, record_id, outlet_id=retired, override_reason="they know the customer")
    error = await _refused(response, 409, "outlet_retired")
    assert error["details"]["outlet_id"] == retired
    await _nothing_written(database, desk, record_id, "new", 1)
    missing = await _dispatch(client, office, record_id, outlet_id=99999, override_reason="x")
    await _refused(missing, 404, "outlet_not_found")
    await _refused(await _dispatch(client, office, 99999), 404, "service_record_not_found")


async def test_only_open_repair_and_installation_bookings_are_dispatched(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database, service: AuthService
) -> None:
    office = users["backoffice"]
    await _outlet(client, office, "Shop", "Haidian")
    complaint = await desk.record(kind="complaint")
    error = await _refused(await _dispatch(client, office, complaint), 409, "record_wrong_type")
    assert error["details"]["record_type"] == "complaint"
    assert error["details"]["allowed_types"] == ["installation_booking", "repair_booking"]
    await _nothing_written(database, desk, complaint, "new", 1)

    archived = await desk.record()
    assignee = (await service.create_user("desk2", PASSWORD, roles=["backoffice"])).id
    for step in ({"action": "assign", "assigned_to": assignee}, {"action": "start"}, {"action": "resolve"}):
        await desk.crm.records.transition(archived, TransitionIn.model_validate(step), actor="backoffice1")
    for status in ("resolved", "archived"):
        if status == "archived":
            await desk.crm.records.transition(archived, TransitionIn(action="archive"), actor="backoffice1")
        error = await _refused(await _dispatch(client, office, archived), 409, "record_wrong_status")
        assert error["details"]["status"] == status
        assert error["details"]["allowed_from"] == ["new", "assigned", "in_progress"]
    await _nothing_written(database, desk, archived, "archived", 5)


async def test_a_record_has_one_open_order_at_a_time(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, "Shop", "Haidian")
    other = await _outlet(client, office, "Other", "Chaoyang")
    record_id = await desk.record()
    first = await _ok(await _dispatch(client, office, record_id), 201)
    history = await desk.history_length(record_id)
    again = await _dispatch(client, office, record_id, outlet_id=other, override_reason="second opinion")
    error = await _refused(again, 409, "open_order_exists")
    assert error["details"]["order_id"] == first["id"]
    assert await _orders(database) == 1
    assert await desk.history_length(record_id) == history

    # Cancelled (with a reason), the record may go to an outlet again.
    await _refused(
        await client.post(f"/api/v1/work-orders/{first['id']}/cancel", json={}, headers=office), 400, "invalid_input"
    )
    cancelled = await _ok(
        await client.post(f"/api/v1/work-orders/{first['id']}/cancel", json={"reason": HOSTILE}, headers=office)
    )
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", HOSTILE)
    second = await _ok(await _dispatch(client, office, record_id, outlet_id=other, override_reason="shop is busy"), 201)
    assert second["outlet_id"] == other != shop
    twice = await client.post(f"/api/v1/work-orders/{first['id']}/cancel", json={"reason": "again"}, headers=office)
    error = await _refused(twice, 409, "order_not_open")
    assert error["details"]["status"] == "cancelled"
    late = await client.post(
        f"/api/v1/work-orders/{first['id']}/feedback", json={"completed_at": "2030-01-03T10:00:00Z"}, headers=office
    )
    await _refused(late, 409, "order_not_open")


async def test_of_two_dispatchers_of_one_record_at_once_one_wins(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    first = await _outlet(client, office, "First", "Haidian")
    second = await _outlet(client, office, "Second", "Chaoyang")
    record_id = await desk.record()
    responses = await asyncio.gather(
        *(_dispatch(client, office, record_id, outlet_id=outlet, override_reason="mine") for outlet in (first, second))
    )
    assert sorted(response.status for response in responses) == [201, 409]
    (loser,) = [await response.json() for response in responses if response.status == 409]
    assert loser["error"]["id"] == "open_order_exists"
    assert await _orders(database) == 1
    # The record moved once, for the order that was written.
    _, history = await desk.crm.records.get(record_id)
    assert [entry.action for entry in history] == ["create", "assign", "start"]


async def test_an_outlet_retired_while_it_is_dispatched_to_is_left_no_open_order(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    for attempt in range(6):
        shop = await _outlet(client, office, f"Shop {attempt}", "Haidian")
        record_id = await desk.record()
        dispatched, retired = await asyncio.gather(
            _dispatch(client, office, record_id, outlet_id=shop, override_reason="they are near"),
            client.post(f"/api/v1/outlets/{shop}/retire", json={"reason": "closing down"}, headers=office),
        )
        # Either the order went first and the retirement is refused for it, or the other way round; never both.
        if dispatched.status == 201:
            await _refused(retired, 409, "outlet_has_open_orders")
        else:
            error = await _refused(dispatched, 409, "outlet_retired")
            assert error["details"]["retired_at"] == (await _ok(retired))["retired_at"]
        async with database.session() as session:
            retired_at = await session.scalar(select(Outlet.retired_at).where(Outlet.id == shop))
            open_orders = await session.scalar(
                select(func.count()).where(WorkOrder.outlet_id == shop, WorkOrder.status == "dispatched")
            )
        assert (retired_at is None, open_orders) in ((True, 1), (False, 0))


async def test_of_two_feedbacks_or_two_reviews_at_once_one_is_kept(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database
) -> None:
    office = users["backoffice"]
    await _outlet(client, office, "Shop", "Haidian")
    order = await _ok(await _dispatch(client, office, await desk.record()), 201)
    reports = [{"completed_at": "2030-01-03T10:00:00Z", "fee": fee} for fee in ("30", "45.50")]
    responses = await asyncio.gather(
        *(client.post(f"/api/v1/work-orders/{order['id']}/feedback", json=body, headers=office) for body in reports)
    )
    assert sorted(response.status for response in responses) == [201, 409]
    (loser,) = [await response.json() for response in responses if response.status == 409]
    assert loser["error"]["id"] in ("feedback_registered", "order_not_open")
    (done,) = [await response.json() for response in responses if response.status == 201]
    async with database.session() as session:
        fees = list(await session.scalars(select(OrderFeedback.fee)))
        amounts = list(await session.scalars(select(FeeSettlement.amount)))
    assert fees == amounts == [Decimal(done["feedback"]["fee"])]

    url = f"/api/v1/fee-settlements/{done['settlement']['id']}/review"
    decisions = [{"decision": "approve"}, {"decision": "reject", "reason": "no receipt"}]
    reviews = await asyncio.gather(*(client.post(url, json=body, headers=office) for body in decisions))
    assert sorted(review.status for review in reviews) == [200, 409]
    (refused,) = [await review.json() for review in reviews if review.status == 409]
    assert refused["error"]["id"] == "settlement_reviewed"
    (kept,) = [await review.json() for review in reviews if review.status == 200]
    settlement = await _ok(await client.get(f"/api/v1/fee-settlements/{done['settlement']['id']}", headers=office))
    assert settlement["status"] == kept["status"]
    decided = {"approved": "approve", "rejected": "reject"}[kept["status"]]
    assert [entry["action"] for entry in settlement["history"]] == ["open", decided]


async def test_two_changes_of_an_outlets_categories_at_once_leave_one_of_them_whole(
    client: Client, users: dict[str, Headers], database: Database
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, "Shop", "Haidian", "tv")
    lists = (["air_conditioner", "washer"], ["washer", "fridge", "tv"])
    responses = await asyncio.gather(
        *(client.patch(f"/api/v1/outlets/{shop}", json={"categories": c}, headers=office) for c in lists)
    )
    assert [response.status for response in responses] == [200, 200]
    outlet = await _ok(await client.get(f"/api/v1/outlets/{shop}", headers=office))
    assert outlet["categories"] in [sorted(categories) for categories in lists]
    # Each change is kept from what the one before it left.
    updates = [entry["changes"]["categories"] for entry in outlet["history"] if entry["action"] == "update"]
    assert len(updates) == 2
    assert updates[0]["from"] == ["tv"]
    assert updates[1]["from"] == updates[0]["to"]
    assert updates[1]["to"] == outlet["categories"]


async def test_two_completions_of_one_record_at_once_are_kept_one_after_the_other(desk: Desk) -> None:
    record_id = await desk.record(fault_type=None)
    patches = [ServiceRecordPatch(fault_type=fault) for fault in ("no_power", "noise")]
    await asyncio.gather(*(desk.crm.records.update(record_id, patch, actor="office") for patch in patches))
    record, history = await desk.crm.records.get(record_id)
    updates = [entry.changes["fault_type"] for entry in history if entry.action == "update"]
    # The second starts from what the first left: the history tells the record's changes in turn.
    assert len(updates) == 2
    assert updates[0]["from"] is None
    assert updates[1]["from"] == updates[0]["to"]
    assert record.fault_type == updates[1]["to"]


class RefusingDesk:
    """The CRM's port, but the record's lifecycle refuses to start it (someone resolved it a moment ago)."""

    def __init__(self, real: CrmServiceDesk) -> None:
        self.real = real

    async def record_facts(self, record_id: int) -> ServiceRecordFacts | None:
        return await self.real.record_facts(record_id)

    async def move(
        self, record_id: int, action: str, *, actor: str, assignee: int | None = None, note: str | None = None
    ) -> str:
        if action == "start":
            raise LifecycleRefused(record_id, action, "resolved", ["assigned"])
        return await self.real.move(record_id, action, actor=actor, assignee=assignee, note=note)


async def test_an_order_whose_record_cannot_move_is_taken_back(
    database: Database, crm: CrmService, desk: Desk, service: AuthService, events: list[object], bus: Bus
) -> None:
    refusing = OutletService(database, RefusingDesk(CrmServiceDesk(database, crm.records)), bus)
    await refusing.create_outlet(
        OutletIn(name="Shop", region="Haidian", categories=["air_conditioner"]), actor="backoffice1"
    )
    dispatcher = await service.create_user("desk3", PASSWORD, roles=["backoffice"])
    record_id = await desk.record()
    with pytest.raises(RuleRefused) as refused:
        await refusing.dispatch(DispatchIn(service_record_id=record_id), actor="desk3", user_id=dispatcher.id)
    assert refused.value.code == "record_wrong_status"
    assert refused.value.details["status"] == "resolved"
    assert await _orders(database) == 0
    async with database.session() as session:
        kept = await session.scalar(
            select(func.count()).select_from(OutletHistory).where(OutletHistory.subject == "work_order")
        )
    assert kept == 0
    assert not [event for event in events if isinstance(event, WorkOrderDispatched)]


class FailingDesk(RefusingDesk):
    """The CRM's port, but the database goes away as the record is to be resolved."""

    async def move(
        self, record_id: int, action: str, *, actor: str, assignee: int | None = None, note: str | None = None
    ) -> str:
        if action == "resolve":
            raise DatabaseUnavailable("the database went away")
        return await self.real.move(record_id, action, actor=actor, assignee=assignee, note=note)


async def test_an_order_done_is_told_even_when_its_record_cannot_be_resolved_then(
    database: Database, crm: CrmService, desk: Desk, service: AuthService, events: list[object], bus: Bus
) -> None:
    failing = OutletService(database, FailingDesk(CrmServiceDesk(database, crm.records)), bus)
    await failing.create_outlet(OutletIn(name="Shop", region="Haidian", categories=["air_conditioner"]), actor="x")
    dispatcher = await service.create_user("desk4", PASSWORD, roles=["backoffice"])
    record_id = await desk.record()
    order = await failing.dispatch(DispatchIn(service_record_id=record_id), actor="desk4", user_id=dispatcher.id)
    report = FeedbackIn(completed_at=datetime(2030, 1, 3, 10, tzinfo=UTC))
    with pytest.raises(DatabaseUnavailable):
        await failing.register_feedback(order.id, report, actor="desk4")
    # The feedback was committed before the record's move failed: the order is done, and its event (which the
    # CRM's repair visit comes of) went out all the same.
    assert (await failing.order(order.id)).status == "done"
    assert [(event.order_id, event.service_record_id) for event in events if isinstance(event, WorkOrderDone)] == [
        (order.id, record_id)
    ]
    assert await desk.status(record_id) == "in_progress"


# feedback and fees


async def test_feedback_is_registered_once_closes_the_order_and_opens_the_fee_for_review(
    client: Client, users: dict[str, Headers], desk: Desk, database: Database, events: list[object]
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, "Shop", "Haidian")
    record_id = await desk.record()
    order = await _ok(await _dispatch(client, office, record_id), 201)
    url = f"/api/v1/work-orders/{order['id']}/feedback"
    feedback = {"completed_at": "2030-01-03T10:00:00+08:00", "parts_used": HOSTILE, "fee": "120.50", "notes": HOSTILE}

    await _refused(await client.post(url, json={**feedback, "fee": "-1"}, headers=office), 400, "invalid_input")
    await _refused(await client.post(url, json={**feedback, "fee": "1.234"}, headers=office), 400, "invalid_input")
    done = await _ok(await client.post(url, json=feedback, headers=office), 201)
    assert done["status"] == "done"
    assert done["closed_at"] is not None
    assert done["feedback"]["parts_used"] == HOSTILE
    assert done["feedback"]["notes"] == HOSTILE
    assert done["feedback"]["fee"] == "120.50"
    assert done["feedback"]["completed_at"] == "2030-01-03T02:00:00+00:00"
    assert done["settlement"]["status"] == "pending"
    assert done["settlement"]["amount"] == "120.50"
    assert await desk.status(record_id) == "resolved"
    customer_id = (await desk.crm.records.get(record_id))[0].customer_id
    assert WorkOrderDone(order["id"], record_id, customer_id, shop) in events

    again = await client.post(url, json={**feedback, "fee": "999.00"}, headers=office)
    await _refused(again, 409, "feedback_registered")
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(OrderFeedback)) == 1
        assert await session.scalar(select(FeeSettlement.amount)) == Decimal("120.50")

    # A free repair opens no settlement.
    free = await _ok(await _dispatch(client, office, await desk.record()), 201)
    free_done = await _ok(
        await client.post(
            f"/api/v1/work-orders/{free['id']}/feedback", json={"completed_at": "2030-01-03T10:00:00Z"}, headers=office
        ),
        201,
    )
    assert (free_done["feedback"]["fee"], free_done["settlement"]) == ("0.00", None)


async def test_fees_are_approved_or_rejected_with_a_reason_once(
    client: Client, users: dict[str, Headers], desk: Desk, events: list[object]
) -> None:
    office = users["backoffice"]
    haidian = await _outlet(client, office, "Haidian shop", "Haidian")
    chaoyang = await _outlet(client, office, "Chaoyang shop", "Chaoyang")
    settlements = []
    for region, fee in (("Haidian", "80.00"), ("Chaoyang", "35.10"), ("Haidian", "12.00")):
        order = await _ok(await _dispatch(client, office, await desk.record(region=region)), 201)
        done = await _ok(
            await client.post(
                f"/api/v1/work-orders/{order['id']}/feedback",
                json={"completed_at": "2030-01-03T10:00:00Z", "fee": fee},
                headers=office,
            ),
            201,
        )
        settlements.append(done["settlement"]["id"])
    first, second, third = settlements

    def review(settlement_id: int, **body: Any) -> Any:
        return client.post(f"/api/v1/fee-settlements/{settlement_id}/review", json=body, headers=office)

    error = await _refused(await review(first, decision="reject"), 400, "invalid_input")
    assert "reason" in error["details"]["fields"]
    await _refused(await review(first, decision="reject", reason="  "), 400, "invalid_input")
    rejected = await _ok(await review(first, decision="reject", reason=HOSTILE))
    assert (rejected["status"], rejected["reason"], rejected["reviewed_by"]) == ("rejected", HOSTILE, "backoffice1")
    approved = await _ok(await review(second, decision="approve"))
    assert (approved["status"], approved["reason"], approved["amount"]) == ("approved", None, "35.10")
    error = await _refused(
        await review(second, decision="reject", reason="changed my mind"), 409, "settlement_reviewed"
    )
    assert error["details"]["status"] == "approved"
    await _refused(await review(99999, decision="approve"), 404, "fee_settlement_not_found")
    assert FeeReviewed(second, approved["order_id"], chaoyang, "approved", "35.10") in events

    async def ids(**params: Any) -> list[int]:
        listed = await _ok(await client.get("/api/v1/fee-settlements", params=params, headers=office))
        return [item["id"] for item in listed["items"]]

    assert await ids() == [third, second, first]
    assert await ids(status="pending") == [third]
    assert await ids(outlet_id=haidian) == [third, first]
    assert await ids(region="Chaoyang") == [second]
    assert await ids(region="Haidian", status="rejected") == [first]
    await _refused(await client.get("/api/v1/fee-settlements?status=paid", headers=office), 400, "invalid_input")

    one = await _ok(await client.get(f"/api/v1/fee-settlements/{first}", headers=office))
    assert [entry["action"] for entry in one["history"]] == ["open", "reject"]
    assert one["history"][1]["changes"]["reason"] == HOSTILE

    report = await client.get("/api/v1/fee-settlements", params={"format": "csv"}, headers=office)
    assert report.status == 200
    assert report.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await report.text())))
    assert [row["amount"] for row in rows] == ["12.00", "35.10", "80.00"]
    # A reason a spreadsheet would run comes out as text.
    assert rows[2]["reason"] == "'" + HOSTILE


async def test_the_work_order_report_filters_and_defuses_formulas(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, HOSTILE, "Haidian")
    other = await _outlet(client, office, "Other", "Chaoyang")
    first = await _ok(await _dispatch(client, office, await desk.record()), 201)
    second = await _ok(await _dispatch(client, office, await desk.record(region="Chaoyang")), 201)
    await _ok(
        await client.post(
            f"/api/v1/work-orders/{first['id']}/feedback",
            json={"completed_at": "2030-01-03T10:00:00Z", "fee": "10", "parts_used": "-fuse"},
            headers=office,
        ),
        201,
    )

    async def ids(**params: Any) -> list[int]:
        listed = await _ok(await client.get("/api/v1/work-orders", params=params, headers=office))
        return [item["id"] for item in listed["items"]]

    assert await ids() == [second["id"], first["id"]]
    assert await ids(status="done") == [first["id"]]
    assert await ids(status="dispatched", outlet_id=other) == [second["id"]]
    assert await ids(outlet_id=shop, region="Chaoyang") == []
    assert await ids(region="Haidian") == [first["id"]]
    await _refused(await client.get("/api/v1/work-orders?limit=0", headers=office), 400, "invalid_input")
    await _refused(await client.get("/api/v1/work-orders?unknown=1", headers=office), 400, "invalid_input")

    report = await client.get("/api/v1/work-orders", params={"format": "csv", "status": "done"}, headers=office)
    rows = list(csv.DictReader(io.StringIO(await report.text())))
    assert len(rows) == 1
    assert rows[0]["outlet_name"] == "'" + HOSTILE
    assert rows[0]["parts_used"] == "'-fuse"
    assert (rows[0]["fee"], rows[0]["settlement_status"], rows[0]["fault_type"]) == ("10.00", "pending", "no_power")
    outlets_report = await client.get("/api/v1/outlets", params={"format": "csv"}, headers=office)
    listed = list(csv.DictReader(io.StringIO(await outlets_report.text())))
    assert [(row["name"], row["open_orders"]) for row in listed] == [("'" + HOSTILE, "0"), ("Other", "1")]


# outlets


async def test_outlets_are_maintained_and_retired_with_their_history(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    created = await _ok(
        await client.post(
            "/api/v1/outlets",
            json={
                "name": HOSTILE,
                "region": "  Haidian ",
                "categories": ["air_conditioner", "television", "air_conditioner"],
                "contact_person": HOSTILE[:200],
                "phone": "+86 10 6275 0000",
                "address": HOSTILE,
                "notes": HOSTILE,
            },
            headers=office,
        ),
        201,
    )
    outlet_id = created["id"]
    assert (created["name"], created["address"], created["notes"]) == (HOSTILE,) * 3
    assert created["contact_person"] == HOSTILE[:200]
    assert (created["region"], created["categories"], created["active"]) == (
        "Haidian",
        ["air_conditioner", "television"],
        True,
    )
    for bad in ({"name": "x", "region": "y", "categories": []}, {"name": " ", "region": "y", "categories": ["a"]}):
        await _refused(await client.post("/api/v1/outlets", json=bad, headers=office), 400, "invalid_input")
    await _refused(
        await client.patch(f"/api/v1/outlets/{outlet_id}", json={"name": None}, headers=office), 400, "invalid_input"
    )

    changed = await _ok(
        await client.patch(
            f"/api/v1/outlets/{outlet_id}", json={"categories": ["washing_machine"], "phone": None}, headers=office
        )
    )
    assert (changed["categories"], changed["phone"]) == (["washing_machine"], None)

    order = await _ok(await _dispatch(client, office, await desk.record(category="washing_machine")), 201)
    busy = await client.post(f"/api/v1/outlets/{outlet_id}/retire", json={"reason": "closing"}, headers=office)
    error = await _refused(busy, 409, "outlet_has_open_orders")
    assert error["details"]["open_orders"] == 1
    await _ok(
        await client.post(f"/api/v1/work-orders/{order['id']}/cancel", json={"reason": "customer away"}, headers=office)
    )
    retired = await _ok(
        await client.post(f"/api/v1/outlets/{outlet_id}/retire", json={"reason": HOSTILE}, headers=office)
    )
    assert (retired["active"], retired["retired_reason"]) == (False, HOSTILE)
    again = await client.post(f"/api/v1/outlets/{outlet_id}/retire", json={}, headers=office)
    await _refused(again, 409, "outlet_retired")
    frozen = await client.patch(f"/api/v1/outlets/{outlet_id}", json={"notes": "x"}, headers=office)
    await _refused(frozen, 409, "outlet_retired")

    listed = await _ok(await client.get("/api/v1/outlets", headers=office))
    assert outlet_id not in [item["id"] for item in listed["items"]]
    everything = await _ok(await client.get("/api/v1/outlets?include_retired=true", headers=office))
    assert outlet_id in [item["id"] for item in everything["items"]]
    one = await _ok(await client.get(f"/api/v1/outlets/{outlet_id}", headers=office))
    assert [entry["action"] for entry in one["history"]] == ["create", "update", "retire"]
    assert {entry["actor"] for entry in one["history"]} == {"backoffice1"}
    assert one["history"][1]["changes"]["categories"] == {
        "from": ["air_conditioner", "television"],
        "to": ["washing_machine"],
    }
    assert one["history"][0]["changes"]["name"] == HOSTILE
    await _refused(await client.get("/api/v1/outlets/99999", headers=office), 404, "outlet_not_found")
    await _refused(await client.get("/api/v1/work-orders/99999999999", headers=office), 404, "work_order_not_found")


async def test_outlets_are_evaluated_by_the_desk_and_by_quality(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, "Shop", "Haidian")
    other = await _outlet(client, office, "Other", "Chaoyang")
    order = await _ok(await _dispatch(client, office, await desk.record()), 201)
    url = f"/api/v1/outlets/{shop}/evaluations"

    by_desk = await _ok(
        await client.post(url, json={"score": 5, "order_id": order["id"], "comment": HOSTILE}, headers=office), 201
    )
    assert (by_desk["score"], by_desk["order_id"], by_desk["comment"], by_desk["evaluated_by"]) == (
        5,
        order["id"],
        HOSTILE,
        "backoffice1",
    )
    by_qa = await _ok(await client.post(url, json={"score": 2}, headers=users["qa"]), 201)
    assert by_qa["evaluated_by"] == "qa1"
    for bad in ({"score": 0}, {"score": 6}, {"score": "good"}, {"score": 3, "comment": "a\x00b"}):
        await _refused(await client.post(url, json=bad, headers=office), 400, "invalid_input")
    wrong = await client.post(
        f"/api/v1/outlets/{other}/evaluations", json={"score": 3, "order_id": order["id"]}, headers=office
    )
    error = await _refused(wrong, 400, "invalid_input")
    assert "order_id" in error["details"]["fields"]

    listed = await _ok(await client.get(url, headers=users["supervisor"]))
    assert [item["id"] for item in listed["items"]] == [by_qa["id"], by_desk["id"]]
    assert listed["average_score"] == 3.5
    empty = await _ok(await client.get(f"/api/v1/outlets/{other}/evaluations", headers=users["qa"]))
    assert (empty["items"], empty["average_score"]) == ([], None)
    for role in ("agent", "admin"):
        refused = await _refused(await client.post(url, json={"score": 4}, headers=users[role]), 403, "forbidden")
        assert refused["details"]["missing_one_of"] == ["desk.work", "quality.evaluate"]
        await _refused(await client.get(url, headers=users[role]), 403, "forbidden")


# who may do what


async def test_each_role_reaches_what_its_permissions_allow(
    client: Client, users: dict[str, Headers], desk: Desk
) -> None:
    office = users["backoffice"]
    shop = await _outlet(client, office, "Shop", "Haidian")
    order = await _ok(await _dispatch(client, office, await desk.record()), 201)
    done = await _ok(
        await client.post(
            f"/api/v1/work-orders/{order['id']}/feedback",
            json={"completed_at": "2030-01-03T10:00:00Z", "fee": "5"},
            headers=office,
        ),
        201,
    )
    settlement = done["settlement"]["id"]
    record_id = await desk.record()
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("get", "/api/v1/outlets", None),
        ("post", "/api/v1/outlets", {"name": "New", "region": "Haidian", "categories": ["tv"]}),
        ("get", f"/api/v1/outlets/{shop}", None),
        ("patch", f"/api/v1/outlets/{shop}", {"notes": "n"}),
        ("get", "/api/v1/work-orders", None),
        ("post", "/api/v1/work-orders", {"service_record_id": record_id}),
        ("get", f"/api/v1/work-orders/{order['id']}", None),
        ("post", f"/api/v1/work-orders/{order['id']}/cancel", {"reason": "r"}),
        ("post", f"/api/v1/work-orders/{order['id']}/feedback", {"completed_at": "2030-01-03T10:00:00Z"}),
        ("get", "/api/v1/fee-settlements", None),
        ("get", f"/api/v1/fee-settlements/{settlement}", None),
        ("post", f"/api/v1/fee-settlements/{settlement}/review", {"decision": "approve"}),
        ("post", f"/api/v1/outlets/{shop}/retire", {}),
    ]
    reads = {"/api/v1/outlets", f"/api/v1/outlets/{shop}", "/api/v1/work-orders", f"/api/v1/work-orders/{order['id']}"}
    for role in ("agent", "qa", "admin", "supervisor"):
        for method, url, body in calls:
            response = await client.request(method, url, json=body, headers=users[role])
            # Supervisors work the desk (they read orders and outlets); they do not manage outlets or fees.
            allowed = role == "supervisor" and method == "get" and url in reads
            assert (response.status == 200) if allowed else (response.status == 403), (role, method, url)
    await _refused(await client.get("/api/v1/work-orders"), 401, "unauthenticated")
    assert await desk.status(record_id) == "new"
    # The back office reaches all of it; the 409s are the orders' rules, not access (the order is done already,
    # and the dispatch just made leaves the outlet an open order to finish before it retires).
    statuses = []
    for method, url, body in calls:
        response = await client.request(method, url, json=body, headers=office)
        statuses.append(response.status)
    assert statuses == [200, 201, 200, 200, 200, 201, 200, 409, 409, 200, 200, 200, 409]
