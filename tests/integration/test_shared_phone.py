"""A seat is the person logged in on it (issue 16), through the real Asterisk with SIPp phones.

Ann logs in on phone 1001 and is then given extension 1004 (she moves desks at the end of her shift); Eve is given
1001 while Ann still sits there. A call rings 1001: everything that names the agent of that phone (the screen-pop,
the seat's state, recording control, the handoff, listening in, the recording's owner) must mean Ann, never Eve.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiohttp

from callcenter import dialplan
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.events import CallAnswered
from callcenter.keys import AUTH, LIVE
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded
from recordings.keys import RECORDINGS
from recordings.schemas import SearchQuery
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, add_user, running_engine, wait_for
from tests.integration.test_seats_and_handoff import Api, queue_route

PASSWORD = "shared-phone-password-1"


async def _frames(socket: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for message in socket:
        if message.type is aiohttp.WSMsgType.TEXT:
            into.append(json.loads(message.data))


async def test_everything_that_names_the_agent_on_a_phone_means_the_person_logged_in_on_it(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    answered: list[CallAnswered] = []
    recorded: list[CallRecorded] = []
    bus.subscribe(CallAnswered, answered.append)
    bus.subscribe(CallRecorded, recorded.append)
    general = config.queues.general
    suffix = secrets.token_hex(3)
    ann, eve, boss, rita = (f"{name}-{suffix}" for name in ("ann", "eve", "boss", "rita"))
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        auth = app[AUTH]
        ann_info = await add_user(app, ann, PASSWORD, roles=[Role.AGENT], extension="1001", teams=["blue"])
        await add_user(app, boss, PASSWORD, roles=[Role.SUPERVISOR], extension="3001", lead_of=["blue"])
        await auth.create_user(rita, PASSWORD, roles=[Role.SUPERVISOR], lead_of=["red"])
        await auth.create_user(f"root-{suffix}", PASSWORD, roles=[Role.ADMIN])
        base = f"http://127.0.0.1:{TEST_PORTS['web']}"
        async with aiohttp.ClientSession() as http:

            async def api(username: str) -> tuple[Api, dict[str, str]]:
                async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as r:
                    assert r.status == 200, await r.text()
                    token = (await r.json())["token"]
                return Api(http, token), {"Authorization": f"Bearer {token}"}

            ann_api, ann_headers = await api(ann)
            status, seat = await ann_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]})
            assert status == 200, seat
            assert await wait_for(lambda: "PJSIP/1001" in live.model.queues[general].members, timeout=5)
            # Ann is given another extension while she sits at 1001; 1001, free again, goes to Eve.
            admin, _ = await api(f"root-{suffix}")
            assert (await admin.call("PATCH", f"/api/v1/users/{ann}", {"extension": "1004"}))[0] == 200
            status, body = await admin.call("POST", "/api/v1/users", {
                "username": eve, "password": PASSWORD, "roles": ["agent"], "extension": "1001", "teams": ["red"],
            })  # fmt: skip
            assert status == 201, body
            eve_api, eve_headers = await api(eve)
            status, body = await eve_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]})
            assert (status, body["error"]["id"]) == (409, "conflict"), body

            pages: dict[str, list[dict[str, Any]]] = {ann: [], eve: []}
            sockets = {
                ann: await http.ws_connect(base + "/api/v1/ws", headers=ann_headers),
                eve: await http.ws_connect(base + "/api/v1/ws", headers=eve_headers),
            }
            readers = [asyncio.get_running_loop().create_task(_frames(sockets[who], pages[who])) for who in sockets]
            try:
                phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
                caller = phones.call(
                    "caller",
                    config.sip.dids[0],
                    CallerScript(caller_number="5550777", caller_name="Shared Phone", talk_ms=9000),
                    local_ip=PSTN,
                    local_port=5287,
                )
                assert await wait_for(lambda: bool(answered), timeout=30), caller.output()[-1500:]
                linkedid = answered[0].linkedid
                # Eve has the phone's extension but is not on the call: she controls nothing of it.
                recording = f"/api/v1/calls/{linkedid}/recording"
                assert (await eve_api.call("POST", recording, {"action": "pause"}))[0] == 403
                handoff = f"/api/v1/calls/{linkedid}/transfer-to-expert"
                assert (await eve_api.call("POST", handoff, {"notes": "not mine"}))[0] == 403
                # Ann, on it from her seat whatever her extension says now, does.
                status, body = await ann_api.call("POST", recording, {"action": "pause"})
                assert status == 200, body
                assert (await ann_api.call("POST", recording, {"action": "resume"}))[0] == 200
                # Eve's lead may not listen to the phone (it is Ann's seat), nor to Eve (her phone is Ann's seat).
                rita_api, _ = await api(rita)
                status, body = await rita_api.call("POST", "/api/v1/spy", {"agent": "PJSIP/1001", "mode": "listen"})
                assert status == 403, body
                status, body = await rita_api.call("POST", "/api/v1/spy", {"agent": eve, "mode": "listen"})
                assert status == 409, body
                assert "someone else is logged in on their phone" in body["error"]["message"]
                assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
                assert await asyncio.to_thread(phone.wait, 15) == 0, phone.output()[-1500:]
                assert await wait_for(lambda: bool(recorded), timeout=10)
            finally:
                for socket in sockets.values():
                    await socket.close()
                for reader in readers:
                    reader.cancel()
            await ann_api.call("POST", "/api/v1/agents/me/logout")
        legs = (await app[RECORDINGS].index.search(SearchQuery(linkedid=linkedid, kind="full"))).items
    # The pop and the seat's states went to Ann's page only.
    ann_types = {frame["type"] for frame in pages[ann]}
    assert {"screen_pop", "agent_state"} <= ann_types, ann_types
    assert [frame for frame in pages[eve] if frame["type"] in ("screen_pop", "agent_state")] == []
    (pop,) = [frame for frame in pages[ann] if frame["type"] == "screen_pop"]
    assert (pop["agent"], pop["caller"]["number"]) == ("PJSIP/1001", "5550777")
    # The recording of the call is Ann's.
    assert [(leg.agent_interface, leg.agent_user_id) for leg in legs] == [("PJSIP/1001", ann_info.id)]
