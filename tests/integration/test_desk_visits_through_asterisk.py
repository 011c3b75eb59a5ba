"""A callback visit placed from the desk's API through the real Asterisk: the back-office user's phone rings, then
the customer's SIPp phone; both answer, the dialplan records the call in full, and the visit keeps the call's
linkedid, which is the call record's and the recording's."""

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
from crm_bridge.keys import CRM
from crm_bridge.models import RecordType
from crm_bridge.schemas import ServiceRecordIn
from recordings.events import RecordingFinished
from recordings.keys import RECORDINGS
from recordings.schemas import SearchQuery
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, add_user, running_engine, wait_for
from tests.integration.test_seats_and_handoff import PASSWORD, Api


async def test_a_visit_placed_from_the_desk_rings_the_customer_is_recorded_and_keeps_its_call(
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
        username = f"desk-visit-{secrets.token_hex(3)}"
        await add_user(app, username, PASSWORD, roles=[Role.BACKOFFICE], extension="1002")
        # A caller who gave up in the queue, as crm_bridge.from_calls files it.
        made, _ = await app[CRM].records.create(
            ServiceRecordIn(
                type=RecordType.CALLBACK_VISIT,
                content="The caller hung up in the queue. Call them back.",
                caller_number="+86 138-0013-8000",
                idempotency_key=f"abandoned:it-{secrets.token_hex(4)}",
            ),
            actor="system",
        )
        base = f"http://127.0.0.1:{TEST_PORTS['web']}"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as r:
                api = Api(http, (await r.json())["token"])
            status, listed = await api.call("GET", "/api/v1/visits?cause=abandoned_call")
            assert status == 200
            assert made.id in [item["id"] for item in listed["items"]]
            agent_phone = phones.desk_phone("desk-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
            customer = phones.desk_phone("customer", local_ip=PSTN, local_port=short.sip.pstn_port)
            status, placed = await api.call("POST", f"/api/v1/visits/{made.id}/place")
            assert status == 202, placed
            assert placed["number"] == "+8613800138000"
            assert placed["agent"] == "PJSIP/1002"
            # Both phones answer; Asterisk ends the call at the callback limit (5 s) and both get BYE.
            assert await asyncio.to_thread(customer.wait, 40) == 0, customer.output()[-1500:]
            assert await asyncio.to_thread(agent_phone.wait, 15) == 0, agent_phone.output()[-1500:]
            assert await wait_for(lambda: any(e.linkedid == placed["linkedid"] for e in recorded), timeout=10)
            assert await wait_for(lambda: bool(finished), timeout=10)
            status, shown = await api.call("GET", f"/api/v1/visits/{made.id}")
            assert status == 200
            assert [call["linkedid"] for call in shown["calls"]] == [placed["linkedid"]]
            assert shown["status"] == "in_progress"
            status, result = await api.call(
                "POST", f"/api/v1/visits/{made.id}/result", {"outcome": "reached", "satisfaction": 5}
            )
            assert status == 201, result
            assert result["result"]["linkedid"] == placed["linkedid"]
        (full,) = (await app[RECORDINGS].index.search(SearchQuery(linkedid=placed["linkedid"]))).items
    assert full.kind == "full"
    assert full.status == "complete"
    assert full.agent_interface == "PJSIP/1002"
    database = Database(short.database_url)
    await database.open()
    try:
        async with database.session() as session:
            record = await session.scalar(select(CallRecord).where(CallRecord.linkedid == placed["linkedid"]))
    finally:
        await database.close()
    assert record is not None
    assert record.direction == "outbound"
    assert record.outcome == "answered"
    assert record.service_record_id == made.id
