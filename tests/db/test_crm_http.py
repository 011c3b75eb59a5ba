"""The CRM's HTTP API against SQLite and PostgreSQL: who may do what, payloads validated field by field, hostile
text returned as it was sent, and the service-record lifecycle over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.services import AuthService
from callcenter.db import Database
from callcenter.keys import AUTH
from callcenter.web.errors import error_middleware
from callcenter_devtools.seed import SeedOptions, seed
from crm_bridge.desk import DeskRules
from crm_bridge.http import crm_routes
from crm_bridge.keys import CRM, CRM_OUTBOX, RECORD_QUEUE
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.record_queue import RecordQueue
from crm_bridge.services import CrmService

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>\"'; DROP TABLE customers; --\r\n" + "客" * 900

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def crm(database: Database, service: AuthService) -> CrmService:
    return CrmService(database, audit=service)


@pytest.fixture
async def client(service: AuthService, crm: CrmService, database: Database, tmp_path: Path) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[CRM] = crm
    app[CRM_OUTBOX] = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    app[RECORD_QUEUE] = RecordQueue(database, DeskRules(ZoneInfo("UTC")))
    app.add_routes(crm_routes)
    check_routes_declared(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def tokens(service: AuthService) -> dict[str, dict[str, str]]:
    """Bearer headers per role (and the user ids under "id")."""
    found: dict[str, dict[str, str]] = {}
    for role in ("agent", "supervisor", "qa", "admin"):
        user = await service.create_user(role + "1", PASSWORD, roles=[role])
        token, _ = await service.login(role + "1", PASSWORD)
        found[role] = {"Authorization": f"Bearer {token}", "id": str(user.id)}
    return found


def auth(tokens: dict[str, dict[str, str]], role: str) -> dict[str, str]:
    return {"Authorization": tokens[role]["Authorization"]}


async def create(client: Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/customers", json=body, headers=headers)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def test_an_agent_opens_a_file_for_an_unknown_caller_and_finds_it_by_number(
    client: Client, tokens: dict[str, dict[str, str]]
) -> None:
    agent = auth(tokens, "agent")
    unknown = await client.get("/api/v1/customers", params={"number": "+86 138 0013 8000"}, headers=agent)
    assert unknown.status == 200
    assert await unknown.json() == {"items": [], "normalized": "8613800138000"}

    created = await create(
        client, agent, name=HOSTILE, phones=[{"number": "013800138000"}], contacts=[{"name": HOSTILE}], notes=HOSTILE
    )
    assert created["customer"]["name"] == HOSTILE
    found = await client.get("/api/v1/customers", params={"number": "8613800138000"}, headers=agent)
    body = await found.json()
    assert [item["customer"]["id"] for item in body["items"]] == [created["customer"]["id"]]
    assert body["items"][0]["customer"]["name"] == HOSTILE
    assert body["items"][0]["contacts"][0]["name"] == HOSTILE
    assert found.content_type == "application/json"

    by_name = await client.get("/api/v1/customers", params={"name": "<SCRIPT>"}, headers=agent)
    assert [item["customer"]["id"] for item in (await by_name.json())["items"]] == [created["customer"]["id"]]
    one = await client.get(f"/api/v1/customers/{created['customer']['id']}", headers=agent)
    assert (await one.json())["customer"]["notes"] == HOSTILE


async def test_junk_caller_ids_find_nobody(client: Client, tokens: dict[str, dict[str, str]]) -> None:
    agent = auth(tokens, "agent")
    await create(client, agent, name="Someone", phones=[{"number": "13800138000"}])
    for junk in ("1' OR '1'='1", "<b>13800138000</b>", "13800138000\r\nX-Evil: 1", "9" * 150):
        response = await client.get("/api/v1/customers", params={"number": junk}, headers=agent)
        assert response.status == 200
        assert await response.json() == {"items": [], "normalized": None}


async def test_editing_needs_the_maintenance_permission_and_is_audited(
    client: Client, tokens: dict[str, dict[str, str]], service: AuthService
) -> None:
    created = await create(client, auth(tokens, "agent"), name="Bob", phones=[{"number": "13800138000"}])
    url = f"/api/v1/customers/{created['customer']['id']}"
    refused = await client.patch(url, json={"tier": "vip"}, headers=auth(tokens, "agent"))
    assert refused.status == 403
    assert (await refused.json())["error"]["details"]["missing"] == ["customers.maintain"]
    assert (await client.patch(url, json={"tier": "vip"}, headers=auth(tokens, "qa"))).status == 403

    edited = await client.patch(url, json={"tier": "vip", "name": HOSTILE}, headers=auth(tokens, "supervisor"))
    assert edited.status == 200
    assert (await edited.json())["customer"]["tier"] == "vip"
    items, _ = await service.list_audit(action="customer_updated")
    assert [(item.actor, item.target) for item in items] == [("supervisor1", f"customer:{created['customer']['id']}")]
    assert items[0].details["changes"]["name"]["to"] == HOSTILE
    assert (await client.patch(url, json={"notes": "ok"}, headers=auth(tokens, "admin"))).status == 200
    assert (await client.patch("/api/v1/customers/99999", json={}, headers=auth(tokens, "admin"))).status == 404


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("post", "/api/v1/customers", {"name": "x", "phones": [{"number": "call me"}]}, "phones.0.number"),
        ("post", "/api/v1/customers", {"name": ""}, "name"),
        ("post", "/api/v1/customers", {"name": "x", "tier": "diamond"}, "tier"),
        ("post", "/api/v1/customers", {"name": "x", "evil": True}, "evil"),
        ("get", "/api/v1/customers", None, "number"),
        ("get", "/api/v1/customers?name=x&limit=1000", None, "limit"),
        ("get", "/api/v1/kb", None, "q"),
        ("get", "/api/v1/kb?q=%20%20", None, "q"),
        ("post", "/api/v1/service-records", {"type": "gossip"}, "type"),
        (
            "post",
            "/api/v1/service-records",
            {"type": "complaint", "appointment_at": "2030-01-01T09:00"},
            "appointment_at",
        ),
        ("get", "/api/v1/service-records?status=lost", None, "status"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    client: Client, tokens: dict[str, dict[str, str]], method: str, url: str, body: Any, field: str
) -> None:
    response = await client.request(method, url, json=body, headers=auth(tokens, "supervisor"))
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert field in error["details"]["fields"]


async def test_ids_that_name_nothing_are_404(client: Client, tokens: dict[str, dict[str, str]]) -> None:
    agent = auth(tokens, "agent")
    for url in (
        "/api/v1/customers/424242",
        "/api/v1/customers/999999999999",
        "/api/v1/service-records/424242",
        "/api/v1/service-records/0",
    ):
        response = await client.get(url, headers=agent)
        assert response.status == 404, url
    assert (await client.get("/api/v1/customers/abc", headers=agent)).status == 404


async def test_nothing_without_logging_in(client: Client) -> None:
    for url in ("/api/v1/customers?number=1", "/api/v1/kb?q=x", "/api/v1/products/1001", "/api/v1/service-records"):
        assert (await client.get(url)).status == 401
    assert (await client.post("/api/v1/service-records", json={"type": "complaint"})).status == 401


async def test_products_and_the_knowledge_base(
    client: Client, tokens: dict[str, dict[str, str]], crm: CrmService, database: Database
) -> None:
    await seed(database, SeedOptions(customers=0, products=3))
    agent = auth(tokens, "agent")
    found = await client.get("/api/v1/products/1001", headers=agent)
    assert await found.json() == {
        "code": "1001",
        "name": "Aurora washing machine",
        "category": "Washing machines",
        "price": "2999.00",
        "availability": "in_stock",
        "description": "Eight kilograms, quiet drum.",
        "spoken": {"en": "Eight kilograms, quiet drum.", "zh": "八公斤静音滚筒。"},
    }
    for code in ("9999", "1001' OR '1'='1", "1" * 200, "%25"):
        missing = await client.get(f"/api/v1/products/{code}", headers=agent)
        assert missing.status == 404
        assert (await missing.json())["error"]["id"] == "product_not_found"
    articles = await client.get("/api/v1/kb", params={"q": "e21 drain"}, headers=agent)
    body = await articles.json()
    assert body["items"]
    assert all("e21" in (item["title"] + item["body"]).lower() for item in body["items"])
    assert isinstance(body["items"][0]["tags"], list)
    assert (await client.get("/api/v1/kb", params={"q": "e21"}, headers=auth(tokens, "qa"))).status == 403


async def test_a_service_record_goes_through_its_lifecycle_over_http(
    client: Client, tokens: dict[str, dict[str, str]]
) -> None:
    agent = auth(tokens, "agent")
    owner = await create(client, agent, name="Carol", phones=[{"number": "13900139000"}])
    body = {
        "type": "repair_booking",
        "content": HOSTILE,
        "customer_id": owner["customer"]["id"],
        "linkedid": "1700000000.42",
        "appointment_at": "2030-01-02T09:00:00+08:00",
        "caller_number": "13900139000\r\n",
        "idempotency_key": "1700000000.42/disposition",
    }
    made = await client.post("/api/v1/service-records", json=body, headers=agent)
    assert made.status == 201, await made.text()
    record = await made.json()
    assert (record["status"], record["created"], record["content"]) == ("new", True, HOSTILE)
    assert record["appointment_at"] == "2030-01-02T01:00:00+00:00"
    assert record["created_by"] == "agent1"
    replay = await client.post("/api/v1/service-records", json=body, headers=agent)
    assert replay.status == 200
    assert ((await replay.json())["id"], (await replay.json())["created"]) == (record["id"], False)

    url = f"/api/v1/service-records/{record['id']}/transition"
    skipped = await client.post(url, json={"action": "resolve"}, headers=agent)
    assert skipped.status == 409
    assert (await skipped.json())["error"]["details"] == {
        "action": "resolve",
        "status": "new",
        "allowed_from": ["in_progress"],
    }
    steps = [
        ({"action": "assign", "assigned_to": int(tokens["agent"]["id"])}, "supervisor", "assigned"),
        ({"action": "start"}, "agent", "in_progress"),
        ({"action": "resolve", "outcome": "pump replaced"}, "agent", "resolved"),
        ({"action": "feedback", "feedback": "happy"}, "agent", "feedback_recorded"),
        ({"action": "archive"}, "supervisor", "archived"),
    ]
    for step, role, status in steps:
        moved = await client.post(url, json=step, headers=auth(tokens, role))
        assert moved.status == 200, await moved.text()
        assert (await moved.json())["status"] == status
    assert (await client.post(url, json={"action": "start"}, headers=auth(tokens, "qa"))).status == 403

    detail = await (await client.get(f"/api/v1/service-records/{record['id']}", headers=agent)).json()
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("create", "agent1"),
        ("assign", "supervisor1"),
        ("start", "agent1"),
        ("resolve", "agent1"),
        ("feedback", "agent1"),
        ("archive", "supervisor1"),
    ]
    listed = await client.get(
        "/api/v1/service-records",
        params={"customer_id": owner["customer"]["id"], "status": "archived"},
        headers=agent,
    )
    assert [item["id"] for item in (await listed.json())["items"]] == [record["id"]]
    pop = await client.get("/api/v1/customers", params={"number": "+86 139 0013 9000"}, headers=agent)
    (item,) = (await pop.json())["items"]
    assert [r["id"] for r in item["recent_records"]] == [record["id"]]
    assert item["open_records"] == []
