"""The flow engine's two walks give the same results: the fast one (``FlowEngine.run``: production and bench/ivr.py)
and the reference one (``ivr_flows.walk.ReferenceFlowEngine``: the same walk written to be read).

Every shipped flow is driven through both by the same scripted callers (the simulator's ScriptedSession on a
FakeClock, the in-memory ports, DryPrompts): menu keys, wrong keys, silence, a hangup at every command, open hours,
after hours, holidays and special days, products found and not, voicemail, ports that fail, a connection lost or
garbled at every command, cancellation; then random callers (hypothesis), and small flows for the walk's own rules
(closing gotos, jumps between flows, the loop limit, nodes without a way out). Each call must leave, in both walks,
the same AGI commands, the same result (the ``IvrEnded`` data with its whole path, the outcome, the error, the
variables), the same bus events in the same order and the same calls to the ports. Each call is made twice on the
same engines, so that what the fast walk remembers from one call to the next is checked too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.agi.exceptions import AgiCommandFailed, AgiConnectionLost, AgiProtocolError
from callcenter.bus import Bus
from ivr_flows.engine import CallResult, FlowEngine
from ivr_flows.events import IvrEnded
from ivr_flows.ports import (
    DEMO_PRODUCTS,
    FakeClock,
    FlowPorts,
    InMemoryCatalog,
    InMemoryDirectory,
    InMemoryRecordingControl,
    InMemoryVoicemailSink,
    Product,
    VoicemailMessage,
    VoicemailTarget,
)
from ivr_flows.prompts import DryPrompts
from ivr_flows.route import SHIPPED_FLOWS
from ivr_flows.schema import Flow, FlowSet
from ivr_flows.simulator import Script, ScriptedSession
from ivr_flows.steps import Outcome
from ivr_flows.validator import load_flows
from ivr_flows.walk import ReferenceFlowEngine

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 2026-11-23: 10:00 is open, 22:00 after hours.
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
CLOSED = datetime(2026, 11, 23, 22, 0, tzinfo=SHANGHAI)
SUNDAY = datetime(2026, 11, 22, 10, 0, tzinfo=SHANGHAI)
# Saturday: open 09:00-12:00, so noon is closed.
SATURDAY_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=SHANGHAI)
# National Day (a holiday of the main flow's schedule).
HOLIDAY = datetime(2026, 10, 2, 10, 0, tzinfo=SHANGHAI)
# Special days: a Saturday worked in full before the Spring Festival, and New Year's Eve closing at 15:00.
WORKED_SATURDAY = datetime(2026, 2, 14, 15, 0, tzinfo=SHANGHAI)
EARLY_CLOSE = datetime(2026, 12, 31, 16, 0, tzinfo=SHANGHAI)

VIP = "5550001"
GOLD = "5550002"
TIERS = {VIP: "vip", GOLD: "gold"}
QUEUES = {"general": "support", "expert": "expert"}
WALKS: tuple[type[FlowEngine], type[FlowEngine]] = (FlowEngine, ReferenceFlowEngine)

PortsKind = Literal[
    "demo", "directory_down", "catalog_down", "recording_down", "voicemail_full", "voicemail_unfiled", "hostile"
]
Failure = Literal["connection_lost", "protocol_error", "command_failed", "cancelled"]


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    return load_flows(SHIPPED_FLOWS, entry="main")


# -- the callers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """One scripted call: what the caller does (the simulator's Script), when, into which flow, and what the
    outside world does (the ports, and a session that fails at one command)."""

    keys: tuple[str, ...] = ()
    at: datetime = OPEN
    flow: str = "main"
    number: str = "5551234"
    hangup_at: int | None = None
    raw: bool = False
    when_done: Literal["hangup", "silence"] = "hangup"
    ports: PortsKind = "demo"
    # The 1-based number of the command during which the session fails, and how.
    fail_at: int | None = None
    failure: Failure = "connection_lost"
    raise_lost: bool = False
    max_steps: int = 1000
    answer: bool = True

    def script(self) -> Script:
        return Script(inputs=self.keys, hangup_at=self.hangup_at, when_done=self.when_done, raw=self.raw)

    def world(self) -> tuple[object, ...]:
        """What the engines are built with: callers made one after another on the same engines share it."""
        return (self.at, self.ports, self.max_steps, self.answer, self.raise_lost)


class _BrokenDirectory:
    async def tier(self, caller_number: str) -> str | None:
        raise OSError("CRM down")


class _BrokenCatalog:
    async def find(self, code: str) -> Product | None:
        raise ConnectionError("database gone")


class _BrokenRecording:
    async def start_on_demand(self, *, uniqueid: str, linkedid: str, channel: str, reason: str) -> None:
        raise RuntimeError("AMI down")


class _FullVoicemail(InMemoryVoicemailSink):
    async def allocate(self, *, uniqueid: str, intent: str) -> VoicemailTarget:
        raise OSError("no space left on device")


class _UnfiledVoicemail(InMemoryVoicemailSink):
    async def store(self, message: VoicemailMessage) -> None:
        raise ConnectionError("database gone\r\n" + "x" * 400)


HOSTILE_PRODUCTS = (
    Product("1001", "Evil\r\nname\x1b[2J" + "x" * 500, Decimal("9.90"), "in_stock", {"en": "y" * 400}),
    Product("1002", "Odd", Decimal("-1.25"), "unknown_state"),
)


def make_ports(kind: PortsKind) -> FlowPorts:
    catalog = InMemoryCatalog(HOSTILE_PRODUCTS if kind == "hostile" else DEMO_PRODUCTS)
    directory = InMemoryDirectory(TIERS)
    voicemail = InMemoryVoicemailSink()
    recording = InMemoryRecordingControl()
    if kind == "directory_down":
        return FlowPorts(catalog, _BrokenDirectory(), voicemail, recording)
    if kind == "catalog_down":
        return FlowPorts(_BrokenCatalog(), directory, voicemail, recording)
    if kind == "recording_down":
        return FlowPorts(catalog, directory, voicemail, _BrokenRecording())
    if kind == "voicemail_full":
        return FlowPorts(catalog, directory, _FullVoicemail(), recording)
    if kind == "voicemail_unfiled":
        return FlowPorts(catalog, directory, _UnfiledVoicemail(), recording)
    return FlowPorts(catalog, directory, voicemail, recording)


class FailingSession(ScriptedSession):
    """The scripted caller, on a session that fails during one command (before Asterisk runs it)."""

    def __init__(self, caller: Caller, clock: FakeClock, uniqueid: str) -> None:
        super().__init__(caller.script(), caller=caller.number, clock=clock, uniqueid=uniqueid, linkedid=uniqueid)
        self.fail_at = caller.fail_at
        self.failure = caller.failure
        self.failed = False

    def _issue(self, verb: str, *args: str | int) -> bool:
        if self.fail_at is not None and len(self.commands) + 1 == self.fail_at:
            self.failed = True
            self.commands.append(f"{verb} (failed: {self.failure})")
            if self.failure == "connection_lost":
                raise AgiConnectionLost("socket closed")
            if self.failure == "protocol_error":
                raise AgiProtocolError("not an AGI reply", "HTTP/1.1 400 Bad Request")
            if self.failure == "command_failed":
                raise AgiCommandFailed(200, "result=-1")
            raise asyncio.CancelledError
        return super()._issue(verb, *args)


# -- what a call leaves ---------------------------------------------------------------------------------


def comparable(event: object) -> tuple[str, dict[str, Any]]:
    """What the bus delivered (a typed event: a dataclass), as its class name and its fields."""
    assert dataclasses.is_dataclass(event), event
    return type(event).__name__, {item.name: getattr(event, item.name) for item in dataclasses.fields(event)}


def _error(error: BaseException | None) -> tuple[str, str] | None:
    return None if error is None else (type(error).__name__, str(error))


@dataclass
class Left:
    """Everything one call left behind, as it can be compared between the walks."""

    commands: list[str]
    variables_set: dict[str, str]
    # The result (None when the call raised): the IvrEnded data with its path, and what only the caller sees.
    data: dict[str, Any] | None
    outcome: Outcome | None
    error: tuple[str, str] | None
    variables: dict[str, str] | None
    voicemails: tuple[VoicemailMessage, ...] | None
    raised: tuple[str, str] | None
    events: list[tuple[str, dict[str, Any]]]
    spoken: list[tuple[str, str, str]]
    catalog: list[str]
    directory: list[str]
    recordings: list[object]
    messages: list[VoicemailMessage]
    remaining: list[str] = field(default_factory=list)


class Engines:
    """One engine of a walk with its own clock, ports, prompt maker and bus; calls are made one after another, so
    that the second call of a kind finds what the first left remembered."""

    def __init__(
        self,
        walk: type[FlowEngine],
        flows: FlowSet,
        caller: Caller,
        *,
        listening: bool,
        entry: str = "main",
    ) -> None:
        self.world = caller.world()
        self.clock = FakeClock(caller.at)
        self.ports = make_ports(caller.ports)
        self.prompts = DryPrompts()
        self.bus = Bus()
        self.events: list[object] = []
        if listening:
            self.bus.subscribe_all(self.events.append)
        self.engine = walk(
            flows,
            ports=self.ports,
            bus=self.bus,
            prompts=self.prompts,
            queues=QUEUES,
            clock=self.clock,
            entry=entry,
            max_steps=caller.max_steps,
            answer=caller.answer,
            raise_lost=caller.raise_lost,
        )
        self.calls = 0

    async def call(self, caller: Caller) -> Left:
        assert caller.world() == self.world, "a caller of another world needs engines of its own"
        self.calls += 1
        self.events.clear()
        seen = self._seen()
        session = FailingSession(caller, self.clock, uniqueid=f"1700000000.{self.calls}")
        result: CallResult | None = None
        raised: tuple[str, str] | None = None
        try:
            result = await self.engine.run(session, flow=caller.flow)
        except (AgiConnectionLost, AgiProtocolError, asyncio.CancelledError) as exc:
            raised = (type(exc).__name__, str(exc))
        if caller.fail_at is not None and caller.fail_at <= len(session.commands):
            assert session.failed, "the session was to fail, and did not"
        # A little time between calls, as between two callers.
        self.clock.advance(7.5)
        catalog, directory = self.ports.catalog, self.ports.directory
        recording, sink = self.ports.recording, self.ports.voicemail
        return Left(
            commands=session.commands,
            variables_set=session.variables_set,
            data=result.data if result else None,
            outcome=result.outcome if result else None,
            error=_error(result.error) if result else None,
            variables=dict(result.variables) if result else None,
            voicemails=result.voicemails if result else None,
            raised=raised,
            events=[comparable(event) for event in self.events],
            spoken=[(p.name, p.voice, p.text) for p in self.prompts.spoken.values()],
            catalog=(catalog.lookups[seen[0] :] if isinstance(catalog, InMemoryCatalog) else []),
            directory=(directory.lookups[seen[1] :] if isinstance(directory, InMemoryDirectory) else []),
            recordings=(list(recording.started[seen[2] :]) if isinstance(recording, InMemoryRecordingControl) else []),
            messages=(sink.messages[seen[3] :] if isinstance(sink, InMemoryVoicemailSink) else []),
            remaining=session.remaining_inputs,
        )

    def _seen(self) -> tuple[int, int, int, int]:
        """How much each in-memory port holds before a call: what the call adds comes after."""
        catalog, directory = self.ports.catalog, self.ports.directory
        recording, sink = self.ports.recording, self.ports.voicemail
        return (
            len(catalog.lookups) if isinstance(catalog, InMemoryCatalog) else 0,
            len(directory.lookups) if isinstance(directory, InMemoryDirectory) else 0,
            len(recording.started) if isinstance(recording, InMemoryRecordingControl) else 0,
            len(sink.messages) if isinstance(sink, InMemoryVoicemailSink) else 0,
        )


def assert_same(fast: Left, reference: Left) -> None:
    """Field by field, so that a difference names what differs."""
    for name in (item.name for item in dataclasses.fields(Left)):
        assert getattr(fast, name) == getattr(reference, name), f"the walks differ in {name}"
    if fast.data is not None:
        # The result is the IvrEnded data as published, whoever listens.
        ended = [data for kind, data in fast.events if kind == IvrEnded.__name__]
        assert ended in ([], [fast.data])


async def walk_both(flows: FlowSet, callers: Iterable[Caller], *, entry: str = "main") -> list[Left]:
    """Each caller through both walks, with everyone listening to the bus and with nobody; callers one after
    another share the engines while they share a world (Caller.world). Returns what the fast walk left, when
    everyone listened (the reference's being the same)."""
    callers = list(callers)
    left: list[Left] = []
    for listening in (True, False):
        engines: tuple[Engines, Engines] | None = None
        for caller in callers:
            if engines is None or engines[0].world != caller.world():
                engines = (
                    Engines(FlowEngine, flows, caller, listening=listening, entry=entry),
                    Engines(ReferenceFlowEngine, flows, caller, listening=listening, entry=entry),
                )
            by_fast = await engines[0].call(caller)
            assert_same(by_fast, await engines[1].call(caller))
            if listening:
                left.append(by_fast)
    return left


# -- the shipped flows ----------------------------------------------------------------------------------

PRODUCT_CALL = Caller(("1", "1", "1001#", "0"))
COMPLAINT_CALL = Caller(("1",), at=CLOSED)

CALLERS: dict[str, Caller] = {
    # Open hours: the main menu and what is behind each key.
    "product_found_then_agent": PRODUCT_CALL,
    "product_not_found": Caller(("1", "1", "9999#", "0")),
    "two_products_then_the_main_menu": Caller(("1", "1", "1002#", "1", "2001#", "*", "3")),
    "product_guide_back_to_the_main_menu": Caller(("1", "*", "4")),
    "product_guide_silence_gives_up_to_the_main_menu": Caller(("1", "", "", "", "5")),
    "after_product_silence_to_the_fallback": Caller(("1", "1", "1001#", "", "", "")),
    "fault_vip": Caller(("2",), number=VIP),
    "business_gold": Caller(("3",), number=GOLD),
    "repair_without_caller_id": Caller(("4",), number=""),
    "installation_caller_unknown": Caller(("5",), number="unknown"),
    "complaint_recorded": Caller(("6",)),
    "suggestion": Caller(("7",)),
    "agent": Caller(("0",)),
    "hostile_caller_id": Caller(("2",), number="\x1b[2J5551234" + "9" * 100),
    # Wrong keys and silence.
    "invalid_then_valid": Caller(("8", "2")),
    "pound_then_star_then_agent": Caller(("#", "*", "0")),
    "no_input_then_valid": Caller(("", "3")),
    "retries_exhausted_to_the_fallback": Caller(("8", "", "")),
    "silent_caller_who_stays": Caller((), when_done="silence"),
    "keys_after_the_hangup_are_never_read": Caller(("1", "H", "2", "0")),
    # Languages.
    "mandarin_fault": Caller(("9", "2")),
    "mandarin_then_english_again": Caller(("9", "9", "0")),
    "mandarin_product_read_out": Caller(("9", "1", "1", "1001#", "0")),
    # Hangups.
    "hangup_in_the_main_menu": Caller(("H",)),
    "hangup_in_the_product_guide": Caller(("1", "H")),
    "hangup_while_typing_a_code": Caller(("1", "1", "H")),
    "hangup_after_a_product": Caller(("1", "1", "1001#", "H")),
    "hangup_before_the_answer": Caller(("1",), hangup_at=1),
    # Typed input.
    "input_retries_exhausted": Caller(("1", "1", "", "12", "AB12"), raw=True),
    "input_two_hundred_digits_whole": Caller(("1", "1", "1" * 200, "", "", "0"), raw=True),
    "input_two_hundred_digits_cut": Caller(("1", "1", "1" * 200, "0")),
    "input_letters": Caller(("1", "1", "AB12#", "", "", "0")),
    "input_sql": Caller(("1", "1", "1001' OR '1'='1", "1;DROP", "1'--", "0"), raw=True),
    "input_pattern_refuses_a_star": Caller(("1", "1", "12*4#", "1001#", "0")),
    "control_characters_as_keys": Caller(("\x1b[2J",), raw=True),
    "several_keys_at_once": Caller(("12", "34", "0"), raw=True),
    # After hours: a message with an intent.
    "after_hours_complaint": COMPLAINT_CALL,
    "after_hours_suggestion": Caller(("2",), at=CLOSED),
    "after_hours_repair": Caller(("3",), at=CLOSED),
    "after_hours_hangup_while_speaking": Caller(("1", "H"), at=CLOSED),
    "after_hours_silence_goodbye": Caller(("", "", ""), at=CLOSED),
    "after_hours_mandarin_complaint": Caller(("9", "1"), at=CLOSED),
    "after_hours_mandarin_and_back": Caller(("9", "9", "2"), at=CLOSED),
    "after_hours_invalid_then_repair": Caller(("5", "3"), at=CLOSED),
    "after_hours_hangup_in_the_menu": Caller(("H",), at=CLOSED),
    "sunday_suggestion": Caller(("2",), at=SUNDAY),
    "saturday_noon_is_closed": Caller(("3",), at=SATURDAY_NOON),
    # Holidays and special days.
    "holiday_complaint": Caller(("1",), at=HOLIDAY),
    "holiday_mandarin_repair": Caller(("9", "3"), at=HOLIDAY),
    "holiday_silence_goodbye": Caller(("", "", ""), at=HOLIDAY),
    "holiday_hangup_while_speaking": Caller(("2", "H"), at=HOLIDAY),
    "worked_saturday_is_open": Caller(("2",), at=WORKED_SATURDAY),
    "new_years_eve_closes_early": Caller(("1",), at=EARLY_CLOSE),
    # Straight into the other flows (flow=...), at any time.
    "into_after_hours": Caller(("2",), flow="after_hours"),
    "into_after_hours_mandarin": Caller(("9", "1", "H"), flow="after_hours"),
    "into_holiday": Caller(("3",), flow="holiday", at=CLOSED),
    "into_holiday_silence": Caller(("", "", ""), flow="holiday"),
    # The outside world failing.
    "crm_down_still_queues": Caller(("2",), number=VIP, ports="directory_down"),
    "recorder_down_still_queues": Caller(("6",), ports="recording_down"),
    "catalog_down_to_the_fallback": Caller(("1", "1", "1001#"), ports="catalog_down"),
    "voicemail_full": Caller(("1",), at=CLOSED, ports="voicemail_full"),
    "voicemail_not_filed": Caller(("2",), at=CLOSED, ports="voicemail_unfiled"),
    "hostile_catalog_text": Caller(("1", "1", "1001#", "1", "1002#", "0"), ports="hostile"),
    # The session failing.
    "connection_lost_in_a_menu": Caller(("1",), fail_at=4),
    "connection_lost_raised": Caller(("1",), fail_at=4, raise_lost=True),
    "protocol_error_raised": Caller(("1", "1", "1001#"), fail_at=9, failure="protocol_error", raise_lost=True),
    "command_failed_in_a_prompt": Caller(("2",), fail_at=2, failure="command_failed"),
    "cancelled_mid_call": Caller(("1",), at=CLOSED, fail_at=6, failure="cancelled"),
    "lost_while_telling_the_dialplan": Caller(("0",), fail_at=7),
    # The engine's own settings.
    "no_answer_command": Caller(("2",), answer=False),
    "a_low_step_limit": Caller(("9", "9", "9", "9", "9", "9"), max_steps=8),
}


@pytest.mark.parametrize("name", CALLERS)
async def test_both_walks_leave_the_same_call(flows: FlowSet, name: str) -> None:
    caller = CALLERS[name]
    # Twice on the same engines: the second call finds the prompt names and jumps the first one made.
    await walk_both(flows, [caller, caller])


async def test_the_callers_cover_every_node_step_and_outcome_of_the_shipped_flows(flows: FlowSet) -> None:
    """The scenarios above reach every node of every shipped flow, every kind of step in them, and every way a
    call can end: equal results mean something only where the walks were taken."""
    left = [one for caller in CALLERS.values() for one in await walk_both(flows, [caller])]
    visited = {(e["flow"], e["node"]) for one in left if one.data for e in one.data["path"]}
    nodes = {(name, node) for name, flow in flows.flows.items() for node in flow.nodes}
    assert nodes - visited == set()
    kinds = {e["step"] for one in left if one.data for e in one.data["path"]}
    written = {step.KIND for flow in flows.flows.values() for steps in flow.nodes.values() for step in steps}
    # A closing goto is never a step of the path; a node that is only a goto would be.
    assert written - {"goto"} <= kinds
    outcomes = {one.outcome for one in left if one.outcome is not None}
    assert outcomes == set(Outcome)
    assert any(one.raised for one in left)
    assert any(one.variables_set == {} for one in left)


@pytest.mark.parametrize("base", ["product_found_then_agent", "after_hours_complaint", "into_holiday"])
async def test_a_hangup_during_any_command_ends_both_walks_alike(flows: FlowSet, base: str) -> None:
    caller = CALLERS[base]
    whole = (await walk_both(flows, [caller]))[0]
    callers = [dataclasses.replace(caller, hangup_at=n) for n in range(1, len(whole.commands) + 2)]
    await walk_both(flows, callers)


@pytest.mark.parametrize("failure", ["connection_lost", "protocol_error", "command_failed", "cancelled"])
@pytest.mark.parametrize("raise_lost", [False, True])
async def test_a_session_failing_during_any_command_ends_both_walks_alike(
    flows: FlowSet, failure: Failure, raise_lost: bool
) -> None:
    for base in (PRODUCT_CALL, COMPLAINT_CALL):
        whole = (await walk_both(flows, [base]))[0]
        callers = [
            dataclasses.replace(base, fail_at=n, failure=failure, raise_lost=raise_lost)
            for n in range(1, len(whole.commands) + 1)
        ]
        await walk_both(flows, callers)


# Menu keys (silence and 9 twice as likely), a hangup, and typed codes: found, not found, too short, too long,
# letters, a star the pattern refuses, and one without its '#'.
MENU_KEYS = ["", "", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "9", "*", "#", "H"]
TYPED = ["1001#", "1002#", "2001#", "9999#", "12#", "123456789", "AB12#", "12*4#", "1001"]
KEYS = st.sampled_from([*MENU_KEYS, *TYPED])
RANDOM_CALLER = st.builds(
    Caller,
    keys=st.lists(KEYS, max_size=14).map(tuple),
    at=st.sampled_from([OPEN, CLOSED, SUNDAY, SATURDAY_NOON, HOLIDAY, WORKED_SATURDAY, EARLY_CLOSE]),
    flow=st.sampled_from(["main", "main", "main", "after_hours", "holiday"]),
    number=st.sampled_from(["5551234", VIP, GOLD, "", "unknown"]),
    hangup_at=st.none() | st.integers(1, 30),
    raw=st.booleans(),
    when_done=st.sampled_from(["hangup", "silence"]),
    ports=st.sampled_from(["demo", "demo", "directory_down", "recording_down", "hostile", "voicemail_unfiled"]),
)


@settings(max_examples=400, deadline=None)
@given(callers=st.lists(RANDOM_CALLER, min_size=1, max_size=3))
def test_random_callers_leave_the_same_calls_in_both_walks(flows: FlowSet, callers: list[Caller]) -> None:
    # Callers one after another on the same engines: the time of day, ports and settings of the first.
    first = callers[0]
    same_world = [dataclasses.replace(c, at=first.at, ports=first.ports) for c in callers]
    asyncio.run(walk_both(flows, same_world))


# -- the walk's own rules, on small flows ---------------------------------------------------------------

HELLO = {"en": "Hello.", "zh": "你好。"}
ALWAYS_OPEN = {"weekly": {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


def flow_set(*flows: Mapping[str, Any]) -> FlowSet:
    """Flows made straight from their data, without the validator: the walk must cope with what it refuses."""
    made = [Flow.model_validate(data) for data in flows]
    return FlowSet({flow.name: flow for flow in made})


SMALL_FLOWS: dict[str, tuple[FlowSet, tuple[Caller, ...]]] = {
    "a_loop_without_listening": (
        flow_set({"name": "main", "nodes": {"a": [{"goto": "b"}], "b": [{"goto": "a"}]}}),
        (Caller(max_steps=50),),
    ),
    "a_loop_that_skips_its_later_steps": (
        flow_set(
            {
                "name": "main",
                "prompts": {"hello": HELLO},
                "schedules": {"always": ALWAYS_OPEN},
                "nodes": {
                    "spin": [
                        {"hours": {"schedule": "always", "open": "spin", "closed": "spin"}},
                        {"play": "hello"},
                        {"play": "hello"},
                    ]
                },
            }
        ),
        (Caller(max_steps=20), Caller(max_steps=7)),
    ),
    "closing_and_lone_gotos": (
        flow_set(
            {
                "name": "main",
                "prompts": {"hello": HELLO, "beep": {"file": "beep"}},
                "nodes": {
                    "start": [{"play": ["hello", "beep"]}, {"goto": "hop"}],
                    "hop": [{"goto": "middle"}],
                    "middle": [{"play": "hello"}, {"goto": "done"}, {"play": "beep"}],
                    "done": ["hangup"],
                },
            }
        ),
        (Caller(),),
    ),
    "a_node_without_a_way_out": (
        flow_set({"name": "main", "prompts": {"hello": HELLO}, "nodes": {"start": [{"play": "hello"}]}}),
        (Caller(),),
    ),
    "a_jump_to_nowhere": (
        flow_set({"name": "main", "nodes": {"start": [{"set": {"x": "1"}}, {"goto": "nowhere"}]}}),
        (Caller(),),
    ),
    "a_jump_to_no_flow": (
        flow_set({"name": "main", "nodes": {"start": [{"goto": "flow:nope"}]}}),
        (Caller(),),
    ),
    "a_prompt_without_text_in_the_language": (
        flow_set(
            {
                "name": "main",
                "prompts": {"hello": HELLO, "only_zh": {"zh": "只有中文。"}},
                # The second prompt cannot be made: the first is not played either.
                "nodes": {"start": [{"play": ["hello", "only_zh"]}, "hangup"]},
            }
        ),
        (Caller(),),
    ),
    "hours_without_a_holiday_branch": (
        flow_set(
            {
                "name": "main",
                "timezone": "Europe/Paris",
                "prompts": {"hello": HELLO},
                "schedules": {
                    # In Shanghai time, whatever the flow's zone; the test callers' Monday is a holiday here.
                    "shanghai": {
                        "timezone": "Asia/Shanghai",
                        "weekly": {"mon": ["09:00-18:00"], "tue": ["09:00-18:00"]},
                        "holidays": ["2026-11-23"],
                        "special": {"2026-11-24": ["20:00-23:00"]},
                    }
                },
                "nodes": {
                    "start": [{"hours": {"schedule": "shanghai", "open": "open", "closed": "closed"}}],
                    "open": [{"play": "hello"}, {"queue": {"reason": "open"}}],
                    "closed": ["hangup"],
                },
            }
        ),
        (
            Caller(at=OPEN),
            Caller(at=datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)),
            Caller(at=datetime(2026, 11, 24, 21, 0, tzinfo=SHANGHAI)),
        ),
    ),
    "languages_across_flows": (
        flow_set(
            {
                "name": "main",
                "languages": ["en", "zh"],
                "prompts": {"hello": HELLO, "pick": {"en": "Press 1 or 2.", "zh": "请按1或2。"}},
                "nodes": {
                    "start": [{"switch_language": "zh"}, {"play": "hello"}, {"goto": "pick"}],
                    "pick": [
                        {
                            "menu": {
                                "prompt": ["hello", "pick", "hello"],
                                "options": {"1": "flow:english", "2": "flow:both", "3": "flow:main"},
                                "retries": 0,
                                "on_fail": "flow:english",
                            }
                        }
                    ],
                },
            },
            {
                "name": "english",
                "prompts": {"hello": {"en": "Hello, {language}."}, "beep": {"file": "beep"}},
                "nodes": {
                    "start": [
                        {"play": "hello"},
                        {"menu": {"prompt": "beep", "options": {"1": "flow:both"}, "on_fail": "end", "retries": 1}},
                    ],
                    "end": ["hangup"],
                },
            },
            {
                "name": "both",
                "languages": ["en", "zh"],
                "prompts": {"hello": HELLO},
                "nodes": {"start": [{"play": "hello"}, {"switch_language": "next"}, {"play": "hello"}, "hangup"]},
            },
        ),
        (
            Caller(("1", "1")),
            Caller(("2",)),
            Caller(("3", "2")),
            Caller(("12",)),
            Caller(("", "", "")),
            Caller(("4",)),
        ),
    ),
    "say_set_and_lookup": (
        flow_set(
            {
                "name": "main",
                "languages": ["en", "zh"],
                "prompts": {"info": {"en": "{name} {price}", "zh": "{name}{price}"}},
                "nodes": {
                    "start": [
                        {"set": {"amount": "12.05", "count": "42", "day": "2026-11-23", "code": "007"}},
                        {"say": {"money": "{amount}"}},
                        {"say": {"number": "{count}"}},
                        {"say": {"date": "{day}"}},
                        {"say": {"digits": "{code}"}},
                        {"switch_language": "zh"},
                        {"say": {"money": "{amount}"}},
                        {"say": {"date": "today"}},
                        {"say": {"digits": "{code}"}},
                        {"say": {"number": "not a number"}},
                        {"set": {"product_code": "1001"}},
                        {"lookup": {"found": "info", "not_found": "missing"}},
                        {"set": {"product_code": "1' OR '1'='1"}},
                        {"lookup": {"found": "info", "not_found": "missing"}},
                    ],
                    "missing": [{"set": {"product_code": "4242"}}, {"lookup": {"found": "info", "not_found": "end"}}],
                    "end": ["hangup"],
                },
            }
        ),
        (Caller(),),
    ),
    "input_with_file_prompts": (
        flow_set(
            {
                "name": "main",
                "prompts": {"code": {"file": "enter-code"}, "again": {"file": "try-again"}, "hello": HELLO},
                "nodes": {
                    "start": [
                        {
                            "input": {
                                "prompt": "code",
                                "var": "product_code",
                                "max_digits": 4,
                                "min_digits": 2,
                                "retries": 3,
                                "invalid": "again",
                                "on_fail": "queue",
                            }
                        },
                        {"say": {"digits": "{product_code}"}},
                        {"goto": "queue"},
                    ],
                    "queue": [{"queue": {"queue": "expert", "reason": "input", "priority": 7}}],
                },
            }
        ),
        (Caller(("", "1", "12345", "77#")), Caller(("", "", "", ""), raw=True), Caller(("9", "H"))),
    ),
}


@pytest.mark.parametrize("name", SMALL_FLOWS)
async def test_both_walks_follow_the_same_rules_on_small_flows(name: str) -> None:
    flows, callers = SMALL_FLOWS[name]
    await walk_both(flows, [*callers, *callers])


def test_a_missing_schedule_stops_both_engines_being_built() -> None:
    flows = flow_set({"name": "main", "nodes": {"start": [{"hours": {"schedule": "x", "open": "a", "closed": "a"}}]}})
    for walk in WALKS:
        with pytest.raises(ValueError, match="names no schedule"):
            Engines(walk, flows, Caller(), listening=False)


async def test_a_reload_reaches_new_calls_in_both_walks(flows: FlowSet) -> None:
    small, _callers = SMALL_FLOWS["closing_and_lone_gotos"]
    left = []
    for walk in WALKS:
        engines = Engines(walk, flows, PRODUCT_CALL, listening=True)
        before = await engines.call(PRODUCT_CALL)
        engines.engine.replace_flows(small)
        left.append((before, await engines.call(Caller())))
    assert_same(left[0][0], left[1][0])
    assert_same(left[0][1], left[1][1])
    assert left[0][1].outcome is Outcome.HANGUP


def test_the_reference_walk_is_its_own() -> None:
    # The reference engine runs its own walk; the fast one stays FlowEngine's (the default, production's).
    assert ReferenceFlowEngine.run is not FlowEngine.run
    assert issubclass(ReferenceFlowEngine, FlowEngine)
