"""The YAML flows through the real Asterisk: SIPp callers key RFC 4733 digits into the engine's IVR.

The flows' clock is set per test (``build_app(clock=...)``): a Monday 10:00 in the flows' time zone is open,
22:00 is after hours. Keys are timed from the prompts' real lengths (the WAVs the engine made with espeak-ng),
so each one lands while the prompt that listens for it plays.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import wave
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from sqlalchemy import select

from callcenter import dialplan
from callcenter.agi.protocol import build_command
from callcenter.agi.server import FastAgiServer
from callcenter.agi.session import AgiSession
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import Database
from callcenter.keys import AGI_SERVER, DATABASE, LIVE
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from crm_bridge.keys import CRM
from crm_bridge.models import Product
from crm_bridge.schemas import CustomerIn
from ivr_flows.engine import CallResult
from ivr_flows.events import IvrEnded, IvrStep
from ivr_flows.keys import FLOWS
from ivr_flows.ports import ShiftedClock
from ivr_flows.prompts import prompt_name, prompt_path
from ivr_flows.steps import Outcome
from recordings.events import RecordingStarted
from recordings.models import Recording
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, running_engine, wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
VIP = "5550001"


async def add_product(database: Database) -> None:
    """A product of the CRM's catalog that the test keys in (made once per test session's database)."""
    async with database.session() as session:
        if await session.scalar(select(Product).where(Product.code == "2718")) is None:
            session.add(
                Product(
                    code="2718",
                    name="Tide water purifier",
                    category="test",
                    price=Decimal("899.00"),
                    availability="in_stock",
                    description=None,
                    spoken_en="Five stage filter.",
                    spoken_zh=None,
                )
            )


# What the shipped main flow says for it (its product_info template).
INFO_TEXT = "Tide water purifier. Price: 899 yuan. In stock. Five stage filter."


def at_local(hour: int) -> datetime:
    """``hour``:00 in Shanghai on Monday 2026-11-23, a working day in the shipped schedule (09:00-18:00)."""
    return datetime(2026, 11, 23, hour, 0, tzinfo=SHANGHAI)


class Calls:
    """Wraps the engine's ivr route: every AGI command line it sends, and each call's result."""

    def __init__(self, app: web.Application) -> None:
        self.route = app[FLOWS].route
        self.commands: list[str] = []
        self.results: list[CallResult] = []
        server: FastAgiServer = app[AGI_SERVER]
        server.add_route(dialplan.ROUTE_IVR, self._serve)

    async def _serve(self, session: AgiSession) -> None:
        original = session.command

        async def command(verb: str, *args: str | int, timeout: float | None = None) -> Any:
            self.commands.append(build_command(verb, *args).rstrip("\n"))
            return await original(verb, *args, timeout=timeout)

        session.command = command  # type: ignore[method-assign]
        self.results.append(await self.route.run(session))


def seconds(app: web.Application, flow: str, prompt: str, lang: str = "en") -> float:
    """How long a text prompt of the running flows plays (its WAV, made when the engine started)."""
    route = app[FLOWS].route
    spoken = route.flows[flow].prompts[prompt].text(lang)
    assert spoken is not None
    sounds = route.sounds_dir
    assert sounds is not None
    return wav_seconds(prompt_path(sounds, prompt_name(prompt, lang, spoken[0], spoken[1])))


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def ms(value: float) -> int:
    return int(value * 1000)


def path_of(result: CallResult) -> list[tuple[str, str, str, str | None]]:
    return [(entry.flow, entry.node, entry.step, entry.result) for entry in result.path]


async def ready(app: web.Application) -> None:
    # The text prompts are made when the engine starts; the keys below are timed from their lengths.
    await app[FLOWS].wait_ready()


async def finished(calls: Calls, count: int = 1, timeout: float = 30) -> None:
    assert await wait_for(lambda: len(calls.results) >= count, timeout=timeout), calls.commands


async def test_a_product_code_keyed_in_is_looked_up_and_read_back(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    async with running_engine(config, bus, clock=ShiftedClock(at_local(10))) as app:
        await add_product(app[DATABASE])
        await ready(app)
        calls = Calls(app)
        route = app[FLOWS].route
        gap = seconds(app, "main", "invalid_choice") + 1.2
        welcome = seconds(app, "main", "welcome")
        # The read-out is made from the catalog's text when a caller asks; made here first to time the hangup.
        info = await route.prompts.text("product_info", "en", INFO_TEXT)
        assert route.sounds_dir is not None
        read_out = seconds(app, "main", "you_entered") + 4 * 0.8 + wav_seconds(prompt_path(route.sounds_dir, info))
        # 1 during the main menu (product guide); 9 during the guide, which it refuses (an invalid key: the
        # guide is played again after the apology); 1 (by code); then the code and '#'. The caller hangs up
        # three seconds into the menu that follows the read-out.
        script = CallerScript(
            caller_number="5550301",
            digits="1912718#",
            wait_before_digits_ms=ms(welcome + 1.2),
            gap_between_digits_ms=ms(gap),
            talk_ms=ms(read_out + 3.0),
        )
        caller = phones.call("caller", config.sip.dids[0], script, local_ip=PSTN, local_port=5280)
        caller_rc = await asyncio.to_thread(caller.wait, 90)
        await finished(calls)
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    (result,) = calls.results
    info = prompt_name("product_info", "en", INFO_TEXT)
    # The code reached the CRM's catalog exactly as keyed, once, and the product was found there.
    lookups = [(entry.result, entry.digits, entry.detail) for entry in result.path if entry.step == "lookup"]
    assert lookups == [("found", "2718", "Tide water purifier")], [(e.node, e.step, e.result) for e in result.path]
    guide = [(entry.result, entry.digits) for entry in result.path if entry.node == "product_guide"]
    assert guide == [("invalid", "9"), ("chosen", "1")]
    code = next(entry for entry in result.path if entry.step == "input")
    assert (code.result, code.digits) == ("accepted", "2718")
    # The commands, in order: the menus, GET DATA for up to 8 digits, the code read back digit by digit,
    # then the product's own read-out, a prompt made from the catalog's text for this call.
    listening = [line for line in calls.commands if line.startswith(("GET OPTION", "GET DATA", "SAY", "STREAM"))]
    expected_order = [
        'STREAM FILE "callcenter/flows/en/main_menu-',
        'GET OPTION "callcenter/flows/en/product_guide-',
        'STREAM FILE "callcenter/flows/en/invalid_choice-',
        'GET DATA "callcenter/flows/en/enter_code-',
        'STREAM FILE "callcenter/flows/en/you_entered-',
        'SAY DIGITS "2718" ""',
        f'STREAM FILE "{info}" ""',
        'GET OPTION "callcenter/flows/en/after_product-',
    ]
    positions = [next(i for i, line in enumerate(listening) if line.startswith(prefix)) for prefix in expected_order]
    assert positions == sorted(positions), listening
    assert next(line for line in listening if line.startswith("GET DATA")).endswith(" 8000 8")
    # The caller hung up while the after-product menu played: the path ends there.
    assert result.outcome is Outcome.HUNG_UP_IN_IVR
    assert path_of(result)[-1][:3] == ("main", "after_product", "menu")


async def test_a_vip_caller_reaches_the_general_queue_first_with_the_reason_attached(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str]
) -> None:
    bus = Bus()
    ended: list[IvrEnded] = []
    bus.subscribe(IvrEnded, ended.append)
    queue = config.queues.general
    async with running_engine(config, bus, clock=ShiftedClock(at_local(10))) as app:
        # The caller's number belongs to a VIP customer in the CRM.
        crm = app[CRM]
        if await crm.customers.best_tier(VIP) is None:
            customer = {"name": "Wang Wei", "tier": "vip", "phones": [{"number": VIP}]}
            await crm.customers.create(CustomerIn.model_validate(customer))
        await ready(app)
        calls = Calls(app)
        welcome = seconds(app, "main", "welcome")
        agent = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
        script = CallerScript(
            caller_number=VIP, digits="2", wait_before_digits_ms=ms(welcome + 1.2), talk_ms=ms(20 + welcome)
        )
        caller = phones.call("caller", config.sip.dids[0], script, local_ip=PSTN, local_port=5281)
        # Nobody staffs the queue yet (joinempty): the caller waits in it, where Asterisk shows the priority.
        entry: list[tuple[str, str]] = []

        def waiting() -> bool:
            listing = sandbox.cli(f"queue show {queue}").stdout
            entry[:] = re.findall(r"\d+\. (PJSIP/pstn-\S+) \(wait: [^,]+, prio: (\d+)\)", listing)
            return bool(entry)

        assert await wait_for(waiting, timeout=40), calls.commands
        channel, priority = entry[0]
        caller_variables = sandbox.cli(f"core show channel {channel}").stdout
        # Now the agent's phone joins, the queue rings it, and the reason rides along to the agent's channel.
        sandbox.cli(f"queue add member PJSIP/1001 to {queue}")
        queue_member.append(f"1001@{queue}")
        agent_variables: list[str] = []

        def agent_leg() -> bool:
            legs = [
                line.split("!")[0]
                for line in sandbox.cli("core show channels concise").stdout.splitlines()
                if line.startswith("PJSIP/1001-")
            ]
            if legs:
                agent_variables[:] = [sandbox.cli(f"core show channel {legs[0]}").stdout]
            return bool(legs)

        assert await wait_for(agent_leg, timeout=20)
        caller_rc = await asyncio.to_thread(caller.wait, 90)
        agent_rc = await asyncio.to_thread(agent.wait, 20)
        await bus.drain()
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    assert agent_rc == 0, agent.output()[-2000:] + agent.errors()
    assert priority == "10"
    assert "CC_REASON=fault_consultation" in caller_variables, caller_variables
    assert "CC_REASON=fault_consultation" in agent_variables[0], agent_variables[0]
    (result,) = calls.results
    assert (result.outcome, result.queue, result.priority, result.choice) == (
        Outcome.QUEUED,
        queue,
        10,
        "fault_consultation",
    )
    assert calls.commands[-5:] == [
        f'SET VARIABLE "{dialplan.VAR_QUEUE}" "{queue}"',
        f'SET VARIABLE "{dialplan.VAR_PRIORITY}" "10"',
        f'SET VARIABLE "{dialplan.VAR_IVR_CHOICE}" "fault_consultation"',
        f'SET VARIABLE "{dialplan.inherited(dialplan.VAR_REASON)}" "fault_consultation"',
        f'SET VARIABLE "{dialplan.VAR_ACTION}" "{dialplan.ACTION_QUEUE}"',
    ]
    (event,) = ended
    assert (event.outcome, event.queue, event.priority, event.choice) == (
        "queued",
        queue,
        10,
        "fault_consultation",
    )


def rms_amplitude(path: Path) -> float:
    """sox's RMS amplitude of the whole file (0 is digital silence)."""
    stat = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True, timeout=30)
    match = re.search(r"RMS\s+amplitude:\s+([0-9.]+)", stat.stderr)
    assert match is not None, stat.stderr
    return float(match.group(1))


async def test_an_after_hours_caller_leaves_a_complaint_that_is_kept_with_its_audio(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    # The engine's own adapters: Asterisk records into <recordings>/voicemail, the CRM files the message.
    async with running_engine(config, bus, clock=ShiftedClock(at_local(22))) as app:
        await ready(app)
        calls = Calls(app)
        closed = seconds(app, "after_hours", "closed")
        before_beep = seconds(app, "after_hours", "leave_complaint")
        # 1 during the closed menu; the speech starts after the prompt and the beep; the caller hangs up while
        # still on the line after speaking, so the message ends with the hangup and keeps what was said.
        script = CallerScript(
            caller_number="5550302",
            digits="1",
            wait_before_digits_ms=ms(closed + 1.5),
            speech=True,
            pause_before_speech_ms=ms(before_beep + 1.5),
            talk_ms=9000,
        )
        caller = phones.call("caller", config.sip.dids[0], script, local_ip=PSTN, local_port=5282)
        caller_rc = await asyncio.to_thread(caller.wait, 90)
        await finished(calls)
        (result,) = calls.results
        (message,) = result.voicemails
        record = await app[CRM].records.by_key(f"ivr-voicemail:{message.path.stem}")
        async with app[DATABASE].session() as session:
            indexed = await session.scalar(select(Recording).where(Recording.id == message.path.stem))
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    assert result.outcome is Outcome.VOICEMAIL
    assert result.flow == "main"
    assert [entry.flow for entry in result.path][-1] == "after_hours"
    # Filed in the CRM: a new complaint record from the caller's number, naming the message.
    assert record is not None
    assert (record.type, record.status, record.linkedid) == ("complaint", "new", message.linkedid)
    assert record.caller_number == "5550302"
    assert message.path.name in record.content
    # Stored in the recordings store as a voicemail, and indexed with its intent, number, time and duration.
    assert message.path.is_relative_to(config.recordings_dir / "voicemail")
    assert indexed is not None
    assert (indexed.kind, indexed.status, indexed.intent, indexed.caller_number) == (
        "voicemail",
        "complete",
        "complaint",
        "5550302",
    )
    assert indexed.started_at == message.recorded_at
    assert indexed.service_record_id == record.id
    assert indexed.duration is not None
    assert (message.intent, message.caller_number, message.flow) == ("complaint", "5550302", "after_hours")
    assert message.recorded_at.astimezone(SHANGHAI).hour == 22
    command = next(line for line in calls.commands if line.startswith("RECORD FILE"))
    assert command.startswith(f'RECORD FILE "{message.path.with_suffix("")}" "wav" "#" 180000')
    assert message.path.is_file(), f"{message.path} missing; {command}"
    audio_seconds = wav_seconds(message.path)
    assert 3.0 < audio_seconds < 30.0
    assert abs(audio_seconds - message.duration) < 1.5
    assert indexed.duration == pytest.approx(audio_seconds, abs=0.01)
    # Not silence: the caller's recorded speech (sip-tester's g711a capture) is in the file.
    assert rms_amplitude(message.path) > 0.01


async def test_a_complaint_in_open_hours_is_recorded_from_the_start(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    started: list[RecordingStarted] = []
    bus.subscribe(RecordingStarted, started.append)
    async with running_engine(config, bus, clock=ShiftedClock(at_local(10))) as app:
        live = app[LIVE]
        # The recording starts on the caller's channel, which the engine finds in its live model.
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=15)
        await ready(app)
        calls = Calls(app)
        welcome = seconds(app, "main", "welcome")
        # 6 (complaint) in the main menu; the caller then talks while waiting in the (unstaffed) queue.
        script = CallerScript(
            caller_number="5550304",
            digits="6",
            wait_before_digits_ms=ms(welcome + 1.2),
            speech=True,
            pause_before_speech_ms=500,
            talk_ms=10_000,
        )
        caller = phones.call("caller", config.sip.dids[0], script, local_ip=PSTN, local_port=5284)
        caller_rc = await asyncio.to_thread(caller.wait, 60)
        await finished(calls)
        (result,) = calls.results
        assert await wait_for(lambda: bool(started), timeout=10), [e.step for e in result.path]
        recording_id = started[0].id

        async def row() -> Recording | None:
            async with app[DATABASE].session() as session:
                found: Recording | None = await session.scalar(select(Recording).where(Recording.id == recording_id))
            return found

        # The call's end closes the recording (Asterisk writes the file until the hangup).
        deadline = asyncio.get_running_loop().time() + 15
        indexed = await row()
        while (indexed is None or indexed.status == "recording") and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            indexed = await row()
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    steps = [(entry.node, entry.step, entry.result) for entry in result.path]
    assert ("complaint", "record", "started") in steps
    assert (result.outcome, result.choice) == (Outcome.QUEUED, "complaint")
    assert indexed is not None
    assert (indexed.kind, indexed.status, indexed.linkedid) == ("on_demand", "complete", result.linkedid)
    assert indexed.description == "complaint"
    path = config.recordings_dir / indexed.file_path
    assert wav_seconds(path) > 3.0
    assert rms_amplitude(path) > 0.01


async def test_a_caller_who_hangs_up_mid_menu_leaves_a_complete_path_ending_there(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    steps: list[IvrStep] = []
    ended: list[IvrEnded] = []
    bus.subscribe(IvrStep, steps.append)
    bus.subscribe(IvrEnded, ended.append)
    async with running_engine(config, bus, clock=ShiftedClock(at_local(10))) as app:
        await ready(app)
        calls = Calls(app)
        welcome = seconds(app, "main", "welcome")
        # No key at all: the caller hangs up three seconds into the main menu.
        script = CallerScript(caller_number="5550303", digits="", wait_before_digits_ms=0, talk_ms=ms(welcome + 3))
        caller = phones.call("caller", config.sip.dids[0], script, local_ip=PSTN, local_port=5283)
        caller_rc = await asyncio.to_thread(caller.wait, 60)
        await finished(calls)
        await bus.drain()
    assert caller_rc == 0, caller.output()[-2000:] + caller.errors()
    (result,) = calls.results
    assert result.outcome is Outcome.HUNG_UP_IN_IVR
    assert path_of(result) == [
        ("main", "entry", "hours", "open"),
        # The welcome node's closing goto is how the node ends, not a step of the caller's.
        ("main", "welcome", "play", None),
        ("main", "main_menu", "menu", "caller_hangup"),
    ]
    # Every step was published as it happened, and the call's end carries the same path.
    (event,) = ended
    assert event.outcome == "hung_up_in_ivr"
    assert [step.node for step in steps] == [entry.node for entry in result.path]
    assert event.path == [entry.as_dict() for entry in result.path]
    times = [entry.wall for entry in result.path]
    assert times == sorted(times)
    assert result.ended_at >= times[-1]
    # The hangup came while the menu prompt played: no answer was sent to the dialplan.
    assert not any(line.startswith('SET VARIABLE "CC_ACTION"') for line in calls.commands)
    media = [line for line in calls.commands if not line.startswith("CHANNEL STATUS")]
    assert media[-1].startswith('STREAM FILE "callcenter/flows/en/main_menu-')
