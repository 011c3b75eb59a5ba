"""The flows API: the flows with their validation state, reloads that never install broken files, diagrams."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callcenter import dialplan
from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.permissions import Role, permissions_for
from callcenter.auth.services import Principal
from callcenter.bus import Bus
from callcenter.keys import AUTH
from callcenter.web.errors import error_middleware
from ivr_flows import plugin
from ivr_flows.events import FlowsReloaded
from ivr_flows.http import flow_routes
from ivr_flows.keys import FLOWS
from ivr_flows.ports import FakeClock, in_memory_ports
from ivr_flows.prompts import DryPrompts
from ivr_flows.route import SHIPPED_FLOWS, FlowRoute
from ivr_flows.services import FlowsService
from ivr_flows.simulator import ScriptedSession
from ivr_flows.validator import UNKNOWN_NODE

QUEUES = {"general": "support", "expert": "expert"}
# A Monday morning in the flows' zone: the main menu is open.
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
ADMIN, AGENT = "admin-token", "agent-token"

Client = TestClient[web.Request, web.Application]


def _principal(user_id: int, name: str, role: Role) -> Principal:
    return Principal(
        user_id=user_id,
        username=name,
        display_name=name.title(),
        roles=frozenset({role}),
        permissions=permissions_for([role]),
        teams=(),
        extension=None,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


class TokenAuth:
    """Stands in for AuthService.authenticate: the middleware and the permissions are the real ones."""

    def __init__(self) -> None:
        self.sessions = {ADMIN: _principal(1, "admin", Role.ADMIN), AGENT: _principal(2, "agent", Role.AGENT)}

    async def authenticate(self, token: str) -> Principal | None:
        return self.sessions.get(token)


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    target = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, target)
    return target


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def service(flows_dir: Path, bus: Bus) -> FlowsService:
    route = FlowRoute.from_directory(
        flows_dir, ports=in_memory_ports(), bus=bus, prompts=DryPrompts(), queues=QUEUES, clock=FakeClock(OPEN)
    )
    return FlowsService(route, bus=bus, prepare_prompts=False)


@pytest.fixture
async def client(service: FlowsService) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = TokenAuth()  # type: ignore[assignment]
    install(app, service)
    check_routes_declared(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def install(app: web.Application, service: FlowsService) -> None:
    """What FlowsPlugin.install and its start and stop do, for a service made of in-memory ports."""
    app[FLOWS] = service
    app.add_routes(flow_routes)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.close()

    app.cleanup_ctx.append(lifecycle)


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def break_main(flows_dir: Path) -> Path:
    main = flows_dir / "main.yaml"
    main.write_text(main.read_text(encoding="utf-8").replace("on_fail: agent_fallback", "on_fail: nowhere", 1))
    return main


async def test_the_list_shows_every_running_flow_as_valid(client: Client, flows_dir: Path) -> None:
    response = await client.get("/api/v1/flows", headers=auth())
    assert response.status == 200
    body = await response.json()
    assert body["entry"] == "main"
    assert body["valid"] is True
    assert body["directory"] == str(flows_dir)
    items = {item["name"]: item for item in body["items"]}
    assert set(items) == {"main", "after_hours", "holiday"}
    main = items["main"]
    assert (main["running"], main["valid"], main["issues"]) == (True, True, [])
    assert main["file"] == str(flows_dir / "main.yaml")
    assert (main["language"], main["languages"], main["timezone"], main["start"]) == (
        "en",
        ["en", "zh"],
        "Asia/Shanghai",
        "entry",
    )
    assert body["last_reload"] is None


async def test_flows_are_for_admins_only(client: Client) -> None:
    assert (await client.get("/api/v1/flows")).status == 401
    refused = await client.get("/api/v1/flows", headers=auth(AGENT))
    assert refused.status == 403
    assert (await refused.json())["error"]["details"]["missing"] == ["flows.manage"]
    assert (await client.post("/api/v1/flows/reload", headers=auth(AGENT))).status == 403
    assert (await client.get("/api/v1/flows/main/graph", headers=auth(AGENT))).status == 403


async def test_a_good_reload_installs_the_new_flows(
    client: Client, service: FlowsService, flows_dir: Path, bus: Bus
) -> None:
    reloads: list[FlowsReloaded] = []
    bus.subscribe(FlowsReloaded, reloads.append)
    main = flows_dir / "main.yaml"
    main.write_text(main.read_text(encoding="utf-8").replace("reason: fault_consultation", "reason: fault_line"))
    before = service.route.flows
    response = await client.post("/api/v1/flows/reload", headers=auth())
    assert response.status == 200
    body = await response.json()
    assert (body["ok"], body["trigger"], body["issues"]) == (True, "api", [])
    assert body["flows"] == ["after_hours", "holiday", "main"]
    assert service.route.flows is not before
    session = ScriptedSession(["2"])
    await service.route.run(session)  # type: ignore[arg-type]
    assert session.variables_set[dialplan.VAR_IVR_CHOICE] == "fault_line"
    assert [(event.ok, event.trigger) for event in reloads] == [(True, "api")]
    listed = await (await client.get("/api/v1/flows", headers=auth())).json()
    assert listed["last_reload"]["ok"] is True


async def test_a_broken_reload_answers_422_with_the_issues_and_the_running_flows_stay(
    client: Client, service: FlowsService, flows_dir: Path
) -> None:
    before = service.route.flows
    main = break_main(flows_dir)
    response = await client.post("/api/v1/flows/reload", headers=auth())
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["id"] == "flows_invalid"
    (issue,) = error["details"]["issues"]
    assert (issue["file"], issue["kind"]) == (str(main), UNKNOWN_NODE)
    assert issue["line"] == next(
        number for number, line in enumerate(main.read_text().splitlines(), 1) if "on_fail: nowhere" in line
    )
    assert "nowhere" in issue["message"]
    assert service.route.flows is before
    # Calls still get the flows that were running.
    session = ScriptedSession(["2"])
    await service.route.run(session)  # type: ignore[arg-type]
    assert session.variables_set[dialplan.VAR_IVR_CHOICE] == "fault_consultation"


async def test_the_list_tells_a_running_flow_from_its_broken_file(client: Client, flows_dir: Path) -> None:
    main = break_main(flows_dir)
    (flows_dir / "extra.yaml").write_text("name: extra\nnodes: [not, a, mapping]\n", encoding="utf-8")
    body = await (await client.get("/api/v1/flows", headers=auth())).json()
    assert body["valid"] is False
    items = {item["file"]: item for item in body["items"]}
    assert items[str(main)]["running"] is True
    assert items[str(main)]["valid"] is False
    assert [issue["kind"] for issue in items[str(main)]["issues"]] == [UNKNOWN_NODE]
    extra = items[str(flows_dir / "extra.yaml")]
    assert (extra["name"], extra["running"], extra["valid"]) == ("extra", False, False)
    assert extra["issues"]
    assert items[str(flows_dir / "holiday.yaml")]["valid"] is True


async def test_a_running_flow_whose_file_was_removed_is_listed(client: Client, flows_dir: Path) -> None:
    (flows_dir / "holiday.yaml").unlink()
    body = await (await client.get("/api/v1/flows", headers=auth())).json()
    holiday = next(item for item in body["items"] if item["name"] == "holiday")
    assert (holiday["running"], holiday["valid"]) == (True, False)
    # main names flow:holiday, which a reload could no longer find.
    assert body["valid"] is False


async def test_the_graph_is_mermaid_text_of_the_running_flow(client: Client) -> None:
    response = await client.get("/api/v1/flows/main/graph", headers=auth())
    assert response.status == 200
    assert response.content_type == "text/vnd.mermaid"
    text = await response.text()
    assert text.splitlines()[1] == "flowchart TD"
    assert "main_menu" in text
    for name in ("nosuch", "Main", "x" * 60, "..%2f..%2fetc"):
        missing = await client.get(f"/api/v1/flows/{name}/graph", headers=auth())
        assert missing.status == 404, name
        assert (await missing.json())["error"]["id"] == "not_found"


async def test_a_reload_requested_by_a_signal_runs_and_logs(
    service: FlowsService, flows_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application()
    install(app, service)
    break_main(flows_dir)
    before = service.route.flows
    with caplog.at_level("WARNING", logger="ivr_flows.services"):
        plugin.request_reload(app)
        (task,) = list(service._tasks)
        result = await task
    assert result.ok is False
    assert result.trigger == "sighup"
    assert service.route.flows is before
    assert "not reloaded (sighup)" in caplog.text
    assert "nowhere" in caplog.text


async def test_prompts_are_made_at_start_and_after_a_reload(flows_dir: Path, bus: Bus) -> None:
    made: list[tuple[str, str]] = []

    class CountingRoute(FlowRoute):
        async def prepare(self) -> Any:
            made.append(("prepare", ",".join(sorted(self.flows.flows))))
            return None

    route = CountingRoute.from_directory(
        flows_dir, ports=in_memory_ports(), bus=bus, prompts=DryPrompts(), queues=QUEUES
    )
    service = FlowsService(route, bus=bus, prepare_prompts=True)
    await service.start()
    await service.wait_ready()
    assert made == [("prepare", "after_hours,holiday,main")]
    (flows_dir / "holiday.yaml").write_text(
        (flows_dir / "holiday.yaml")
        .read_text(encoding="utf-8")
        .replace("Thank you for calling.", "Thanks for calling."),
        encoding="utf-8",
    )
    result = await service.reload()
    assert result.ok
    assert made[1] == ("prepare", "after_hours,holiday,main")
    await service.close()
