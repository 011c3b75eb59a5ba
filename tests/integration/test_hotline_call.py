"""A caller dials the hotline through the real Asterisk: the engine's IVR, and the fallback when it is down."""

from __future__ import annotations

import asyncio
import wave
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.keys import METRICS
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from ivr_flows.events import IvrChoice, IvrEnded, IvrStarted
from ivr_flows.keys import FLOWS
from ivr_flows.ports import ShiftedClock
from ivr_flows.prompts import prompt_name, prompt_path
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, running_engine

# A Monday morning in the flows' time zone: the main menu is open.
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _welcome_ms(app: web.Application) -> int:
    """How long the welcome prompt plays before the main menu listens for a key."""
    route = app[FLOWS].route
    spoken = route.flows["main"].prompts["welcome"].text("en")
    assert spoken is not None
    assert route.sounds_dir is not None
    with wave.open(str(prompt_path(route.sounds_dir, prompt_name("welcome", "en", *spoken))), "rb") as audio:
        return int(audio.getnframes() / audio.getframerate() * 1000)


async def test_caller_dtmf_reaches_the_engine_ivr_and_the_call_is_queued_to_an_agent(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    sandbox.cli(f"queue add member PJSIP/1001 to {config.queues.general}")
    queue_member.append(f"1001@{config.queues.general}")
    bus = Bus()
    events: list[object] = []
    bus.subscribe_all(events.append)
    async with running_engine(config, bus, clock=ShiftedClock(OPEN)) as app:
        await app[FLOWS].wait_ready()
        agent = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
        # 7 (a suggestion) once the welcome is over and the main menu plays.
        script = CallerScript(
            caller_number="5550123",
            caller_name="Dana Caller",
            digits="7",
            wait_before_digits_ms=_welcome_ms(app) + 1200,
            talk_ms=9000,
        )
        caller = phones.call("caller", config.sip.dids[0], script, local_ip=PSTN, local_port=5270)
        caller_rc = await asyncio.to_thread(caller.wait, 60)
        agent_rc = await asyncio.to_thread(agent.wait, 15)
    choices = [event for event in events if isinstance(event, IvrChoice)]
    started = [event for event in events if isinstance(event, IvrStarted)]
    ended = [event for event in events if isinstance(event, IvrEnded)]
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    assert choices, events
    assert (choices[0].digits, choices[0].target) == ("7", "suggestion")
    assert (ended[0].outcome, ended[0].queue, ended[0].choice) == (
        "queued",
        config.queues.general,
        "suggestion",
    )
    assert started[0].caller_number == "5550123"
    assert started[0].caller_name == "Dana Caller"
    assert started[0].did == config.sip.dids[0]
    assert started[0].linkedid == choices[0].linkedid
    # The IVR told the dialplan to queue the caller; the agent's phone answered the queued call.
    assert agent_rc == 0, agent.output()[-2000:] + agent.errors()


async def test_with_the_engine_down_the_dialplan_still_queues_the_caller(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    sandbox.cli(f"queue add member PJSIP/1002 to {config.queues.general}")
    queue_member.append(f"1002@{config.queues.general}")
    sandbox_log = sandbox.root / "var/log/asterisk/messages.log"
    log_start = len(sandbox_log.read_text(encoding="utf-8", errors="replace"))
    # Nothing listens on the FastAGI port: Asterisk's connect fails and AGISTATUS becomes FAILURE.
    agent = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
    caller = phones.call(
        "caller",
        config.sip.dids[0],
        CallerScript(caller_number="5550124", digits="", talk_ms=9000),
        local_ip=PSTN,
        local_port=5271,
    )
    caller_rc = await asyncio.to_thread(caller.wait, 60)
    agent_rc = await asyncio.to_thread(agent.wait, 15)
    dialplan_log = sandbox_log.read_text(encoding="utf-8", errors="replace")[log_start:]
    assert "callcenter/apology" in dialplan_log, dialplan_log[-3000:]
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    assert agent_rc == 0, "the agent's phone never got the fallback-queued call:\n" + agent.output()[-2000:]


async def test_hostile_caller_id_reaches_the_engine_as_plain_text(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    hostile = "<img src=x onerror=alert(1)> Robert'); DROP TABLE users;-- 王芳"
    bus = Bus()
    events: list[IvrStarted] = []
    bus.subscribe(IvrStarted, events.append)
    async with running_engine(config, bus, clock=ShiftedClock(OPEN)):
        caller = phones.call(
            "caller",
            config.sip.dids[1],
            CallerScript(caller_number="5550666", caller_name=hostile, digits="", talk_ms=1500),
            local_ip=PSTN,
            local_port=5272,
        )
        caller_rc = await asyncio.to_thread(caller.wait, 60)
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    assert len(events) == 1
    assert events[0].caller_name == hostile
    assert events[0].caller_number == "5550666"
    assert events[0].did == config.sip.dids[1]


async def test_a_call_the_engine_refuses_still_reaches_the_queue(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    # The engine is up but has no `ivr` route: it closes the connection, Asterisk reports AGISTATUS=SUCCESS
    # with no action set, and the dialplan must treat that like an engine that is down.
    sandbox.cli(f"queue add member PJSIP/1002 to {config.queues.general}")
    queue_member.append(f"1002@{config.queues.general}")
    sandbox_log = sandbox.root / "var/log/asterisk/messages.log"
    log_start = len(sandbox_log.read_text(encoding="utf-8", errors="replace"))
    async with running_engine(config, Bus(), agi_routes={}) as app:
        agent = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550125", digits="", talk_ms=9000),
            local_ip=PSTN,
            local_port=5273,
        )
        caller_rc = await asyncio.to_thread(caller.wait, 60)
        agent_rc = await asyncio.to_thread(agent.wait, 15)
        rejected = app[METRICS].registry.get_sample_value("callcenter_agi_rejected_total", {"reason": "route"})
    dialplan_log = sandbox_log.read_text(encoding="utf-8", errors="replace")[log_start:]
    assert rejected == 1
    assert "callcenter/apology" in dialplan_log, dialplan_log[-3000:]
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    assert agent_rc == 0, "the refused call never reached the agent:\n" + agent.output()[-2000:]
