"""The supervisor through the real Asterisk and SIPp phones: the live board, listening and barging, statistics.

An agent (PJSIP/1001, a SIPp desk phone) takes a queued call from a SIPp caller; the supervisor who leads the
agent's team listens from their own phone (PJSIP/3001, another SIPp desk phone that answers), then switches to
barge without redialling, then stops; a supervisor of another team is refused. The IVR is replaced by a route
that queues every caller at once, as in test_seats_and_handoff.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from sqlalchemy import select

from callcenter import dialplan
from callcenter.ami.connection import AmiConnection
from callcenter.ami.message import AmiMessage
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.events import ChanSpyChanged
from callcenter.keys import AUTH, DATABASE, LIVE
from callcenter.model import AgentStatus
from callcenter.secrets import ami_secret
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded
from calls.models import CallRecord
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, add_user, running_engine, wait_for
from tests.integration.test_seats_and_handoff import queue_route

PASSWORD = "supervisor-test-password-1"
BASE = f"http://127.0.0.1:{TEST_PORTS['web']}"


class Api:
    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.http.request(method, BASE + path, json=body, headers=self.headers) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


@asynccontextmanager
async def logged_in(
    app: web.Application, role: Role, extension: str | None, *, teams: list[str], lead_of: list[str]
) -> AsyncIterator[tuple[Api, str]]:
    username = f"{role}-{extension or 'none'}-{secrets.token_hex(3)}"
    await add_user(app, username, PASSWORD, roles=[role], extension=extension, teams=teams, lead_of=lead_of)
    async with aiohttp.ClientSession() as http:
        async with http.post(BASE + "/api/v1/login", json={"username": username, "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["token"]
        yield Api(http, token), username


def _stay(queue: str, entered: datetime, agent: str | None, wait: float, talk: float | None) -> dict[str, Any]:
    answered = entered + timedelta(seconds=wait) if agent else None
    return {
        "queue": queue,
        "agent": agent,
        "entered": entered.isoformat(),
        "answered_at": answered.isoformat() if answered else None,
        "wait_time": wait,
        "talk_time": talk,
        "abandoned": agent is None,
    }


def _record(linkedid: str, started: datetime, outcome: str, *stays: dict[str, Any]) -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        direction="inbound",
        caller_number="5550999",
        caller_name="Scripted",
        did="4000",
        started_at=started,
        ended_at=started + timedelta(minutes=3),
        outcome=outcome,
        ivr_flow=None,
        ivr_outcome=None,
        ivr_choice=None,
        ivr_path="[]",
        queues=json.dumps([stay["queue"] for stay in stays]),
        segments=json.dumps(list(stays)),
        wait_time=None,
        talk_time=None,
        agent=None,
        expert=None,
        handoff_notes=None,
        recording_ids="[]",
        source="live",
        created_at=started,
    )


async def _board_frame(socket: aiohttp.ClientWebSocketResponse, interface: str, state: str) -> dict[str, Any]:
    """The first ``board`` frame that shows ``interface`` in ``state`` with its user's name (the name follows the
    seat's login row, which is written just after Asterisk reports the new member)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        message = await socket.receive(timeout=deadline - loop.time())
        assert message.type is WSMsgType.TEXT, message
        frame = json.loads(message.data)
        if frame["type"] != "board":
            continue
        seat = next((seat for seat in frame["seats"] if seat["interface"] == interface), None)
        if seat is not None and seat["state"] == state and seat["user"]:
            return frame
    raise AssertionError(f"no board frame showed {interface} {state}")


async def test_a_team_lead_listens_then_barges_on_an_agent_s_call_others_are_refused_and_the_board_and_stats_agree(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    seen: list[object] = []
    bus.subscribe_all(seen.append)
    general = config.queues.general
    team = f"team-{secrets.token_hex(3)}"
    began = datetime.now(UTC)
    dtmf: list[AmiMessage] = []

    def keep_dtmf(message: AmiMessage) -> None:
        if message.event == "DTMFEnd":
            dtmf.append(message)

    # A second AMI session of the engine's user, to see what Asterisk says about keys (DTMFEnd).
    watcher = AmiConnection.from_config(config.ami, ami_secret(config), on_event=keep_dtmf)
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        await watcher.start()
        await watcher.wait_connected(10)
        try:
            async with (
                logged_in(app, Role.AGENT, "1001", teams=[team], lead_of=[]) as (agent, agent_name),
                logged_in(app, Role.SUPERVISOR, "3001", teams=[], lead_of=[team]) as (boss, boss_name),
                logged_in(app, Role.SUPERVISOR, None, teams=[team], lead_of=[f"other-{team}"]) as (member, _),
            ):
                status, seat = await agent.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]})
                assert status == 200, seat
                try:
                    await _spy_on_a_live_call(config, phones, app, bus, seen, dtmf, agent_name, boss, boss_name, member)
                finally:
                    await agent.call("POST", "/api/v1/agents/me/logout")
                await _statistics_match(app, boss, began)
        finally:
            await watcher.close()


async def _spy_on_a_live_call(
    config: Config,
    phones: Phones,
    app: web.Application,
    bus: Bus,
    seen: list[object],
    dtmf: list[AmiMessage],
    agent_name: str,
    boss: Api,
    boss_name: str,
    member: Api,
) -> None:
    live = app[LIVE]
    socket = await boss.http.ws_connect(BASE.replace("http", "ws") + "/api/v1/ws", headers=boss.headers)
    agent_phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
    boss_phone = phones.desk_phone("super-3001", local_ip=PHONE_IP, local_port=AGENT_PORTS["3001"])
    caller = phones.call(
        "caller",
        config.sip.dids[0],
        CallerScript(caller_number="5550777", caller_name="Spied <b>On</b>", talk_ms=22000, speech=True),
        local_ip=PSTN,
        local_port=5279,
    )
    assert await wait_for(lambda: _status(live.model, "PJSIP/1001") is AgentStatus.ON_CALL, timeout=30)
    linkedid = live.model.agents["PJSIP/1001"].linkedid

    # The board: the agent on the call, with a duration that grows; pushed over the websocket too.
    frame = await _board_frame(socket, "PJSIP/1001", "on_call")
    pushed = next(seat for seat in frame["seats"] if seat["interface"] == "PJSIP/1001")
    assert pushed["user"] == agent_name
    assert pushed["call"]["linkedid"] == linkedid
    status, first = await boss.call("GET", "/api/v1/board")
    assert status == 200, first
    await asyncio.sleep(1.5)
    status, second = await boss.call("GET", "/api/v1/board")
    seat1 = next(seat for seat in first["seats"] if seat["interface"] == "PJSIP/1001")
    seat2 = next(seat for seat in second["seats"] if seat["interface"] == "PJSIP/1001")
    assert seat1["state"] == seat2["state"] == "on_call"
    assert seat1["call"]["caller_number"] == "5550777"
    assert seat2["call"]["duration"] >= seat1["call"]["duration"] + 1.0
    assert seat2["state_seconds"] > seat1["state_seconds"]
    await socket.close()

    # Someone who does not lead the agent's team is refused (and audited).
    status, refused = await member.call("POST", "/api/v1/spy", {"agent": "PJSIP/1001", "mode": "listen"})
    assert status == 403, refused

    # Listen: the supervisor's phone rings with ChanSpy on the agent's channel.
    status, session = await boss.call("POST", "/api/v1/spy", {"agent": "PJSIP/1001", "mode": "listen"})
    assert status == 201, session

    def started() -> list[ChanSpyChanged]:
        return [e for e in seen if isinstance(e, ChanSpyChanged) and e.name == "ChanSpyStart"]

    assert await wait_for(lambda: bool(started()), timeout=15), boss_phone.output()[-1500:]
    headers = started()[0].headers
    assert headers["SpyeeChannel"].startswith("PJSIP/1001-")
    assert headers["SpyerChannel"].startswith("PJSIP/3001-")
    assert headers["SpyerUniqueid"] == session["id"]
    assert live.model.channels[headers["SpyeeUniqueid"]].linkedid == linkedid
    status, mine = await boss.call("GET", "/api/v1/spy")
    assert status == 200
    assert [(item["id"], item["state"], item["mode"]) for item in mine["items"]] == [
        (session["id"], "active", "listen")
    ]

    # Barge without redialling: ChanSpy reads key 6 from the supervisor's channel.
    status, changed = await boss.call("PATCH", f"/api/v1/spy/{session['id']}", {"mode": "barge"})
    assert status == 200, changed
    assert changed["mode"] == "barge"
    spyer = headers["SpyerChannel"]
    assert await wait_for(lambda: any(m.get("Channel") == spyer and m.get("Digit") == "6" for m in dtmf), timeout=5)
    received = next(m for m in dtmf if m.get("Channel") == spyer)
    assert received.get("Direction") == "Received"
    await asyncio.sleep(1.0)
    stopped = [e for e in seen if isinstance(e, ChanSpyChanged) and e.name == "ChanSpyStop"]
    assert stopped == [], "ChanSpy ended on the mode key"

    status, ended = await boss.call("DELETE", f"/api/v1/spy/{session['id']}")
    assert status == 200, ended
    assert (ended["state"], ended["reason"]) == ("ended", "stopped")
    boss_rc = await asyncio.to_thread(boss_phone.wait, 15)
    assert boss_rc == 0, boss_phone.output()[-1500:]
    # The call itself goes on: the caller and the agent hang up when the caller is done.
    assert _status(live.model, "PJSIP/1001") is AgentStatus.ON_CALL
    caller_rc = await asyncio.to_thread(caller.wait, 60)
    agent_rc = await asyncio.to_thread(agent_phone.wait, 15)
    assert caller_rc == 0, caller.output()[-1500:]
    assert agent_rc == 0, agent_phone.output()[-1500:]
    assert await wait_for(lambda: any(isinstance(e, CallRecorded) and e.linkedid == linkedid for e in seen), timeout=10)

    audit = app[AUTH]
    starts, _ = await audit.list_audit(action="spy.start", actor=boss_name)
    modes, _ = await audit.list_audit(action="spy.mode", actor=boss_name)
    ends, _ = await audit.list_audit(action="spy.end", actor=boss_name)
    assert [(entry.target, entry.details["mode"]) for entry in starts] == [("PJSIP/1001", "listen")]
    assert [(entry.details["from"], entry.details["to"]) for entry in modes] == [("listen", "barge")]
    (end,) = ends
    assert end.details["modes"] == ["listen", "barge"]
    assert end.details["connected_at"] is not None
    assert end.details["seconds"] > 1.0
    refusals, _ = await audit.list_audit(action="spy.refused")
    assert any(entry.target == "PJSIP/1001" for entry in refusals)


async def _statistics_match(app: web.Application, boss: Api, began: datetime) -> None:
    # A scripted day long ago, written as the call recorder writes records: every figure is known.
    day = datetime(2001, 2, 3, 9, tzinfo=UTC)
    tag = secrets.token_hex(4)
    rows = [
        _record(f"s1-{tag}", day, "answered", _stay("support", day, "PJSIP/1001", 5, 60)),
        _record(f"s2-{tag}", day + timedelta(minutes=10), "answered", _stay("support", day, "PJSIP/1002", 45, 30)),
        _record(f"s3-{tag}", day + timedelta(minutes=20), "abandoned", _stay("support", day, None, 30, None)),
        _record(f"s4-{tag}", day + timedelta(minutes=30), "after_hours"),
        _record(f"s5-{tag}", day + timedelta(minutes=40), "voicemail"),
        _record(f"s6-{tag}", day + timedelta(hours=1, minutes=5), "abandoned_in_ivr"),
    ]
    async with app[DATABASE].session() as session:
        session.add_all(rows)
    window = "from=2001-02-03T09:00:00Z&to=2001-02-03T11:00:00Z"
    status, volume = await boss.call("GET", f"/api/v1/stats/calls?{window}&interval=hour")
    assert status == 200, volume
    keys = ("offered", "answered", "abandoned", "after_hours", "voicemail", "abandoned_in_ivr")
    assert [[row[key] for key in keys] for row in volume["totals"]] == [[5, 2, 1, 1, 1, 0], [1, 0, 0, 0, 0, 1]]
    support = next(row for row in volume["queues"] if row["queue"] == "support")
    assert (support["offered"], support["answered"], support["answered_within_sl"]) == (3, 2, 1)

    # And the real call of this test, since it began (the spy call is not a customer's call).
    since = f"from={began.isoformat().replace('+00:00', 'Z')}"
    status, today = await boss.call("GET", f"/api/v1/stats/calls?{since}&interval=day")
    assert status == 200, today
    async with app[DATABASE].session() as session:
        recorded = [
            (row.linkedid, row.direction, row.did, row.outcome, row.source)
            for row in await session.scalars(select(CallRecord).where(CallRecord.started_at >= began))
        ]
    assert sum(row["offered"] for row in today["totals"]) == 1, recorded
    assert sum(row["answered"] for row in today["totals"]) == 1
    status, work = await boss.call("GET", f"/api/v1/stats/agents?{since}")
    assert status == 200, work
    seat = next(row for row in work["agents"] if "PJSIP/1001" in row["interfaces"])
    assert seat["handled"] == 1
    assert seat["login_seconds"] > 5
    assert seat["talk_seconds"] > 10
    status, text = await boss.call("GET", f"/api/v1/stats/agents/hourly?{since}&format=csv")
    assert status == 200
    assert text.splitlines()[0].startswith("hour,username")


def _status(model: Any, interface: str) -> AgentStatus | None:
    agent = model.agents.get(interface)
    return agent.status if agent is not None else None
