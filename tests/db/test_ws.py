"""The websocket hub: who receives what, coalesced board frames, slow pages dropped, cross-site opens refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import auth_middleware
from callcenter.auth.permissions import Permission, Role
from callcenter.auth.services import AuthService
from callcenter.keys import AUTH, HUB
from callcenter.web.errors import error_middleware
from callcenter.web.ws import Hub, ws_routes

PASSWORD = "ws-test-password-1"


@pytest.fixture
async def hub_client(service: AuthService) -> AsyncIterator[tuple[Hub, TestClient[web.Request, web.Application]]]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[HUB] = hub = Hub(queue_frames=8)
    app.add_routes(auth_routes)
    app.add_routes(ws_routes)
    await service.create_user("agent1", PASSWORD, roles=[Role.AGENT], extension="1001")
    await service.create_user("agent2", PASSWORD, roles=[Role.AGENT], extension="1002")
    await service.create_user("boss", PASSWORD, roles=[Role.SUPERVISOR], extension="3001")
    async with TestClient(TestServer(app)) as client:
        yield hub, client
    await hub.close()


async def _token(service: AuthService, username: str) -> str:
    token, _ = await service.login(username, PASSWORD)
    return token


async def _next(socket: Any, timeout: float = 2.0) -> dict[str, Any]:
    message = await socket.receive(timeout=timeout)
    assert message.type is WSMsgType.TEXT, message
    data: dict[str, Any] = json.loads(message.data)
    return data


async def _wait_connections(hub: Hub, count: int) -> None:
    for _ in range(100):
        if hub.connections == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{hub.connections} connections, expected {count}")


async def test_events_reach_only_their_recipients(
    hub_client: tuple[Hub, TestClient[web.Request, web.Application]], service: AuthService
) -> None:
    hub, client = hub_client
    one = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {await _token(service, 'agent1')}"})
    two = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {await _token(service, 'agent2')}"})
    boss = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {await _token(service, 'boss')}"})
    for socket in (one, two, boss):
        assert (await _next(socket))["type"] == "hello"
    await _wait_connections(hub, 3)
    name = '<img src=x onerror=alert(1)>\r\n"; DROP TABLE customers;--'
    assert hub.send("screen_pop", {"caller_name": name}, extension="1001") == 1
    assert hub.send("board", {"seats": 3}, permission=Permission.SEATS_READ) == 1
    got = await _next(one)
    assert got["type"] == "screen_pop"
    assert got["caller_name"] == name
    assert "at" in got
    assert (await _next(boss))["type"] == "board"
    with pytest.raises(asyncio.TimeoutError):
        await two.receive(timeout=0.3)
    for socket in (one, two, boss):
        await socket.close()


async def test_coalesced_frames_are_sent_at_most_once_per_interval_newest_last(
    hub_client: tuple[Hub, TestClient[web.Request, web.Application]], service: AuthService
) -> None:
    hub, client = hub_client
    boss = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {await _token(service, 'boss')}"})
    await _next(boss)
    await _wait_connections(hub, 1)
    for version in range(20):
        hub.send("board", {"version": version}, permission=Permission.SEATS_READ, coalesce=0.5)
        await asyncio.sleep(0.01)
    first = await _next(boss)
    assert first["version"] == 0
    second = await _next(boss, timeout=2.0)
    # Everything between was replaced by the newest before the interval was up.
    assert second["version"] == 19
    with pytest.raises(asyncio.TimeoutError):
        await boss.receive(timeout=0.7)
    await boss.close()


async def test_a_page_that_falls_behind_is_closed_and_the_others_keep_receiving(
    hub_client: tuple[Hub, TestClient[web.Request, web.Application]], service: AuthService
) -> None:
    hub, client = hub_client
    slow = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {await _token(service, 'agent1')}"})
    await _wait_connections(hub, 1)
    # Nothing is read from this socket while far more frames than its queue holds are sent at once.
    for index in range(50):
        hub.send("tick", {"n": index}, extension="1001")
    assert hub.closed_slow == 1
    assert hub.connections == 0
    closed = False
    for _ in range(60):
        message = await slow.receive(timeout=2.0)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            closed = True
            break
    assert closed
    assert slow.close_code == 1013


async def test_opening_with_the_cookie_from_another_site_is_refused(
    hub_client: tuple[Hub, TestClient[web.Request, web.Application]], service: AuthService
) -> None:
    hub, client = hub_client
    token = await _token(service, "agent1")
    refused = await client.get(
        "/api/v1/ws",
        headers={"Origin": "http://evil.example", "Upgrade": "websocket", "Connection": "Upgrade"},
        cookies={"cc_session": token},
    )
    assert refused.status == 403
    anonymous = await client.get("/api/v1/ws")
    assert anonymous.status == 401
    assert hub.connections == 0
