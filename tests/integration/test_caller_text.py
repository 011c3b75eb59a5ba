"""Caller ID through the real Asterisk: a SIP display name full of quotes, backslashes, markup, Chinese and an
emoji reaches the IVR, the live model and the call record exactly as the phone sent it (issue 16)."""

from __future__ import annotations

import asyncio

from callcenter import dialplan
from callcenter.agi.session import AgiSession
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.keys import LIVE
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded
from recordings.keys import RECORDINGS
from recordings.schemas import SearchQuery
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, running_engine, wait_for
from tests.integration.test_call_records_through_asterisk import _records

NAME = '<img src=x onerror=alert(1)>\' OR 1=1-- "Q" back\\slash & 张伟 😀'


async def test_a_hostile_display_name_is_kept_exactly_as_the_caller_sent_it(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    general = config.queues.general
    sandbox.cli(f"queue add member PJSIP/1002 to {general}")
    queue_member.append(f"1002@{general}")
    heard: list[str] = []

    async def route(session: AgiSession) -> None:
        heard.append(session.env.calleridname)
        await session.answer()
        await session.set_variable(dialplan.VAR_QUEUE, general)
        await session.set_variable(dialplan.VAR_PRIORITY, "0")
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_QUEUE)

    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: route}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550777", caller_name=NAME, talk_ms=3000),
            local_ip=PSTN,
            local_port=5286,
        )
        assert await wait_for(lambda: any(call.answered_at for call in live.model.calls.values()), timeout=30)
        in_model = [call.caller_name for call in live.model.calls.values()]
        assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
        assert await asyncio.to_thread(phone.wait, 15) == 0
        assert await wait_for(lambda: bool(recorded), timeout=10)
        linkedid = recorded[0].linkedid
        await asyncio.sleep(1.5)  # the full recording's row is finished a moment after the call
        recordings = (await app[RECORDINGS].index.search(SearchQuery(linkedid=linkedid))).items
    assert heard == [NAME]
    assert in_model == [NAME]
    (record,) = await _records(config, linkedid)
    assert record.caller_name == NAME
    assert record.caller_number == "5550777"
    assert [item.caller_number for item in recordings] == ["5550777"]
