"""Seats through the API, the expert handoff and call records, through the real Asterisk with SIPp phones.

The IVR is replaced by a route that queues every caller at once: these tests are about what happens after the
menus (the flows have tests of their own).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from callcenter import dialplan
from callcenter.agi.session import AgiSession
from callcenter.auth.permissions import Role
from callcenter.bus import Bus, event_fields
from callcenter.config import Config
from callcenter.events import CallOffered
from callcenter.keys import AUTH, LIVE
from callcenter.model import AgentStatus
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded, ExpertOutcome, ExpertRequested
from recordings.keys import RECORDINGS
from recordings.schemas import SearchQuery
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, add_user, running_engine, wait_for

PASSWORD = "seat-test-password-1"
E = TypeVar("E")


def queue_route(queue: str) -> Callable[[AgiSession], Awaitable[None]]:
    async def route(session: AgiSession) -> None:
        # The IVR answers every call it serves; so does this stand-in, or the caller would only hear ringing.
        await session.answer()
        await session.set_variable(dialplan.VAR_QUEUE, queue)
        await session.set_variable(dialplan.VAR_PRIORITY, "0")
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_QUEUE)

    return route


class Api:
    """The engine's HTTP API as one logged-in user sees it."""

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}
        self._base = f"http://127.0.0.1:{TEST_PORTS['web']}"

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self._http.request(method, self._base + path, json=body, headers=self._headers) as response:
            return response.status, await response.json()


@asynccontextmanager
async def user_api(app: web.Application, role: Role, extension: str) -> AsyncIterator[Api]:
    """A fresh user with ``role`` on phone ``extension``, logged in; their seat is logged out afterwards."""
    username = f"{role}-{extension}-{secrets.token_hex(3)}"
    await add_user(app, username, PASSWORD, roles=[role], extension=extension)
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{TEST_PORTS['web']}"
        async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["token"]
        api = Api(http, token)
        try:
            yield api
        finally:
            await api.call("POST", "/api/v1/agents/me/logout")


def _events(bus: Bus) -> list[object]:
    seen: list[object] = []
    bus.subscribe_all(seen.append)
    return seen


def _of(events: list[object], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


async def test_an_agent_logged_in_through_the_api_answers_a_queued_call_and_the_call_is_recorded(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    events = _events(bus)
    general = config.queues.general
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        async with user_api(app, Role.AGENT, "1001") as agent_api:
            status, seat = await agent_api.call(
                "POST", "/api/v1/agents/me/login", {"queues": [{"queue": general, "penalty": 2}]}
            )
            assert status == 200, seat
            assert await wait_for(lambda: "PJSIP/1001" in live.model.queues[general].members, timeout=5)
            assert live.model.queues[general].members["PJSIP/1001"].penalty == 2
            assert live.model.agents["PJSIP/1001"].status is AgentStatus.AVAILABLE
            phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
            caller = phones.call(
                "caller",
                config.sip.dids[0],
                CallerScript(caller_number="5550301", caller_name="Seat Caller", talk_ms=5000),
                local_ip=PSTN,
                local_port=5276,
            )
            caller_rc = await asyncio.to_thread(caller.wait, 60)
            phone_rc = await asyncio.to_thread(phone.wait, 15)
            assert caller_rc == 0, caller.output()[-1500:]
            assert phone_rc == 0, phone.output()[-1500:]
            recorded = await wait_for(lambda: bool(_of(events, CallRecorded)), timeout=10)
            assert recorded, [type(e).__name__ for e in events]
            linkedid = _of(events, CallRecorded)[0].linkedid
            status, record = await _supervisor_view(app, f"/api/v1/call-records/{linkedid}")
            assert status == 200, record
            assert record["outcome"] == "answered"
            assert record["agent"] == "PJSIP/1001"
            assert record["caller_number"] == "5550301"
            assert record["did"] == config.sip.dids[0]
            assert record["queues"] == [general]
            assert record["talk_time"] > 2
            assert record["source"] == "live"
            status, seat = await agent_api.call("POST", "/api/v1/agents/me/logout")
            assert status == 200
            assert seat["state"] in ("logged_out", "wrap_up", "available")
            assert await wait_for(lambda: "PJSIP/1001" not in live.model.queues[general].members, timeout=5)


async def _supervisor_view(app: web.Application, path: str) -> tuple[int, Any]:
    username = f"sup-{secrets.token_hex(3)}"
    await app[AUTH].create_user(username, PASSWORD, roles=[Role.SUPERVISOR])
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{TEST_PORTS['web']}"
        async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as response:
            token = (await response.json())["token"]
        return await Api(http, token).call("GET", path)


async def test_a_paused_agent_gets_no_calls_and_a_caller_who_gives_up_is_recorded_abandoned_with_the_wait(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    events = _events(bus)
    general = config.queues.general
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        async with user_api(app, Role.AGENT, "1002") as agent_api:
            assert (await agent_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]}))[0] == 200
            status, seat = await agent_api.call("POST", "/api/v1/agents/me/pause", {"reason": "lunch"})
            assert status == 200, seat
            assert await wait_for(lambda: live.model.agents["PJSIP/1002"].status is AgentStatus.PAUSED, timeout=5)
            assert live.model.agents["PJSIP/1002"].pause_reason == "lunch"
            bad = await agent_api.call("POST", "/api/v1/agents/me/pause", {"reason": "nap"})
            assert bad[0] == 400
            phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
            caller = phones.call(
                "caller",
                config.sip.dids[0],
                CallerScript(caller_number="5550302", talk_ms=7000),
                local_ip=PSTN,
                local_port=5277,
            )
            caller_rc = await asyncio.to_thread(caller.wait, 60)
            assert caller_rc == 0, caller.output()[-1500:]
            assert await wait_for(lambda: bool(_of(events, CallRecorded)), timeout=10)
            phone.stop()
            linkedid = _of(events, CallRecorded)[0].linkedid
            offered = [e for e in _of(events, CallOffered) if e.agent == "PJSIP/1002"]
            assert offered == [], "a paused agent's phone was rung"
            status, record = await _supervisor_view(app, f"/api/v1/call-records/{linkedid}")
            assert status == 200, record
            assert record["outcome"] == "abandoned"
            assert record["agent"] is None
            # The caller waited from joining the queue until hanging up: 2 s before the (absent) digits and 7 s
            # of "talk" after the answer, less the AGI moment; Asterisk counts whole seconds.
            assert 7.0 <= record["wait_time"] <= 10.0, record
            status, seat = await agent_api.call("POST", "/api/v1/agents/me/unpause")
            assert status == 200
            assert seat["paused"] is False
            assert await wait_for(lambda: live.model.agents["PJSIP/1002"].status is AgentStatus.AVAILABLE, timeout=5)


async def test_a_seat_survives_an_engine_restart(config: Config, sandbox: Sandbox, phones: Phones) -> None:
    general = config.queues.general
    async with running_engine(config, Bus(), {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        username = f"agent-restart-{secrets.token_hex(3)}"
        await add_user(app, username, PASSWORD, roles=[Role.AGENT], extension="1001")
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{TEST_PORTS['web']}"
            async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as r:
                token = (await r.json())["token"]
            api = Api(http, token)
            assert (await api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]}))[0] == 200
            assert (await api.call("POST", "/api/v1/agents/me/pause", {"reason": "training"}))[0] == 200
    # Asterisk loses the membership too (as after a restart with an empty astdb): the engine puts it back.
    sandbox.cli(f"queue remove member PJSIP/1001 from {general}")
    async with running_engine(config, Bus(), {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: "PJSIP/1001" in live.model.queues.get(general, _EMPTY).members, timeout=10)
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{TEST_PORTS['web']}"
            async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as r:
                token = (await r.json())["token"]
            api = Api(http, token)
            status, seat = await api.call("GET", "/api/v1/agents/me")
            assert status == 200
            assert seat["queues"] == [{"queue": general, "penalty": 0}]
            assert seat["paused"] is True
            assert seat["pause_reason"] == "training"
            assert await wait_for(lambda: live.model.agents["PJSIP/1001"].status is AgentStatus.PAUSED, timeout=5)
            assert (await api.call("POST", "/api/v1/agents/me/logout"))[0] == 200


def _status(model: Any, interface: str) -> AgentStatus | None:
    agent = model.agents.get(interface)
    return agent.status if agent is not None else None


class _Empty:
    members: dict[str, object] = {}


_EMPTY = _Empty()


async def test_an_expert_handoff_with_notes_rings_the_expert_frees_the_agent_and_the_record_shows_both(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    events = _events(bus)
    general, expert = config.queues.general, config.queues.expert
    notes = 'Router <b>keeps</b> rebooting; customer tried "factory reset"\r\nalready.'
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        async with (
            user_api(app, Role.AGENT, "1001") as agent_api,
            user_api(app, Role.EXPERT, "2001") as expert_api,
        ):
            assert (await agent_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]}))[0] == 200
            refused = await agent_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": expert}]})
            assert refused[0] == 403, refused
            assert (await expert_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": expert}]}))[0] == 200
            agent_phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
            expert_phone = phones.desk_phone("expert-2001", local_ip=PHONE_IP, local_port=AGENT_PORTS["2001"])
            caller = phones.call(
                "caller",
                config.sip.dids[0],
                CallerScript(caller_number="5550303", caller_name="Hand Over", talk_ms=16000),
                local_ip=PSTN,
                local_port=5278,
            )
            assert await wait_for(lambda: _status(live.model, "PJSIP/1001") is AgentStatus.ON_CALL, timeout=30)
            linkedid = live.model.agents["PJSIP/1001"].linkedid
            # Only the agent on the call may hand it over.
            not_theirs = await expert_api.call(
                "POST", f"/api/v1/calls/{linkedid}/transfer-to-expert", {"notes": "mine now"}
            )
            assert not_theirs[0] == 403, not_theirs
            status, handoff = await agent_api.call(
                "POST", f"/api/v1/calls/{linkedid}/transfer-to-expert", {"notes": notes}
            )
            assert status == 202, handoff
            # The first agent's leg ends (their phone gets BYE) and they go to wrap-up.
            agent_rc = await asyncio.to_thread(agent_phone.wait, 15)
            assert agent_rc == 0, agent_phone.output()[-1500:]
            assert await wait_for(lambda: live.model.agents["PJSIP/1001"].status is AgentStatus.WRAP_UP, timeout=5), [
                (type(e).__name__, event_fields(e))
                for e in events
                if type(e).__name__.startswith(("Agent", "Call", "Expert"))
            ]
            # The expert's phone rings and answers the same call.
            assert await wait_for(lambda: live.model.agents["PJSIP/2001"].status is AgentStatus.ON_CALL, timeout=20)
            assert live.model.agents["PJSIP/2001"].linkedid == linkedid
            again = await agent_api.call("POST", f"/api/v1/calls/{linkedid}/transfer-to-expert", {"notes": "x"})
            assert again[0] in (403, 409)
            caller_rc = await asyncio.to_thread(caller.wait, 60)
            expert_rc = await asyncio.to_thread(expert_phone.wait, 15)
            assert caller_rc == 0, caller.output()[-1500:]
            assert expert_rc == 0, expert_phone.output()[-1500:]
            assert await wait_for(lambda: bool(_of(events, CallRecorded)), timeout=10)
    requested = _of(events, ExpertRequested)
    assert requested
    assert requested[0].notes == notes
    assert requested[0].linkedid == linkedid
    outcomes = _of(events, ExpertOutcome)
    assert outcomes
    assert outcomes[0].outcome == "answered"
    assert outcomes[0].expert == "PJSIP/2001"
    async with running_engine(config, Bus(), {}) as app:
        status, record = await _supervisor_view(app, f"/api/v1/call-records/{linkedid}")
        # Both legs are recorded in full by the dialplan, each with its own seat and queue.
        legs = (await app[RECORDINGS].index.search(SearchQuery(linkedid=linkedid, kind="full"))).items
    assert {(leg.agent_interface, leg.queue) for leg in legs} == {("PJSIP/1001", general), ("PJSIP/2001", expert)}
    assert all(leg.status == "complete" for leg in legs), legs
    assert set(record["recording_ids"]) >= {leg.id for leg in legs}, record
    assert status == 200, record
    assert record["outcome"] == "answered"
    assert record["agent"] == "PJSIP/1001"
    assert record["expert"] == "PJSIP/2001"
    assert record["queues"] == [general, expert]
    assert record["handoff_notes"] == notes
    first, second = record["segments"]
    assert first["agent"] == "PJSIP/1001"
    assert second["agent"] == "PJSIP/2001"
    assert first["talk_time"] > 0
    assert second["talk_time"] > 0
