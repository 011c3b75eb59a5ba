"""A callback through the real Asterisk: the agent's phone rings first, then the customer's; the call gets an
outbound record linked to its service record."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
from sqlalchemy import select

from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import Database
from callcenter.keys import LIVE
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import Phones
from calls.events import CallRecorded
from calls.models import CallRecord
from recordings.events import RecordingFinished
from recordings.keys import RECORDINGS
from recordings.schemas import SearchQuery
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, add_user, running_engine, wait_for
from tests.integration.test_seats_and_handoff import PASSWORD, Api


async def test_a_callback_rings_the_agent_then_the_customer_and_is_recorded_as_outbound(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    short = config.model_copy(update={"calls": config.calls.model_copy(update={"callback_max_seconds": 5})})
    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    finished: list[RecordingFinished] = []
    bus.subscribe(RecordingFinished, finished.append)
    async with running_engine(short, bus, {}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        username = f"agent-cb-{secrets.token_hex(3)}"
        await add_user(app, username, PASSWORD, roles=[Role.AGENT], extension="1002")
        base = f"http://127.0.0.1:{TEST_PORTS['web']}"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as r:
                api = Api(http, (await r.json())["token"])
            # A number carrying Dial syntax is refused before anything reaches Asterisk.
            refused = await api.call("POST", "/api/v1/callbacks", {"number": "5550&PJSIP/1001"})
            assert refused[0] == 400
            agent_phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
            # The customer's phone, out on the public network side (the pstn endpoint's contact).
            customer = phones.desk_phone("customer", local_ip=PSTN, local_port=short.sip.pstn_port)
            status, callback = await api.call(
                "POST", "/api/v1/callbacks", {"number": "+86 138-0013-8000", "service_record_id": 42}
            )
            assert status == 202, callback
            assert callback["number"] == "+8613800138000"
            # Both phones answer; Asterisk ends the call at the callback limit (5 s) and both get BYE.
            assert await asyncio.to_thread(customer.wait, 40) == 0, customer.output()[-1500:]
            assert await asyncio.to_thread(agent_phone.wait, 15) == 0, agent_phone.output()[-1500:]
            assert await wait_for(lambda: bool(recorded), timeout=10)
            assert await wait_for(lambda: bool(finished), timeout=10)
        # The call is recorded in full by the dialplan, on the agent's channel.
        (full,) = (await app[RECORDINGS].index.search(SearchQuery(linkedid=callback["linkedid"]))).items
    assert full.kind == "full"
    assert full.status == "complete"
    assert full.agent_interface == "PJSIP/1002"
    database = Database(short.database_url)
    await database.open()
    try:
        async with database.session() as session:
            record = await session.scalar(select(CallRecord).where(CallRecord.linkedid == callback["linkedid"]))
    finally:
        await database.close()
    assert record is not None
    assert record.direction == "outbound"
    assert record.caller_number == "+8613800138000"
    assert record.agent == "PJSIP/1002"
    assert record.outcome == "answered"
    assert record.service_record_id == 42
    assert 3.0 <= (record.ended_at - record.started_at).total_seconds() <= 15.0
