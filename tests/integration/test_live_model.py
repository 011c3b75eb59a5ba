"""The live model follows a real call through Asterisk's AMI events and agrees with Asterisk's own listing."""

from __future__ import annotations

import asyncio

from callcenter import dialplan
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.events import CallAnswered, CallEnded, CallOffered
from callcenter.keys import LIVE
from callcenter.model import AgentStatus, CallOutcome
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, running_engine, wait_for
from tests.integration.test_seats_and_handoff import queue_route


def _asterisk_channels(sandbox: Sandbox) -> set[str]:
    listing = sandbox.cli("core show channels concise").stdout
    return {line.split("!")[0] for line in listing.splitlines() if "!" in line}


async def test_a_queued_call_answered_by_an_agent_is_followed_by_the_live_model(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    bus = Bus()
    events: list[object] = []
    bus.subscribe_all(events.append)
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(config.queues.general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        sandbox.cli(f"queue add member PJSIP/1001 to {config.queues.general}")
        queue_member.append(f"1001@{config.queues.general}")
        assert await wait_for(lambda: "PJSIP/1001" in live.model.agents, timeout=5)
        agent = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550777", caller_name="Live Caller", digits="1", talk_ms=12000),
            local_ip=PSTN,
            local_port=5274,
        )
        answered = await wait_for(
            lambda: any(call.answered_at is not None for call in live.model.calls.values()), timeout=30
        )
        assert answered, caller.output()[-1500:]
        await asyncio.sleep(1.0)
        # During the call, the model holds exactly the channels Asterisk lists.
        model_channels = {channel.name for channel in live.model.channels.values()}
        assert model_channels == _asterisk_channels(sandbox)
        (call,) = live.model.calls.values()
        assert call.caller_number == "5550777"
        assert call.caller_name == "Live Caller"
        assert call.queue == config.queues.general
        assert call.agent == "PJSIP/1001"
        assert live.model.agents["PJSIP/1001"].status is AgentStatus.ON_CALL
        caller_rc = await asyncio.to_thread(caller.wait, 60)
        agent_rc = await asyncio.to_thread(agent.wait, 15)
        assert await wait_for(lambda: not live.model.calls, timeout=10)
        await bus.drain()
    assert caller_rc == 0
    assert agent_rc == 0
    kinds = [type(event) for event in events]
    assert CallOffered in kinds
    assert CallAnswered in kinds
    ended = [event.call for event in events if isinstance(event, CallEnded)]
    assert len(ended) == 1
    assert ended[0].outcome == CallOutcome.ANSWERED
    assert (ended[0].talk_time or 0.0) > 0


async def test_after_the_ami_connection_is_cut_mid_call_the_model_matches_asterisk_again(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    bus = Bus()
    ended: list[CallEnded] = []
    bus.subscribe(CallEnded, ended.append)
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(config.queues.general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        sandbox.cli(f"queue add member PJSIP/1002 to {config.queues.general}")
        queue_member.append(f"1002@{config.queues.general}")
        agent = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550888", digits="1", talk_ms=12000),
            local_ip=PSTN,
            local_port=5275,
        )
        assert await wait_for(
            lambda: any(call.answered_at is not None for call in live.model.calls.values()), timeout=30
        )
        resyncs_before = live.resyncs
        live.connection.drop("cut by the test")
        assert not live.connection.connected
        # Asterisk's state moves on while the engine is deaf: the agent's phone is still in the call.
        assert await wait_for(lambda: live.connection.connected and live.resyncs > resyncs_before, timeout=15)
        assert live.connection.stats.reconnects == 1
        model_channels = {channel.name for channel in live.model.channels.values()}
        assert model_channels == _asterisk_channels(sandbox)
        assert len(live.model.calls) == 1
        caller_rc = await asyncio.to_thread(caller.wait, 60)
        agent_rc = await asyncio.to_thread(agent.wait, 15)
        assert await wait_for(lambda: not live.model.calls, timeout=10)
        await bus.drain()
    assert caller_rc == 0
    assert agent_rc == 0
    # The call is closed exactly once, whether its end was seen live or found by a resync.
    assert len(ended) == 1
