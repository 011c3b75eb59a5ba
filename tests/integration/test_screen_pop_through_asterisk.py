"""The screen-pop through the real Asterisk: a queued caller's file reaches the ringing agent's page before the
answer; a caller who gives up in the queue leaves a callback task."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import aiohttp

from callcenter import dialplan
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.events import CallAnswered
from callcenter.keys import LIVE
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded
from crm_bridge.keys import CRM
from crm_bridge.schemas import CustomerIn, PhoneIn
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, add_user, running_engine, wait_for
from tests.integration.test_seats_and_handoff import PASSWORD, queue_route

HOSTILE = "<img src=x onerror=alert(1)>"


async def _frames(socket: aiohttp.ClientWebSocketResponse, into: list[tuple[float, dict[str, Any]]]) -> None:
    async for message in socket:
        if message.type is aiohttp.WSMsgType.TEXT:
            into.append((time.monotonic(), json.loads(message.data)))


async def test_the_ringing_agents_page_gets_the_callers_file_before_the_answer(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    answered_at: list[float] = []
    bus.subscribe(CallAnswered, lambda _event: answered_at.append(time.monotonic()))
    general = config.queues.general
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        number = f"1390000{secrets.randbelow(10000):04d}"
        await app[CRM].customers.create(
            CustomerIn(name=HOSTILE, company="Ocean Freight", tier="vip", phones=[PhoneIn(number=number)]),
            actor="test",
        )
        username = f"agent-pop-{secrets.token_hex(3)}"
        await add_user(app, username, PASSWORD, roles=[Role.AGENT], extension="1001")
        base = f"http://127.0.0.1:{TEST_PORTS['web']}"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as r:
                token = (await r.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(
                base + "/api/v1/agents/me/login", json={"queues": [{"queue": general}]}, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
            frames: list[tuple[float, dict[str, Any]]] = []
            socket = await http.ws_connect(base + "/api/v1/ws", headers=headers)
            reader = asyncio.get_running_loop().create_task(_frames(socket, frames))
            try:
                # The phone rings for 2 s before it answers: the file must be there first.
                phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"], ring_ms=2000)
                caller = phones.call(
                    "caller",
                    config.sip.dids[0],
                    CallerScript(caller_number=number, caller_name="Known Caller", talk_ms=4000),
                    local_ip=PSTN,
                    local_port=5281,
                )
                assert await wait_for(lambda: any(f["type"] == "screen_pop" for _, f in frames), timeout=30)
                assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
                assert await asyncio.to_thread(phone.wait, 15) == 0
            finally:
                await socket.close()
                reader.cancel()
            async with http.post(base + "/api/v1/agents/me/logout", headers=headers):
                pass
    (popped_at, pop), *_ = [(at, frame) for at, frame in frames if frame["type"] == "screen_pop"]
    assert answered_at, "the call was never answered"
    assert popped_at < answered_at[0]
    assert pop["agent"] == "PJSIP/1001"
    assert pop["caller"]["number"] == number
    assert pop["unknown_caller"] is False
    (customer,) = pop["customers"]
    # Hostile text arrives verbatim, as data: the page renders it as text.
    assert customer["customer"]["name"] == HOSTILE
    assert customer["customer"]["tier"] == "vip"
    assert pop["waited"] is not None
    assert pop["waited"] >= 0


async def test_a_caller_who_gives_up_in_the_queue_leaves_a_callback_task(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    general = config.queues.general
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550999", caller_name=HOSTILE, talk_ms=3000),
            local_ip=PSTN,
            local_port=5282,
        )
        # Nobody staffs the queue: the caller gives up after 5 s.
        assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
        assert await wait_for(lambda: bool(recorded), timeout=10)
        linkedid = recorded[0].linkedid
        crm = app[CRM]
        record = None
        for _ in range(50):
            record = await crm.records.by_key(f"abandoned:{linkedid}")
            if record is not None:
                break
            await asyncio.sleep(0.1)
    assert record is not None
    assert record.type == "callback_visit"
    assert record.status == "new"
    assert record.caller_number == "5550999"
    assert record.caller_name == HOSTILE
    assert record.linkedid == linkedid
