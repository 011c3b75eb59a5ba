"""Call records through the real Asterisk: written once when the engine restarts mid-call (reconciled from
Asterisk's channel event log), and an expert handoff nobody answers ends in a voicemail or, on the caller's
key, a callback request, never a drop."""

from __future__ import annotations

import array
import asyncio
import math
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from callcenter import dialplan
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import Database
from callcenter.keys import LIVE
from callcenter.model import AgentStatus
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded, ExpertOutcome
from calls.keys import CALLS
from calls.models import CallProgress, CallRecord, ExpertHandoff
from crm_bridge.models import RecordType, ServiceRecord
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, running_engine, wait_for
from tests.integration.test_seats_and_handoff import queue_route, user_api


async def _records(config: Config, linkedid: str) -> list[CallRecord]:
    database = Database(config.database_url)
    await database.open()
    try:
        async with database.session() as session:
            return list((await session.scalars(select(CallRecord).where(CallRecord.linkedid == linkedid))).all())
    finally:
        await database.close()


async def _progress(config: Config, linkedid: str) -> int:
    database = Database(config.database_url)
    await database.open()
    try:
        async with database.session() as session:
            rows = await session.scalars(select(CallProgress.linkedid).where(CallProgress.linkedid == linkedid))
            return len(rows.all())
    finally:
        await database.close()


async def test_a_call_that_ends_while_the_engine_is_down_is_recorded_once_from_asterisks_event_log(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    general = config.queues.general
    sandbox.cli(f"queue add member PJSIP/1002 to {general}")
    queue_member.append(f"1002@{general}")
    route = {dialplan.ROUTE_IVR: queue_route(general)}
    async with running_engine(config, Bus(), route) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550401", caller_name="Restart Caller", talk_ms=12000),
            local_ip=PSTN,
            local_port=5279,
        )
        assert await wait_for(lambda: any(c.answered_at for c in live.model.calls.values()), timeout=30)
        (linkedid,) = live.model.calls
        # The running call is snapshotted, by the recorder's own loop or by this call, whichever comes first.
        await app[CALLS].snapshot()
        assert await _progress(config, linkedid) == 1
    # The engine is gone; the call goes on and ends without it.
    assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
    assert await asyncio.to_thread(phone.wait, 15) == 0
    assert await _records(config, linkedid) == []
    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    async with running_engine(config, bus, route) as app:
        assert await wait_for(lambda: bool(recorded), timeout=15)
        # Reconciling again finds nothing left to do.
        assert await app[CALLS].reconcile() == 0
    (record,) = await _records(config, linkedid)
    assert record.source == "reconciled"
    assert record.outcome == "answered"
    assert record.agent == "PJSIP/1002"
    assert record.caller_number == "5550401"
    assert record.did == config.sip.dids[0]
    # The end comes from CEL's LINKEDID_END: after the answer, about 14 s after the start (2 s + 12 s of talk).
    duration = (record.ended_at - record.started_at).total_seconds()
    assert 11.0 <= duration <= 20.0, duration


@dataclass
class _Unanswered:
    config: Config
    linkedid: str
    handoff: dict[str, Any]
    outcomes: list[ExpertOutcome]


@asynccontextmanager
async def _handoff_nobody_answers(
    config: Config, phones: Phones, script: CallerScript, notes: str, call_seconds: float
) -> AsyncIterator[_Unanswered]:
    """A queued call the agent hands to an expert queue nobody staffs (5 s of waiting there), with ``notes``;
    yields, engine still running, once the caller's phone has ended the call and the handoff has an outcome."""
    general = config.queues.general
    quick = config.model_copy(update={"calls": config.calls.model_copy(update={"expert_timeout": 5})})
    bus = Bus()
    outcomes: list[ExpertOutcome] = []
    bus.subscribe(ExpertOutcome, outcomes.append)
    async with running_engine(quick, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        async with user_api(app, Role.AGENT, "1001") as agent_api:
            assert (await agent_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]}))[0] == 200
            agent_phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
            caller = phones.call("caller", quick.sip.dids[0], script, local_ip=PSTN, local_port=5280)
            agent = "PJSIP/1001"
            assert await wait_for(
                lambda: agent in live.model.agents and live.model.agents[agent].status is AgentStatus.ON_CALL,
                timeout=30,
            )
            linkedid = live.model.agents[agent].linkedid
            status, handoff = await agent_api.call(
                "POST", f"/api/v1/calls/{linkedid}/transfer-to-expert", {"notes": notes}
            )
            assert status == 202, handoff
            assert await asyncio.to_thread(agent_phone.wait, 15) == 0
            assert await asyncio.to_thread(caller.wait, call_seconds) == 0, caller.output()[-1500:]
            assert await wait_for(lambda: bool(outcomes), timeout=10)
            yield _Unanswered(quick, linkedid, handoff, outcomes)


async def test_an_expert_handoff_nobody_answers_ends_in_an_expert_voicemail(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    expert = config.queues.expert
    # The caller is offered voicemail or a callback about 7 s in (5 s in the empty expert queue after the
    # handoff) and presses nothing: after two offers (about 26 s) the message is recorded, which is the
    # default so that nobody is dropped. They speak from 34 s and hang up at 39 s.
    script = CallerScript(caller_number="5550402", wait_before_digits_ms=34000, talk_ms=5000, speech=True)
    async with _handoff_nobody_answers(config, phones, script, "needs firmware expert", 70) as done:
        pass
    quick, linkedid, handoff, outcomes = done.config, done.linkedid, done.handoff, done.outcomes
    assert outcomes[0].outcome == "voicemail"
    assert outcomes[0].linkedid == linkedid
    assert outcomes[0].voicemail_path is not None
    path = Path(outcomes[0].voicemail_path)
    assert path.is_relative_to(quick.recordings_dir)
    assert path.name.startswith("rec-")
    assert path.is_file()
    with wave.open(str(path)) as message:
        seconds = message.getnframes() / message.getframerate()
        samples = array.array("h", message.readframes(message.getnframes()))
    assert seconds > 1.5
    # The caller's speech is in it, not silence.
    assert math.sqrt(sum(sample * sample for sample in samples) / len(samples)) > 100
    database = Database(quick.database_url)
    await database.open()
    try:
        async with database.session() as session:
            row = await session.get(ExpertHandoff, handoff["handoff_id"])
            assert row is not None
            assert row.outcome == "voicemail"
            records = await session.scalar(select(func.count()).where(CallRecord.linkedid == linkedid))
    finally:
        await database.close()
    assert records == 1
    assert expert not in (row.expert or "")


async def test_a_caller_no_expert_answers_presses_2_and_leaves_a_callback_request(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    # The offer comes about 7 s in (5 s in the empty expert queue after the handoff); the caller presses 2 at
    # 11 s, while it plays or while Read() waits, and then waits for Asterisk to hang up.
    script = CallerScript(caller_number="5550403", digits="2", wait_before_digits_ms=11000, remote_hangup=True)
    async with _handoff_nobody_answers(config, phones, script, "wants the firmware expert", 60) as done:
        quick, linkedid, handoff, outcomes = done.config, done.linkedid, done.handoff, done.outcomes
        assert outcomes[0].outcome == "callback", outcomes[0]
        assert outcomes[0].linkedid == linkedid

        async def callback_record() -> ServiceRecord | None:
            database = Database(quick.database_url)
            await database.open()
            try:
                async with database.session() as session:
                    return await session.scalar(
                        select(ServiceRecord).where(
                            ServiceRecord.linkedid == linkedid, ServiceRecord.type == RecordType.CALLBACK_VISIT
                        )
                    )
            finally:
                await database.close()

        # The request goes through the outbox: it lands in the CRM with the agent's notes for the expert.
        deadline = asyncio.get_running_loop().time() + 15
        record = await callback_record()
        while record is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.3)
            record = await callback_record()
    assert record is not None
    assert record.status == "new"
    assert record.caller_number is not None
    assert record.caller_number.endswith("5550403")
    assert "wants the firmware expert" in record.content
    database = Database(quick.database_url)
    await database.open()
    try:
        async with database.session() as session:
            row = await session.get(ExpertHandoff, handoff["handoff_id"])
    finally:
        await database.close()
    assert row is not None
    assert row.outcome == "callback"
