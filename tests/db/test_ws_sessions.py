"""A websocket lives no longer than its session: logout, expiry, a disabled user and a withdrawn permission each
close it with a code and reason the page acts on, and no frame reaches it after. Real aiohttp server, real client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import delete, update

from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import auth_middleware
from callcenter.auth.models import User, UserRole
from callcenter.auth.permissions import Permission, Role
from callcenter.auth.services import AuthService
from callcenter.db import Database
from callcenter.keys import AUTH, HUB
from callcenter.web.errors import error_middleware
from callcenter.web.ws import CLOSE_PERMISSION_WITHDRAWN, CLOSE_SESSION_ENDED, Hub, ws_routes

PASSWORD = "ws-session-password-1"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def hub(request: pytest.FixtureRequest) -> Hub:
    # No periodic check unless a test asks for one: the others show that the notices alone close the sockets.
    return Hub(queue_frames=64, revalidate_seconds=getattr(request, "param", 0))


@pytest.fixture
async def setup(service: AuthService, hub: Hub) -> AsyncIterator[tuple[Hub, Client]]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[HUB] = hub
    app.add_routes(auth_routes)
    app.add_routes(ws_routes)
    await service.create_user("agent1", PASSWORD, roles=[Role.AGENT], extension="1001")
    await service.create_user("boss", PASSWORD, roles=[Role.SUPERVISOR], extension="3001")
    await service.create_user("admin", PASSWORD, roles=[Role.ADMIN])
    async with TestClient(TestServer(app)) as client:
        yield hub, client
    await hub.close()


async def _open(client: Client, token: str) -> Any:
    socket = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {token}"})
    hello = await socket.receive(timeout=2)
    assert json.loads(hello.data)["type"] == "hello"
    return socket


async def _settled(hub: Hub, count: int) -> None:
    # The hub's second look at the session runs right after the hello; wait until every socket has joined.
    for _ in range(100):
        if hub.connections == count:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{hub.connections} connections, expected {count}")


async def _frames_until_close(socket: Any, timeout: float = 5.0) -> tuple[list[str], int | None, str]:
    """The frame types received until the close, the close code and its reason."""
    types: list[str] = []
    while True:
        message = await socket.receive(timeout=timeout)
        if message.type is WSMsgType.TEXT:
            types.append(json.loads(message.data)["type"])
            continue
        if message.type is WSMsgType.CLOSE:
            return types, message.data, message.extra or ""
        return types, socket.close_code, ""


async def _login(service: AuthService, username: str) -> str:
    token, _ = await service.login(username, PASSWORD)
    return token


async def test_logout_closes_the_sockets_of_that_token_only(setup: tuple[Hub, Client], service: AuthService) -> None:
    hub, client = setup
    first = await _login(service, "agent1")
    second = await _login(service, "agent1")  # the same agent in another browser
    on_first = await _open(client, first)
    on_second = await _open(client, second)
    await _settled(hub, 2)

    response = await client.post("/api/v1/logout", headers={"Authorization": f"Bearer {first}"})
    assert response.status == 200
    # Sent after the logout: the logged-out socket must not get it.
    assert hub.send("screen_pop", {"caller": "+8613800138000"}, extension="1001") == 1

    types, code, reason = await _frames_until_close(on_first)
    assert (types, code, reason) == ([], CLOSE_SESSION_ENDED, "logged out")
    still = await on_second.receive(timeout=2)
    assert json.loads(still.data)["type"] == "screen_pop"
    assert hub.connections == 1
    assert hub.closed_sessions == {"logged out": 1}
    await on_second.close()


async def test_a_socket_closes_when_its_session_expires(
    setup: tuple[Hub, Client], service: AuthService, clock: Any
) -> None:
    hub, client = setup
    token = await _login(service, "boss")
    clock.advance(3600 - 0.5)  # the fixture's sessions last an hour: half a second left
    socket = await _open(client, token)
    await _settled(hub, 1)
    types, code, reason = await _frames_until_close(socket)
    assert (code, reason) == (CLOSE_SESSION_ENDED, "session expired")
    assert "board" not in types
    assert hub.connections == 0
    assert hub.send("board", {"seats": 1}, permission=Permission.SEATS_READ) == 0


async def test_disabling_a_user_closes_every_socket_of_theirs(setup: tuple[Hub, Client], service: AuthService) -> None:
    hub, client = setup
    agent_token = await _login(service, "agent1")
    agent = await _open(client, agent_token)
    boss = await _open(client, await _login(service, "boss"))
    await _settled(hub, 2)
    admin = await _login(service, "admin")

    response = await client.patch(
        "/api/v1/users/agent1", json={"is_active": False}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert response.status == 200
    assert (await response.json())["is_active"] is False
    assert hub.send("screen_pop", {"caller": "1"}, extension="1001") == 0

    types, code, reason = await _frames_until_close(agent)
    assert (types, code, reason) == ([], CLOSE_SESSION_ENDED, "user disabled")
    assert hub.connections == 1  # the supervisor's page stays
    audit, _ = await service.list_audit(action="user_changed", target="agent1")
    assert [(item.actor, item.details["is_active"], item.details["sessions_revoked"]) for item in audit] == [
        ("admin", False, 1)
    ]
    # Enabled again, the user must log in again: the old session was revoked, not only refused.
    await service.update_user("agent1", is_active=True)
    assert await service.authenticate(agent_token) is None
    await boss.close()


async def test_a_supervisor_whose_role_is_removed_stops_getting_the_board(
    setup: tuple[Hub, Client], service: AuthService
) -> None:
    hub, client = setup
    boss = await _open(client, await _login(service, "boss"))
    await _settled(hub, 1)
    assert hub.send("board", {"version": 1}, permission=Permission.SEATS_READ) == 1
    assert json.loads((await boss.receive(timeout=2)).data)["type"] == "board"

    await service.update_user("boss", roles=[Role.AGENT], actor="admin")
    assert hub.send("board", {"version": 2}, permission=Permission.SEATS_READ) == 0

    types, code, reason = await _frames_until_close(boss)
    assert (types, code, reason) == ([], CLOSE_PERMISSION_WITHDRAWN, "permissions changed; reconnect")
    # The page reconnects with the same token and is now an agent's: no board.
    again = await _open(client, await _login(service, "boss"))
    await _settled(hub, 1)
    assert hub.send("board", {"version": 3}, permission=Permission.SEATS_READ) == 0
    assert hub.send("screen_pop", {"caller": "1"}, extension="3001") == 1
    await again.close()


async def test_a_role_gained_keeps_the_socket_and_widens_what_it_gets(
    setup: tuple[Hub, Client], service: AuthService
) -> None:
    hub, client = setup
    agent = await _open(client, await _login(service, "agent1"))
    await _settled(hub, 1)
    assert hub.send("board", {"version": 1}, permission=Permission.SEATS_READ) == 0
    await service.update_user("agent1", roles=[Role.AGENT, Role.SUPERVISOR])
    assert hub.send("board", {"version": 2}, permission=Permission.SEATS_READ) == 1
    assert json.loads((await agent.receive(timeout=2)).data)["version"] == 2
    await agent.close()


async def test_a_logout_just_before_the_socket_joins_the_hub_still_closes_it(
    setup: tuple[Hub, Client], service: AuthService
) -> None:
    hub, client = setup
    token = await _login(service, "agent1")
    original = service.authenticate
    calls = 0

    async def logout_after_the_upgrade_check(raw: str) -> Any:
        # The first check admits the upgrade; the logout then lands before the socket has joined the hub.
        nonlocal calls
        calls += 1
        found = await original(raw)
        if calls == 1:
            await service.logout(raw)
        return found

    service.authenticate = logout_after_the_upgrade_check  # type: ignore[method-assign]
    socket = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {token}"})
    _, code, reason = await _frames_until_close(socket)
    assert (code, reason) == (CLOSE_SESSION_ENDED, "logged out")
    assert hub.connections == 0


async def test_changing_an_unknown_user_is_404_and_needs_users_manage(
    setup: tuple[Hub, Client], service: AuthService
) -> None:
    _, client = setup
    admin = await _login(service, "admin")
    boss = await _login(service, "boss")
    missing = await client.patch(
        "/api/v1/users/nobody", json={"is_active": False}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert missing.status == 404
    assert (await missing.json())["error"]["id"] == "user_not_found"
    refused = await client.patch(
        "/api/v1/users/agent1", json={"is_active": False}, headers={"Authorization": f"Bearer {boss}"}
    )
    assert refused.status == 403
    bad = await client.patch(
        "/api/v1/users/agent1", json={"roles": ["king"]}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert bad.status == 400


@pytest.mark.parametrize("hub", [0.2], indirect=True, ids=["checked-every-0.2s"])
async def test_changes_made_by_another_process_are_found_by_the_periodic_check(
    setup: tuple[Hub, Client], service: AuthService, database: Database
) -> None:
    hub, client = setup
    agent = await _open(client, await _login(service, "agent1"))
    boss = await _open(client, await _login(service, "boss"))
    admin = await _open(client, await _login(service, "admin"))
    await _settled(hub, 3)
    # Written to the database directly, as another engine or the CLI would: no notice reaches this hub.
    async with database.session() as session:
        await session.execute(update(User).where(User.username == "agent1").values(is_active=False))
        await session.execute(delete(UserRole).where(UserRole.role == Role.SUPERVISOR.value))
    _, code, reason = await _frames_until_close(agent)
    assert (code, reason) == (CLOSE_SESSION_ENDED, "session ended")
    _, code, reason = await _frames_until_close(boss)
    assert (code, reason) == (CLOSE_PERMISSION_WITHDRAWN, "permissions changed; reconnect")
    assert hub.connections == 1  # nothing changed for the admin
    await admin.close()
