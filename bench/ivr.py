"""Flow engine benchmark: the engine's own cost per step against a hand-written AGI coroutine.

Every arm serves the same calls through the same AgiSession and the same fake Asterisk. Before timing, the bench
checks that they do the same work and refuses to run otherwise: every arm sends the very same AGI command lines,
and the hand-written call leaves the engine's events (``IvrStarted``, and ``IvrEnded`` with the whole path),
compared without their clock readings.

- ``engine``: the shipped flows run by ``ivr_flows.route.FlowRoute`` (the FastAGI ``ivr`` route of the engine),
  with its path tracing, ``ivr_flows.events``, prompt naming, business hours and ports;
- ``hand``: one coroutine per call type written directly against ``AgiSession``, with the engine's output: the
  path kept as it goes (one dict per step, the same fields and words) and the same two events; the prompt names
  worked out once up front, the same business-hours check, catalog, directory, voicemail sink and text-prompt
  maker, the caller ID cleaned as the engine cleans it;
- ``observed``: the engine again, with a listener on every bus event, so that it also builds the per-step
  ``IvrStep`` and ``IvrChoice`` events (nothing in the engine listens to those by default);
- ``bare``: the hand-written calls with the least output (the same commands, no path, two short events): not
  the same work, a floor beside the others.

On every bus the call recorder's own ``IvrEnded`` handler listens (``calls.CallRecorder``, made but
not started: it keeps each call's IVR data by linkedid, as in the engine).

The fake Asterisk lives in this process and answers every command line at once, as res_agi would for a caller
who presses the scripted keys without delay. Two ways to reach it, both run:

- ``direct``: the engine's real ``AgiConnection`` protocol on a fake transport. No socket: this is only CPU in
  Python, the harshest view of the engine's cost (nothing else dilutes it).
- ``wire``: the real ``FastAgiServer`` on a loopback TCP socket, the fake Asterisk connecting to it like
  res_agi. The CPU the fake Asterisk spends in its own callbacks is measured and taken out, so what remains is
  the engine process's cost of serving the call, as deployed (on uvloop, ``callcenter.runtime``).

Costs are CPU time (``time.process_time``), not wall time, so other load on the machine disturbs them less.
Arms alternate in small batches over many rounds; in a process each figure is the least over the rounds (other
load on the machine only ever adds time). Several processes run one after the other (this script again, with
``--worker``): each has its own hash seed and memory layout, which on their own move a process's figures by a
few percent either way, so the overhead reported is the median of the processes' own overheads (each the ratio
of arms measured side by side in one process).

Usage: ``.venv/bin/python bench/ivr.py [--quick] [--json PATH]``. The last line is ``engine_overhead_pct=X``:
the engine's extra CPU per call over the hand-written coroutine's, in percent, for the wire setup; the line
before it is the same against the bare calls (see docs/benchmarks.md, "Benchmarks: the flow engine").
``bench/ivr_opcodes.py`` counts the bytecodes of one call per function, which the load does not move.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402

from callcenter import dialplan  # noqa: E402
from callcenter.agi.connection import AgiConnection  # noqa: E402
from callcenter.agi.exceptions import AgiError  # noqa: E402
from callcenter.agi.protocol import AgiEnvironment  # noqa: E402
from callcenter.agi.server import FastAgiServer, ServerLimits  # noqa: E402
from callcenter.agi.session import AgiSession  # noqa: E402
from callcenter.bus import Bus, event_fields  # noqa: E402
from callcenter.db import Database  # noqa: E402
from callcenter.model import LiveModel  # noqa: E402
from calls.service import CallRecorder  # noqa: E402
from ivr_flows.events import IvrEnded, IvrStarted  # noqa: E402
from ivr_flows.ports import (  # noqa: E402
    FlowPorts,
    InMemoryCatalog,
    InMemoryVoicemailSink,
    ShiftedClock,
    VoicemailMessage,
    in_memory_ports,
)
from ivr_flows.prompts import TtsPrompts, prompt_name  # noqa: E402
from ivr_flows.route import SHIPPED_FLOWS, FlowRoute  # noqa: E402
from ivr_flows.schema import MENU_DIGITS, Flow, FlowSet  # noqa: E402
from ivr_flows.steps import Outcome, caller_number, clip_detail, db_text, evaluate_hours, money_text  # noqa: E402
from ivr_flows.validator import load_flows  # noqa: E402

HOST = "127.0.0.1"
ZONE = ZoneInfo("Asia/Shanghai")
QUEUES = {"general": "support", "expert": "expert"}
CALLER = "5551234"
DID = "4000"
# Where RECORD FILE stops: 8 seconds of 8 kHz audio, then the caller's '#'.
RECORD_ENDPOS = 64000
MODES = ("direct", "wire")
ARMS = ("hand", "engine", "observed", "bare")


@dataclass(frozen=True)
class Plan:
    # Measuring processes, one after the other: each has its own hash seed and memory layout, which move a
    # process's figures by a few percent either way (as pyperf's workers do, for the same reason).
    processes: int
    rounds: int
    batch: int
    warmup: int


QUICK = Plan(processes=3, rounds=15, batch=40, warmup=100)
FULL = Plan(processes=5, rounds=31, batch=60, warmup=300)


# --------------------------------------------------------------------------------------------------------
# The fake Asterisk
# --------------------------------------------------------------------------------------------------------


def header(uniqueid: str) -> bytes:
    """The agi_* block res_agi sends first (the fields the engine reads, as the dialplan sets them)."""
    values = {
        "agi_network": "yes",
        "agi_network_script": f"ivr?linkedid={uniqueid}&did={DID}",
        "agi_request": f"agi://{HOST}/ivr?linkedid={uniqueid}&did={DID}",
        "agi_channel": "PJSIP/pstn-00000001",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.0.0",
        "agi_callerid": CALLER,
        "agi_calleridname": "Bench Caller",
        "agi_callingpres": "0",
        "agi_dnid": DID,
        "agi_rdnis": "unknown",
        "agi_context": "cc-inbound",
        "agi_extension": "s",
        "agi_priority": "3",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
    }
    return ("".join(f"{key}: {value}\n" for key, value in values.items()) + "\n").encode()


class FakeAsterisk:
    """Answers one call's command lines like res_agi, pressing the scripted keys when the call listens."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = deque(keys)
        self.commands: list[str] = []
        self.record = False

    def reply(self, line: str) -> str:
        if self.record:
            self.commands.append(line)
        verb = line[: line.find(" ")] if " " in line else line
        if verb == "GET":
            if line.startswith("GET OPTION"):
                return f"200 result={ord(self._keys.popleft())} endpos=8000"
            if line.startswith("GET DATA"):
                return f"200 result={self._keys.popleft()}"
            return "200 result=0"
        if verb == "STREAM" or verb == "SAY":
            return "200 result=0 endpos=16000"
        if verb == "SET":
            return "200 result=1"
        if verb == "RECORD":
            return f"200 result={ord('#')} (dtmf) endpos={RECORD_ENDPOS}"
        return "200 result=0"


class FakeTransport:
    """A transport whose far end is the fake Asterisk: each command line is answered before write() returns."""

    def __init__(self, asterisk: FakeAsterisk) -> None:
        self._asterisk = asterisk
        self.protocol: AgiConnection | None = None
        self._closing = False

    def write(self, data: bytes) -> None:
        assert self.protocol is not None
        for line in data.decode().splitlines():
            self.protocol.data_received((self._asterisk.reply(line) + "\n").encode())

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            if self.protocol is not None:
                self.protocol.connection_lost(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Owner:
    """What AgiConnection reports to (the server's role): admits it and keeps the parsed header."""

    def __init__(self) -> None:
        self.env: AgiEnvironment | None = None

    def connection_admitted(self, connection: AgiConnection) -> bool:
        return True

    def header_ready(self, connection: AgiConnection, env: AgiEnvironment) -> None:
        self.env = env

    def header_failed(self, connection: AgiConnection, error: AgiError) -> None:
        raise RuntimeError(f"fake header refused: {error}")


Handler = Callable[[AgiSession], Awaitable[Any]]


async def call_direct(handler: Handler, asterisk: FakeAsterisk, uniqueid: str) -> None:
    owner = _Owner()
    connection = AgiConnection(owner, header_timeout=5.0, max_header_lines=200, max_line=8192)
    transport = FakeTransport(asterisk)
    transport.protocol = connection
    connection.connection_made(cast(asyncio.BaseTransport, transport))
    connection.data_received(header(uniqueid))
    assert owner.env is not None
    try:
        await handler(AgiSession(owner.env, connection))
    finally:
        transport.close()


class _Peer(asyncio.Protocol):
    """The fake Asterisk on a socket; the CPU it spends in its own callbacks is added to ``spent``."""

    def __init__(self, asterisk: FakeAsterisk, uniqueid: str, done: asyncio.Future[None], spent: list[float]):
        self._asterisk = asterisk
        self._uniqueid = uniqueid
        self._done = done
        self._spent = spent
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        started = time.thread_time()
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(header(self._uniqueid))
        self._spent[0] += time.thread_time() - started

    def data_received(self, data: bytes) -> None:
        started = time.thread_time()
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        assert self._transport is not None
        for line in lines:
            self._transport.write((self._asterisk.reply(line.decode()) + "\n").encode())
        self._spent[0] += time.thread_time() - started

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def call_wire(port: int, asterisk: FakeAsterisk, uniqueid: str, spent: list[float]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    started = time.thread_time()
    transport, _ = await loop.create_connection(lambda: _Peer(asterisk, uniqueid, done, spent), HOST, port)
    spent[0] += time.thread_time() - started
    await done
    transport.close()


# --------------------------------------------------------------------------------------------------------
# The calls, and the hand-written coroutines that make them
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    at: datetime
    keys: tuple[str, ...]
    outcome: Outcome


PRODUCT = Scenario(
    "product_then_agent",
    "open hours: product guide, code 1001 read back, then an agent",
    datetime(2026, 11, 23, 10, 0, tzinfo=ZONE),
    ("1", "1", "1001", "0"),
    Outcome.QUEUED,
)
COMPLAINT = Scenario(
    "after_hours_complaint",
    "22:00: closed message, complaint left as voicemail",
    datetime(2026, 11, 23, 22, 0, tzinfo=ZONE),
    ("1",),
    Outcome.VOICEMAIL,
)
SCENARIOS = (PRODUCT, COMPLAINT)


def _name(flow: Flow, slug: str) -> str:
    spoken = flow.prompts[slug].text(flow.language)
    assert spoken is not None
    return prompt_name(slug, flow.language, spoken[0], spoken[1])


@dataclass
class Kit:
    """Everything both arms share for one scenario: the flows, ports, clock, prompt maker and bus."""

    flows: FlowSet
    ports: FlowPorts
    clock: ShiftedClock
    prompts: TtsPrompts
    bus: Bus
    route: FlowRoute
    # The same engine with a listener on every event (as a live view of each step would be), and its bus.
    observed: FlowRoute
    observed_bus: Bus

    def reset(self) -> None:
        catalog = self.ports.catalog
        if isinstance(catalog, InMemoryCatalog):
            catalog.lookups.clear()
        sink = self.ports.voicemail
        if isinstance(sink, InMemoryVoicemailSink):
            sink.messages.clear()


def make_kit(scenario: Scenario, sounds: Path) -> Kit:
    flows = load_flows(SHIPPED_FLOWS, entry="main")
    ports = in_memory_ports(voicemail_dir=sounds / "voicemail")
    # Real time moved to the scenario's time of day, as the integration tests run it.
    clock = ShiftedClock(scenario.at)
    # As in the engine: the call recorder listens to IvrEnded (calls), nobody to each step. Its own
    # handler does here what it does there: keeps the IVR's data by linkedid until the call's record is written.
    bus = Bus()
    bus.subscribe(IvrEnded, _recorder(bus, sounds)._on_ivr)
    observed_bus = Bus()
    observed_bus.subscribe(IvrEnded, _recorder(observed_bus, sounds)._on_ivr)
    observed_bus.subscribe_all(_listener)
    # The engine's own prompt maker; nothing is synthesized (every name is made once, then remembered).
    prompts = TtsPrompts(sounds, synthesizer=lambda text, voice, target: False)
    route = FlowRoute(flows, ports=ports, bus=bus, prompts=prompts, queues=QUEUES, clock=clock, entry="main")
    observed = FlowRoute(
        flows, ports=ports, bus=observed_bus, prompts=prompts, queues=QUEUES, clock=clock, entry="main"
    )
    return Kit(flows, ports, clock, prompts, bus, route, observed, observed_bus)


def _recorder(bus: Bus, sounds: Path) -> CallRecorder:
    """The engine's call recorder, made but not started: no database is reached, its IvrEnded handler is real."""
    return CallRecorder(
        cast(Database, None), bus, LiveModel, cel_log=sounds / "cel" / "Master.csv", expert_queue=QUEUES["expert"]
    )


def _listener(event: object) -> None:
    return None


class HandCall:
    """What a hand-written IVR keeps of one call, written once for both calls: the call's ids and cleaned caller
    ID, ``IvrStarted``, the path (one dict per step, the engine's fields) and ``IvrEnded``."""

    __slots__ = ("bus", "caller", "did", "linkedid", "monotonic", "origin", "path", "start", "started", "uniqueid")

    def __init__(self, session: AgiSession, clock: ShiftedClock, bus: Bus) -> None:
        env = session.env
        params = env.params
        self.bus = bus
        self.uniqueid = session.uniqueid
        self.linkedid = params.get("linkedid") or self.uniqueid
        self.did = params.get("did", env.extension)
        # The caller ID as the product keeps it (hostile text: cleaned and bounded), read from the call.
        self.caller = caller_number(env.callerid)
        self.monotonic = clock.monotonic
        self.start = clock.now().timestamp()
        self.started = self.monotonic()
        self.origin = self.start - self.started
        self.path: list[dict[str, Any]] = []
        bus.publish(
            IvrStarted(
                uniqueid=self.uniqueid,
                linkedid=self.linkedid,
                caller_number=env.callerid,
                caller_name=env.calleridname,
                did=self.did,
                flow="main",
                language="en",
                at=self.start,
            )
        )

    def step(
        self, flow: str, node: str, kind: str, index: int, result: str | None, digits: str | None, detail: str | None
    ) -> None:
        now = self.monotonic()
        self.path.append(
            {
                "flow": flow,
                "node": node,
                "step": kind,
                "index": index,
                "digits": digits,
                "result": result,
                "detail": detail,
                "monotonic": now,
                "at": self.origin + now,
            }
        )

    def end(
        self,
        outcome: str,
        *,
        queue: str | None = None,
        priority: int | None = None,
        choice: str | None = None,
        voicemails: list[dict[str, Any]] | None = None,
    ) -> None:
        ended = self.monotonic()
        self.bus.publish(
            IvrEnded(
                uniqueid=self.uniqueid,
                linkedid=self.linkedid,
                caller_number=self.caller,
                flow="main",
                outcome=outcome,
                path=self.path,
                language="en",
                queue=queue,
                priority=priority,
                choice=choice,
                voicemails=voicemails or [],
                started_at=self.start,
                ended_at=self.origin + ended,
                duration=ended - self.started,
                error=None,
            )
        )


def hand_product(kit: Kit) -> Handler:
    """The product call written by hand with the engine's output: the same commands, the same path entries (one
    dict per step, the same fields and words) and the same ``IvrStarted``/``IvrEnded`` events."""
    main = kit.flows["main"]
    names = {
        slug: _name(main, slug)
        for slug in (
            "welcome",
            "main_menu",
            "language_offer",
            "product_guide",
            "enter_code",
            "you_entered",
            "after_product",
            "connecting_agent",
            "invalid_choice",
            "no_input",
            "code_invalid",
        )
    }
    keys = {node: frozenset(main.nodes[node][0].options) for node in ("main_menu", "product_guide", "after_product")}
    schedule = main.schedules["business"]
    zone = main.zone(schedule)
    found = main.prompts["product_info"].text("en")
    assert found is not None
    template = found[0]
    words = {"in_stock": "In stock.", "out_of_stock": "Currently out of stock.", "discontinued": "No longer sold."}
    code_pattern = re.compile(r"[0-9]{4,8}")
    catalog, directory, clock, bus, prompts = kit.ports.catalog, kit.ports.directory, kit.clock, kit.bus, kit.prompts

    async def call(session: AgiSession) -> None:
        record = HandCall(session, clock, bus)
        step = record.step
        await session.answer()
        if evaluate_hours(schedule, clock.now(), zone) != "open":
            raise RuntimeError("the scenario runs in open hours")
        step("main", "entry", "hours", 0, "open", None, "welcome")
        await session.stream_file(names["welcome"], "")
        step("main", "welcome", "play", 0, None, None, "welcome")
        # Each menu asks up to three times, as the flow's do (the scenario's keys are right the first time).
        for _attempt in range(3):
            key = (await session.stream_file(names["main_menu"], MENU_DIGITS)).digit
            key = key or (await session.get_option(names["language_offer"], MENU_DIGITS, 5000)).digit
            if key in keys["main_menu"]:
                break
            await session.stream_file(names["invalid_choice" if key else "no_input"], "")
        if key != "1":
            raise RuntimeError(f"the scenario takes the product guide, not {key!r}")
        step("main", "main_menu", "menu", 0, "chosen", key, "product_guide")
        for _attempt in range(3):
            key = (await session.get_option(names["product_guide"], MENU_DIGITS, 5000)).digit
            if key in keys["product_guide"]:
                break
            await session.stream_file(names["invalid_choice" if key else "no_input"], "")
        if key != "1":
            raise RuntimeError(f"the scenario asks for product information, not {key!r}")
        step("main", "product_guide", "menu", 0, "chosen", key, "product_code")
        for _attempt in range(3):
            code = (await session.get_data(names["enter_code"], 8000, 8)).digits
            if code_pattern.fullmatch(code) is not None:
                break
            await session.stream_file(names["code_invalid" if code else "no_input"], "")
        else:
            raise RuntimeError(f"the scenario types a product code, not {code!r}")
        step("main", "product_code", "input", 0, "accepted", code, None)
        await session.stream_file(names["you_entered"], "")
        step("main", "product_code", "play", 1, None, None, "you_entered")
        await session.say_digits(code)
        step("main", "product_code", "say", 2, "digits", None, code)
        product = await catalog.find(code)
        if product is None:
            raise RuntimeError("the scenario's product is in the catalog")
        # The catalog's text is spoken, never interpreted, and kept on the path cleaned (as the engine does).
        text = template.format(
            name=db_text(product.name),
            price=money_text(product.price, "CNY", "en"),
            availability=words[product.availability],
            spoken=db_text(product.spoken.get("en", "")),
        )
        await session.stream_file(await prompts.text("product_info", "en", text), "")
        step("main", "product_code", "lookup", 3, "found", code, clip_detail(product.name))
        for _attempt in range(3):
            key = (await session.get_option(names["after_product"], MENU_DIGITS, 5000)).digit
            if key in keys["after_product"]:
                break
            await session.stream_file(names["invalid_choice" if key else "no_input"], "")
        if key != "0":
            raise RuntimeError(f"the scenario ends at an agent, not {key!r}")
        step("main", "after_product", "menu", 0, "chosen", key, "agent")
        await session.stream_file(names["connecting_agent"], "")
        step("main", "agent", "play", 0, None, None, "connecting_agent")
        tier = await directory.tier(record.caller)
        priority = main.priorities.get(tier, main.default_priority) if tier else main.default_priority
        queue = QUEUES["general"]
        # The tier is the CRM's text.
        detail = f"{queue} priority={priority} tier={tier or '-'} reason=agent"
        step("main", "agent", "queue", 1, "queued", None, clip_detail(detail) if tier else detail)
        await session.set_variable(dialplan.VAR_QUEUE, queue)
        await session.set_variable(dialplan.VAR_PRIORITY, str(priority))
        await session.set_variable(dialplan.VAR_IVR_CHOICE, "agent")
        await session.set_variable(dialplan.inherited(dialplan.VAR_REASON), "agent")
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_QUEUE)
        record.end("queued", queue=queue, priority=priority, choice="agent")

    return call


def hand_complaint(kit: Kit) -> Handler:
    """The complaint call written by hand with the engine's output (see :func:`hand_product`)."""
    main, closed = kit.flows["main"], kit.flows["after_hours"]
    schedule = main.schedules["business"]
    zone = main.zone(schedule)
    names = {slug: _name(closed, slug) for slug in ("closed", "closed_menu", "language_offer", "leave_complaint")}
    names.update((slug, _name(closed, slug)) for slug in ("message_saved", "invalid_choice", "no_input"))
    menu_keys = frozenset(closed.nodes["closed_menu"][0].options)
    sink, clock, bus = kit.ports.voicemail, kit.clock, kit.bus

    async def call(session: AgiSession) -> None:
        record = HandCall(session, clock, bus)
        step = record.step
        await session.answer()
        if evaluate_hours(schedule, clock.now(), zone) != "closed":
            raise RuntimeError("the scenario runs after hours")
        step("main", "entry", "hours", 0, "closed", None, "flow:after_hours")
        await session.stream_file(names["closed"], "")
        step("after_hours", "closed", "play", 0, None, None, "closed")
        for _attempt in range(3):
            key = (await session.stream_file(names["closed_menu"], MENU_DIGITS)).digit
            key = key or (await session.get_option(names["language_offer"], MENU_DIGITS, 6000)).digit
            if key in menu_keys:
                break
            await session.stream_file(names["invalid_choice" if key else "no_input"], "")
        if key != "1":
            raise RuntimeError(f"the scenario leaves a complaint, not {key!r}")
        step("after_hours", "closed_menu", "menu", 0, "chosen", key, "complaint")
        await session.stream_file(names["leave_complaint"], "")
        target = await sink.allocate(uniqueid=record.uniqueid, intent="complaint")
        recorded_at = clock.now()
        result = await session.record_file(target.record_as, target.fmt, "#", 180_000, beep=True, silence_seconds=5)
        seconds = round((result.endpos or 0) / 8000, 3)
        message = VoicemailMessage(
            intent="complaint",
            caller_number=record.caller,
            path=target.path,
            duration=seconds,
            uniqueid=record.uniqueid,
            linkedid=record.linkedid,
            recorded_at=recorded_at,
            language="en",
            flow="after_hours",
            ended_by=result.reason,
            did=record.did,
        )
        await sink.store(message)
        step(
            "after_hours",
            "complaint",
            "voicemail",
            0,
            "recorded",
            result.digit,
            clip_detail(f"complaint {seconds}s ended_by={result.reason}"),
        )
        await session.stream_file(names["message_saved"], "")
        step("after_hours", "complaint", "play", 1, None, None, "message_saved")
        step("after_hours", "complaint", "hangup", 2, None, None, None)
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_HANGUP)
        voicemail = {"intent": "complaint", "path": str(message.path), "duration": seconds, "ended_by": result.reason}
        record.end("voicemail", voicemails=[voicemail])

    return call


def bare_product(kit: Kit) -> Handler:
    """The product call by hand with the least output: the same commands, no path, two short events."""
    main = kit.flows["main"]
    names = {
        slug: _name(main, slug)
        for slug in (
            "welcome",
            "main_menu",
            "language_offer",
            "product_guide",
            "enter_code",
            "you_entered",
            "after_product",
            "connecting_agent",
        )
    }
    schedule = main.schedules["business"]
    zone = main.zone(schedule)
    found = main.prompts["product_info"].text("en")
    assert found is not None
    template = found[0]
    words = {"in_stock": "In stock.", "out_of_stock": "Currently out of stock.", "discontinued": "No longer sold."}
    catalog, directory, clock, bus, prompts = kit.ports.catalog, kit.ports.directory, kit.clock, kit.bus, kit.prompts

    async def call(session: AgiSession) -> None:
        uniqueid, linkedid = session.uniqueid, session.linkedid
        bus.publish(
            IvrStarted(
                uniqueid=uniqueid,
                linkedid=linkedid,
                caller_number=session.env.callerid,
                caller_name="",
                did=DID,
                flow="main",
                language="en",
                at=0.0,
            )
        )
        await session.answer()
        if evaluate_hours(schedule, clock.now(), zone) != "open":
            raise RuntimeError("the scenario runs in open hours")
        await session.stream_file(names["welcome"], "")
        key = (await session.stream_file(names["main_menu"], MENU_DIGITS)).digit
        key = key or (await session.get_option(names["language_offer"], MENU_DIGITS, 5000)).digit
        if key == "1":
            key = (await session.get_option(names["product_guide"], MENU_DIGITS, 5000)).digit
            if key == "1":
                code = (await session.get_data(names["enter_code"], 8000, 8)).digits
                await session.stream_file(names["you_entered"], "")
                await session.say_digits(code)
                product = await catalog.find(code)
                if product is None:
                    raise RuntimeError("the scenario's product is in the catalog")
                text = template.format(
                    name=product.name,
                    price=money_text(product.price, "CNY", "en"),
                    availability=words[product.availability],
                    spoken=product.spoken.get("en", ""),
                )
                await session.stream_file(await prompts.text("product_info", "en", text), "")
                key = (await session.get_option(names["after_product"], MENU_DIGITS, 5000)).digit
        if key != "0":
            raise RuntimeError(f"the scenario ends at an agent, not {key!r}")
        await session.stream_file(names["connecting_agent"], "")
        tier = await directory.tier(CALLER)
        priority = main.priorities.get(tier, main.default_priority) if tier else main.default_priority
        await session.set_variable(dialplan.VAR_QUEUE, QUEUES["general"])
        await session.set_variable(dialplan.VAR_PRIORITY, str(priority))
        await session.set_variable(dialplan.VAR_IVR_CHOICE, "agent")
        await session.set_variable(dialplan.inherited(dialplan.VAR_REASON), "agent")
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_QUEUE)
        bus.publish(
            IvrEnded(
                uniqueid=uniqueid,
                linkedid=linkedid,
                caller_number=CALLER,
                flow="main",
                outcome="queued",
                path=[],
                language="en",
                queue=QUEUES["general"],
                priority=priority,
                choice="agent",
                voicemails=[],
                started_at=0.0,
                ended_at=0.0,
                duration=0.0,
                error=None,
            )
        )

    return call


def bare_complaint(kit: Kit) -> Handler:
    """The complaint call by hand with the least output (see :func:`bare_product`)."""
    main, closed = kit.flows["main"], kit.flows["after_hours"]
    schedule = main.schedules["business"]
    zone = main.zone(schedule)
    names = {slug: _name(closed, slug) for slug in ("closed", "closed_menu", "language_offer", "leave_complaint")}
    names["message_saved"] = _name(closed, "message_saved")
    sink, clock, bus = kit.ports.voicemail, kit.clock, kit.bus

    async def call(session: AgiSession) -> None:
        uniqueid, linkedid = session.uniqueid, session.linkedid
        bus.publish(
            IvrStarted(
                uniqueid=uniqueid,
                linkedid=linkedid,
                caller_number=session.env.callerid,
                caller_name="",
                did=DID,
                flow="main",
                language="en",
                at=0.0,
            )
        )
        await session.answer()
        if evaluate_hours(schedule, clock.now(), zone) != "closed":
            raise RuntimeError("the scenario runs after hours")
        await session.stream_file(names["closed"], "")
        key = (await session.stream_file(names["closed_menu"], MENU_DIGITS)).digit
        key = key or (await session.get_option(names["language_offer"], MENU_DIGITS, 6000)).digit
        if key != "1":
            raise RuntimeError(f"the scenario leaves a complaint, not {key!r}")
        await session.stream_file(names["leave_complaint"], "")
        target = await sink.allocate(uniqueid=uniqueid, intent="complaint")
        result = await session.record_file(target.record_as, target.fmt, "#", 180_000, beep=True, silence_seconds=5)
        seconds = (result.endpos or 0) / 8000
        await sink.store(
            VoicemailMessage(
                intent="complaint",
                caller_number=CALLER,
                path=target.path,
                duration=seconds,
                uniqueid=uniqueid,
                linkedid=linkedid,
                recorded_at=clock.now(),
                language="en",
                flow="after_hours",
                ended_by=result.reason,
            )
        )
        await session.stream_file(names["message_saved"], "")
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_HANGUP)
        bus.publish(
            IvrEnded(
                uniqueid=uniqueid,
                linkedid=linkedid,
                caller_number=CALLER,
                flow="main",
                outcome="voicemail",
                path=[],
                language="en",
                queue=None,
                priority=None,
                choice=None,
                voicemails=[],
                started_at=0.0,
                ended_at=0.0,
                duration=0.0,
                error=None,
            )
        )

    return call


HAND: dict[str, Callable[[Kit], Handler]] = {PRODUCT.key: hand_product, COMPLAINT.key: hand_complaint}
BARE: dict[str, Callable[[Kit], Handler]] = {PRODUCT.key: bare_product, COMPLAINT.key: bare_complaint}


# --------------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    mode: str
    scenario: str
    commands: int
    steps: int
    hand_us: list[float] = field(default_factory=list)
    engine_us: list[float] = field(default_factory=list)
    observed_us: list[float] = field(default_factory=list)
    bare_us: list[float] = field(default_factory=list)
    # False: the lists hold one process's rounds, and a figure is their least. True: they hold each process's
    # figure, and a figure is their median.
    combined: bool = False

    def _figure(self, values: list[float]) -> float:
        return statistics.median(values) if self.combined else min(values)

    @property
    def hand(self) -> float:
        return self._figure(self.hand_us)

    @property
    def engine(self) -> float:
        return self._figure(self.engine_us)

    @property
    def observed(self) -> float:
        return self._figure(self.observed_us)

    @property
    def bare(self) -> float:
        return self._figure(self.bare_us)

    @property
    def bare_pct(self) -> float:
        """The engine against the hand-written call that keeps no path (a floor, not the same work)."""
        return (self.engine - self.bare) / self.bare * 100

    @property
    def observed_pct(self) -> float:
        return (self.observed - self.hand) / self.hand * 100

    @property
    def extra_per_step(self) -> float:
        return (self.engine - self.hand) / self.steps

    @property
    def overhead_pct(self) -> float:
        return (self.engine - self.hand) / self.hand * 100


class Runner:
    def __init__(self, mode: str, kit: Kit, scenario: Scenario, hand: Handler, bare: Handler) -> None:
        self.mode = mode
        self.kit = kit
        self.scenario = scenario
        self.handlers: dict[str, Handler] = {
            "hand": hand,
            "engine": kit.route.run,
            "observed": kit.observed.run,
            "bare": bare,
        }
        self._server: FastAgiServer | None = None
        self._current: Handler = hand
        self._count = 0

    async def start(self) -> None:
        if self.mode == "wire":

            async def route(session: AgiSession) -> None:
                await self._current(session)

            self._server = FastAgiServer({"ivr": route}, HOST, 0, ServerLimits())
            await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    async def one(self, arm: str, asterisk: FakeAsterisk, spent: list[float], uniqueid: str = "") -> None:
        self._count += 1
        uniqueid = uniqueid or f"1700000000.{self._count}"
        handler = self.handlers[arm]
        if self._server is None:
            await call_direct(handler, asterisk, uniqueid)
        else:
            self._current = handler
            await call_wire(self._server.port, asterisk, uniqueid, spent)

    async def output(self, arm: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        """One call's command lines and its IvrStarted and IvrEnded events (as (class name, fields), their times
        taken out)."""
        asterisk = FakeAsterisk(self.scenario.keys)
        asterisk.record = True
        self.kit.reset()
        bus = self.kit.observed_bus if arm == "observed" else self.kit.bus
        events: list[tuple[str, dict[str, Any]]] = []
        stops = [
            bus.subscribe(kind, lambda event: events.append((type(event).__name__, _timeless(event_fields(event)))))
            for kind in CALL_EVENTS
        ]
        try:
            await self.one(arm, asterisk, [0.0], uniqueid="1700000000.0")
        finally:
            for stop in stops:
                stop()
        return asterisk.commands, events

    async def batch(self, arm: str, calls: int) -> float:
        """CPU microseconds per call of this process, the fake Asterisk's own callbacks taken out."""
        keys = self.scenario.keys
        spent = [0.0]
        self.kit.reset()
        gc.collect()
        started = time.process_time()
        for _ in range(calls):
            await self.one(arm, FakeAsterisk(keys), spent)
        used = time.process_time() - started - spent[0]
        return used / calls * 1e6


# The events a call leaves for the rest of the engine (the live call, the call's record).
CALL_EVENTS: tuple[type, ...] = (IvrStarted, IvrEnded)
_TIMES = frozenset({"at", "started_at", "ended_at", "duration", "monotonic"})


def _timeless(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data without its clock readings (which differ from call to call), path entries included."""
    kept = {key: value for key, value in data.items() if key not in _TIMES}
    if "path" in kept:
        kept["path"] = [{key: value for key, value in entry.items() if key not in _TIMES} for entry in kept["path"]]
    return kept


async def check_same_output(runner: Runner) -> tuple[int, int]:
    """Every arm must send the same lines, and the hand-written call must leave the engine's events (path
    included); returns (commands per call, engine steps per call)."""
    key = runner.scenario.key
    hand, hand_events = await runner.output("hand")
    engine, engine_events = await runner.output("engine")
    observed, observed_events = await runner.output("observed")
    bare, _ = await runner.output("bare")
    if observed != engine or observed_events != engine_events:
        raise SystemExit(f"{key}: observing the events changed the call")
    for name, lines in (("hand", hand), ("bare", bare)):
        if lines != engine:
            diff = "\n".join(f"  {name}: {h!r}\n  engine: {e!r}" for h, e in zip(lines, engine, strict=False) if h != e)
            raise SystemExit(f"{key}: {name} and engine send different commands:\n{diff or (lines, engine)}")
    if hand_events != engine_events:
        raise SystemExit(
            f"{key}: the hand-written call leaves other events than the engine:\n"
            f"  hand: {hand_events}\n  engine: {engine_events}"
        )
    asterisk = FakeAsterisk(runner.scenario.keys)
    session_result: list[Any] = []

    async def capture(session: AgiSession) -> None:
        session_result.append(await runner.kit.route.run(session))

    await call_direct(capture, asterisk, "1700000000.0")
    result = session_result[0]
    if result.outcome is not runner.scenario.outcome:
        raise SystemExit(f"{runner.scenario.key}: the engine ended {result.outcome}, not {runner.scenario.outcome}")
    return len(hand), len(result.path)


async def measure(plan: Plan, progress: Callable[[str], None]) -> list[Figures]:
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="cc-bench-ivr-") as tmp:
        for mode in MODES:
            for scenario in SCENARIOS:
                kit = make_kit(scenario, Path(tmp))
                runner = Runner(mode, kit, scenario, HAND[scenario.key](kit), BARE[scenario.key](kit))
                await runner.start()
                try:
                    commands, steps = await check_same_output(runner)
                    found = Figures(mode, scenario.key, commands, steps)
                    for arm in ARMS:
                        await runner.batch(arm, plan.warmup)
                    for index in range(plan.rounds):
                        # Alternate which arm goes first, so neither always runs on a warmer cache.
                        order = ARMS if index % 2 == 0 else ARMS[::-1]
                        for arm in order:
                            value = await runner.batch(arm, plan.batch)
                            getattr(found, f"{arm}_us").append(value)
                    progress(
                        f"  {mode:<6} {scenario.key:<22} hand {found.hand:7.1f} us  engine {found.engine:7.1f} us"
                        f"  ({found.overhead_pct:+.1f}%)"
                    )
                    figures.append(found)
                finally:
                    await runner.stop()
    return figures


def overall(figures: list[Figures], mode: str, peer: str = "hand") -> float:
    """The extra CPU of the engine over a hand-written arm (``hand`` or ``bare``), both scenarios together, in
    percent."""
    chosen = [f for f in figures if f.mode == mode]
    hand: float = sum(getattr(f, peer) for f in chosen)
    engine: float = sum(f.engine for f in chosen)
    return (engine - hand) / hand * 100


def combine(runs: list[list[Figures]]) -> list[Figures]:
    """One set of figures from several processes' (the same calls in the same order): the median of theirs."""
    return [
        Figures(
            first.mode,
            first.scenario,
            first.commands,
            first.steps,
            hand_us=[run[index].hand for run in runs],
            engine_us=[run[index].engine for run in runs],
            observed_us=[run[index].observed for run in runs],
            bare_us=[run[index].bare for run in runs],
            combined=True,
        )
        for index, first in enumerate(runs[0])
    ]


def report(runs: list[list[Figures]], plan: Plan) -> None:
    figures = combine(runs)
    print()
    print(
        f"CPU per call (in each of {plan.processes} processes the least of {plan.rounds} rounds of {plan.batch} calls"
        " per arm; the median over the processes), uvloop"
    )
    head = (
        f"{'mode':<7}{'scenario':<23}{'cmds':>5}{'steps':>6}{'hand us':>10}{'engine us':>11}"
        f"{'extra us/step':>15}{'overhead':>10}{'observed us':>13}{'overhead':>10}{'bare us':>10}{'engine vs':>11}"
    )
    print(head)
    print("-" * len(head))
    for f in figures:
        print(
            f"{f.mode:<7}{f.scenario:<23}{f.commands:>5}{f.steps:>6}{f.hand:>10.1f}{f.engine:>11.1f}"
            f"{f.extra_per_step:>15.2f}{f.overhead_pct:>9.1f}%{f.observed:>13.1f}{f.observed_pct:>9.1f}%"
            f"{f.bare:>10.1f}{f.bare_pct:>10.1f}%"
        )
    print()
    for scenario in SCENARIOS:
        print(f"{scenario.key}: {scenario.label}")
    for mode in MODES:
        each = ", ".join(f"{overall(one, mode):.1f}%" for one in runs)
        print(f"{mode} overhead, both scenarios, in each process: {each}")
    print("the median over the processes of each one's overhead, both scenarios:")
    print(f"direct (no socket, pure CPU) overhead: {headline(runs, 'direct'):.1f}%")
    print(f"wire (FastAgiServer on loopback, as deployed) overhead: {headline(runs, 'wire'):.1f}%")
    print(
        "against the bare hand-written calls (same commands, no path, two short events), both scenarios: "
        f"direct {headline(runs, 'direct', 'bare'):.1f}%, wire {headline(runs, 'wire', 'bare'):.1f}%"
    )


def worker(plan: Plan, out: Path) -> None:
    """One measuring process: its figures, round by round, as JSON in ``out``."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(measure(plan, lambda line: print(line, flush=True)))
    out.write_text(json.dumps([asdict(f) for f in figures]), encoding="utf-8")


def run(plan: Plan, quick: bool) -> list[list[Figures]]:
    """Runs the processes one after the other (this script again, ``--worker``), each with a hash seed of its own."""
    print("bench/ivr.py: flow engine vs hand-written AGI coroutine (same commands, same fake Asterisk)", flush=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"}
    runs: list[list[Figures]] = []
    with tempfile.TemporaryDirectory(prefix="cc-bench-ivr-runs-") as tmp:
        for index in range(plan.processes):
            print(f"process {index + 1} of {plan.processes}:", flush=True)
            out = Path(tmp) / f"{index}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out)]
            subprocess.run([*command, "--quick"] if quick else command, env=env, check=True)
            runs.append([Figures(**item) for item in json.loads(out.read_text(encoding="utf-8"))])
            print(f"  this process: wire overhead {overall(runs[-1], 'wire'):.1f}%", flush=True)
    return runs


def headline(runs: list[list[Figures]], mode: str, peer: str = "hand") -> float:
    """The median over the processes of each one's overhead (each a ratio of its own arms, measured side by side)."""
    return statistics.median(overall(one, mode, peer) for one in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer processes, rounds and calls; about 90 seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--worker", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.worker:
        worker(plan, Path(args.worker))
        return 0
    runs = run(plan, args.quick)
    report(runs, plan)
    figures = combine(runs)
    if args.json:
        data = {
            "plan": asdict(plan),
            "figures": [
                {
                    **asdict(f),
                    "hand": f.hand,
                    "engine": f.engine,
                    "bare": f.bare,
                    "overhead_pct": f.overhead_pct,
                    "overhead_vs_bare_pct": f.bare_pct,
                }
                for f in figures
            ],
            "overhead_pct": {mode: headline(runs, mode) for mode in MODES},
            "overhead_vs_bare_pct": {mode: headline(runs, mode, "bare") for mode in MODES},
            "processes": [[asdict(f) for f in one] for one in runs],
        }
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
        print(f"JSON written to {args.json}")
    print(f"engine_overhead_vs_bare_pct={headline(runs, 'wire', 'bare'):.1f}")
    print(f"engine_overhead_pct={headline(runs, 'wire'):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
