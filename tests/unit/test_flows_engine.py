"""The flow engine walking the shipped flows with a scripted caller: paths, outcomes, dialplan variables, events."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter import dialplan
from callcenter.agi.exceptions import AgiConnectionLost
from callcenter.bus import Bus, event_fields
from ivr_flows.engine import FlowEngine
from ivr_flows.events import IvrChoice, IvrEnded, IvrStarted, IvrStep
from ivr_flows.ports import (
    FakeClock,
    FlowPorts,
    InMemoryCatalog,
    InMemoryDirectory,
    InMemoryRecordingControl,
    InMemoryVoicemailSink,
    Product,
    in_memory_ports,
)
from ivr_flows.prompts import DryPrompts
from ivr_flows.route import SHIPPED_FLOWS
from ivr_flows.schema import FlowSet
from ivr_flows.simulator import Script, ScriptedSession, Simulation, simulate
from ivr_flows.steps import Outcome
from ivr_flows.validator import load_flows

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Monday: 10:00 is open, 22:00 is after hours.
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
CLOSED = datetime(2026, 11, 23, 22, 0, tzinfo=SHANGHAI)
VIP = "5550001"


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    return load_flows(SHIPPED_FLOWS, entry="main")


def demo_ports(**tiers: str) -> FlowPorts:
    return in_memory_ports(tiers={VIP: "vip", **tiers})


def catalog(sim: Simulation) -> InMemoryCatalog:
    assert isinstance(sim.ports.catalog, InMemoryCatalog)
    return sim.ports.catalog


def voicemail(sim: Simulation) -> InMemoryVoicemailSink:
    assert isinstance(sim.ports.voicemail, InMemoryVoicemailSink)
    return sim.ports.voicemail


def results(sim: Simulation, step: str | None = None) -> list[str | None]:
    return [entry.result for entry in sim.result.path if step is None or entry.step == step]


def spoken(sim: Simulation) -> list[str]:
    return [text for _name, text in sim.played_prompts()]


async def run(
    flows: FlowSet,
    inputs: list[str],
    *,
    at: datetime = OPEN,
    caller: str = "5551234",
    ports: FlowPorts | None = None,
    queues: dict[str, str] | None = None,
    script: Script | None = None,
    bus: Bus | None = None,
) -> Simulation:
    return await simulate(
        flows,
        "main",
        inputs=inputs,
        at=at,
        caller=caller,
        ports=ports or demo_ports(),
        queues=queues,
        script=script,
        bus=bus,
    )


# -- the shipped flows ----------------------------------------------------------------------------------


async def test_a_product_code_is_looked_up_and_read_back(flows: FlowSet) -> None:
    sim = await run(flows, ["1", "1", "1001#", "0"])
    assert catalog(sim).lookups == ["1001"]
    assert 'SAY DIGITS "1001" ""' in sim.session.commands
    assert any(
        c.startswith('GET DATA "callcenter/flows/en/enter_code-') and c.endswith(" 8000 8")
        for c in sim.session.commands
    )
    info = [text for text in spoken(sim) if "Aurora" in text]
    assert info == ["Aurora washing machine. Price: 2999 yuan. In stock. Eight kilograms, quiet drum."]
    assert sim.result.nodes() == [
        "main/entry",
        "main/welcome",
        "main/main_menu",
        "main/product_guide",
        "main/product_code",
        "main/after_product",
        "main/agent",
    ]
    lookup = next(entry for entry in sim.result.path if entry.step == "lookup")
    assert (lookup.digits, lookup.result) == ("1001", "found")
    assert sim.result.outcome is Outcome.QUEUED
    assert sim.result.choice == "agent"


async def test_an_unknown_product_code_takes_the_not_found_branch(flows: FlowSet) -> None:
    sim = await run(flows, ["1", "1", "9999#", "0"])
    assert catalog(sim).lookups == ["9999"]
    assert "main/product_not_found" in sim.result.nodes()
    assert "Sorry, we could not find a product with that code." in spoken(sim)
    assert sim.result.outcome is Outcome.QUEUED


async def test_a_vip_caller_is_queued_first_with_the_reason_attached(flows: FlowSet) -> None:
    sim = await run(flows, ["2"], caller=VIP)
    assert sim.result.outcome is Outcome.QUEUED
    # CC_ACTION comes last: the dialplan obeys it, so everything it needs is set before.
    assert sim.session.variables_set == {
        dialplan.VAR_QUEUE: "support",
        dialplan.VAR_PRIORITY: "10",
        dialplan.VAR_IVR_CHOICE: "fault_consultation",
        # The reason rides along to the agent's channel the queue dials (inherited: two underscores).
        "__CC_REASON": "fault_consultation",
        dialplan.VAR_ACTION: dialplan.ACTION_QUEUE,
    }
    assert list(sim.session.variables_set)[-1] == dialplan.VAR_ACTION
    assert (sim.result.queue, sim.result.priority) == ("support", 10)


async def test_a_caller_without_a_tier_gets_the_default_priority(flows: FlowSet) -> None:
    sim = await run(flows, ["3"], caller="5559999")
    assert sim.session.variables_set[dialplan.VAR_PRIORITY] == "0"
    assert sim.session.variables_set[dialplan.VAR_IVR_CHOICE] == "business_consultation"


async def test_a_crm_failure_still_queues_the_caller(flows: FlowSet) -> None:
    class BrokenDirectory:
        async def tier(self, caller_number: str) -> str | None:
            raise OSError("CRM down")

    broken = FlowPorts(InMemoryCatalog(), BrokenDirectory(), InMemoryVoicemailSink(), InMemoryRecordingControl())
    sim = await run(flows, ["0"], caller=VIP, ports=broken)
    assert sim.result.outcome is Outcome.QUEUED
    assert sim.session.variables_set[dialplan.VAR_PRIORITY] == "0"


async def test_queues_map_to_the_configured_names(flows: FlowSet) -> None:
    sim = await run(flows, ["4"], queues={"general": "helpdesk", "expert": "specialists"})
    assert sim.session.variables_set[dialplan.VAR_QUEUE] == "helpdesk"
    assert sim.session.variables_set[dialplan.VAR_IVR_CHOICE] == "repair_booking"


async def test_a_complaint_is_recorded_from_the_start(flows: FlowSet) -> None:
    sim = await run(flows, ["6"])
    recording = sim.ports.recording
    assert isinstance(recording, InMemoryRecordingControl)
    assert [(s.reason, s.channel, s.uniqueid) for s in recording.started] == [
        ("complaint", "PJSIP/pstn-00000001", "1700000000.1")
    ]
    steps = [entry.step for entry in sim.result.path if entry.node == "complaint"]
    assert steps == ["record", "play", "queue"]
    assert sim.session.variables_set[dialplan.VAR_IVR_CHOICE] == "complaint"


async def test_a_failed_recording_start_does_not_drop_the_caller(flows: FlowSet) -> None:
    class BrokenRecording:
        async def start_on_demand(self, *, uniqueid: str, linkedid: str, channel: str, reason: str) -> None:
            raise RuntimeError("AMI down")

    broken = FlowPorts(InMemoryCatalog(), InMemoryDirectory(), InMemoryVoicemailSink(), BrokenRecording())
    sim = await run(flows, ["6"], ports=broken)
    assert "failed" in results(sim, "record")
    assert sim.result.outcome is Outcome.QUEUED


async def test_after_hours_caller_can_leave_a_complaint(flows: FlowSet) -> None:
    sim = await run(flows, ["1"], at=CLOSED)
    assert sim.result.nodes()[:3] == ["main/entry", "after_hours/closed", "after_hours/closed_menu"]
    (message,) = voicemail(sim).messages
    assert (message.intent, message.caller_number, message.duration, message.ended_by) == (
        "complaint",
        "5551234",
        8.0,
        "dtmf",
    )
    assert message.recorded_at.astimezone(SHANGHAI).hour == 22
    assert message.flow == "after_hours"
    record = next(c for c in sim.session.commands if c.startswith("RECORD FILE"))
    assert record.endswith('"wav" "#" 180000 0 "BEEP" "s=5"')
    assert "Monday to Friday from 9 a.m. to 6 p.m." in spoken(sim)[0]
    assert sim.result.outcome is Outcome.VOICEMAIL
    assert sim.session.variables_set == {dialplan.VAR_ACTION: dialplan.ACTION_HANGUP}


@pytest.mark.parametrize(("key", "intent"), [("2", "suggestion"), ("3", "repair_request")])
async def test_after_hours_intents_are_chosen_by_key(flows: FlowSet, key: str, intent: str) -> None:
    sim = await run(flows, [key], at=CLOSED)
    assert [m.intent for m in voicemail(sim).messages] == [intent]


async def test_a_caller_who_hangs_up_while_speaking_keeps_the_message(flows: FlowSet) -> None:
    sim = await run(flows, ["1", "H"], at=CLOSED)
    (message,) = voicemail(sim).messages
    assert message.ended_by == "hangup"
    assert message.duration == 8.0
    assert sim.result.outcome is Outcome.VOICEMAIL
    assert sim.result.last is not None
    assert (sim.result.last.node, sim.result.last.step) == ("complaint", "voicemail")
    # Nobody is left to route.
    assert sim.session.variables_set == {}


async def test_the_caller_can_switch_to_mandarin(flows: FlowSet) -> None:
    sim = await run(flows, ["9", "2"])
    assert sim.result.language == "zh"
    assert "zh" in results(sim, "switch_language")
    menus = [name for verb, name in sim.session.played if "main_menu" in name]
    assert menus[0].startswith("callcenter/flows/en/")
    assert menus[1].startswith("callcenter/flows/zh/")
    assert "正在为您转接故障咨询，请稍候。" in spoken(sim)  # noqa: RUF001
    assert sim.result.outcome is Outcome.QUEUED


async def test_the_language_offer_is_spoken_in_the_other_language(flows: FlowSet) -> None:
    sim = await run(flows, [""], at=OPEN)
    offers = [p for p in sim.prompts.spoken.values() if p.name.split("/")[-1].startswith("language_offer")]
    assert [(p.lang, p.voice) for p in offers] == [("en", "zh")]


async def test_a_caller_hanging_up_mid_menu_leaves_a_complete_path(flows: FlowSet) -> None:
    events: list[object] = []
    bus = Bus()
    bus.subscribe_all(events.append)
    sim = await run(flows, ["1", "H"], bus=bus)
    result = sim.result
    assert result.outcome is Outcome.HUNG_UP_IN_IVR
    assert result.last is not None
    assert (result.last.node, result.last.step, result.last.result) == ("product_guide", "menu", "caller_hangup")
    assert result.nodes() == ["main/entry", "main/welcome", "main/main_menu", "main/product_guide"]
    assert sim.session.variables_set == {}
    types = [type(event) for event in events]
    assert types[0] is IvrStarted
    assert types[-1] is IvrEnded
    assert types.count(IvrStep) == len(result.path)
    ended = events[-1]
    assert isinstance(ended, IvrEnded)
    assert ended.outcome == "hung_up_in_ivr"
    assert ended.linkedid == "1700000000.1"
    assert [step["node"] for step in ended.path][-1] == "product_guide"
    # Times travel as numbers (seconds since the epoch), read from the injected clock.
    assert all(OPEN.timestamp() <= step["at"] < OPEN.timestamp() + 3600 for step in ended.path)
    choice = next(event for event in events if isinstance(event, IvrChoice))
    assert choice.digits == "1"


async def test_path_timestamps_come_from_the_injected_clock(flows: FlowSet) -> None:
    sim = await run(flows, ["2"])
    walls = [entry.wall for entry in sim.result.path]
    monos = [entry.monotonic for entry in sim.result.path]
    assert walls[0] == OPEN
    assert monos == sorted(monos)
    assert walls[-1] > walls[0]
    assert sim.result.duration == monos[-1]


async def test_menu_retries_run_out_into_the_fallback(flows: FlowSet) -> None:
    sim = await run(flows, ["8", "", ""])
    assert results(sim, "menu") == ["invalid", "no_input", "no_input", "retries_exhausted"]
    texts = spoken(sim)
    assert texts.count("Sorry, that is not a valid choice.") == 1
    assert texts.count("Sorry, we did not hear your choice.") == 2
    assert sim.result.outcome is Outcome.QUEUED
    assert sim.result.choice == "no_choice"


async def test_a_silent_after_hours_caller_is_told_goodbye(flows: FlowSet) -> None:
    sim = await run(flows, ["", "", ""], at=CLOSED)
    assert sim.result.nodes()[-1] == "after_hours/goodbye"
    assert sim.result.outcome is Outcome.HANGUP
    assert sim.session.variables_set == {dialplan.VAR_ACTION: dialplan.ACTION_HANGUP}


# -- bad input ------------------------------------------------------------------------------------------


async def test_an_invalid_key_is_refused_and_asked_again(flows: FlowSet) -> None:
    sim = await run(flows, ["8", "2"])
    menu = [(e.digits, e.result) for e in sim.result.path if e.node == "main_menu"]
    assert menu == [("8", "invalid"), ("2", "chosen")]
    assert sim.result.choice == "fault_consultation"


async def test_no_input_is_refused_and_asked_again(flows: FlowSet) -> None:
    sim = await run(flows, ["", "3"])
    menu = [(e.digits, e.result) for e in sim.result.path if e.node == "main_menu"]
    assert menu == [(None, "no_input"), ("3", "chosen")]


async def test_input_after_the_hangup_is_never_read(flows: FlowSet) -> None:
    sim = await run(flows, ["1", "H", "2", "0"])
    assert sim.session.remaining_inputs == ["2", "0"]
    assert sim.session.commands[-1].startswith('GET OPTION "callcenter/flows/en/product_guide-')
    assert sim.result.outcome is Outcome.HUNG_UP_IN_IVR


async def test_a_call_that_hangs_up_before_the_answer(flows: FlowSet) -> None:
    sim = await run(flows, ["1"], script=Script(inputs=["1"], hangup_at=1))
    assert sim.session.commands == ["ANSWER"]
    assert [(e.node, e.step, e.result) for e in sim.result.path] == [("entry", "answer", "caller_hangup")]
    assert sim.result.outcome is Outcome.HUNG_UP_IN_IVR


async def test_two_hundred_digits_are_cut_to_the_code_length_by_asterisk(flows: FlowSet) -> None:
    # GET DATA stops at max_digits: the engine sees 8 keys, a well-formed code that is not in the catalog.
    sim = await run(flows, ["1", "1", "1" * 200, "0"])
    assert catalog(sim).lookups == ["11111111"]
    assert "not_found" in results(sim, "lookup")


async def test_an_input_step_asks_again_then_gives_up_to_its_fallback(flows: FlowSet) -> None:
    # Silence, then a code too short, then letters: each refused with its own prompt, then the fallback.
    script = Script(inputs=["1", "1", "", "12", "AB12"], raw=True)
    sim = await run(flows, [], script=script)
    assert results(sim, "input") == ["no_input", "too_short", "not_digits", "retries_exhausted"]
    said = spoken(sim)
    assert said.count("Sorry, we did not hear your choice.") == 1
    assert said.count("Sorry, a product code is four to eight digits.") == 2
    assert catalog(sim).lookups == []
    assert "main/agent_fallback" in sim.result.nodes()
    assert sim.result.outcome is Outcome.QUEUED


async def test_two_hundred_digits_handed_back_whole_are_refused_before_any_lookup(flows: FlowSet) -> None:
    script = Script(inputs=["1", "1", "1" * 200, "", "", "0"], raw=True)
    sim = await run(flows, [], script=script)
    assert catalog(sim).lookups == []
    inputs = [e for e in sim.result.path if e.step == "input"]
    assert inputs[0].result == "too_long"
    assert inputs[0].digits is not None
    assert len(inputs[0].digits) <= 65
    assert "Sorry, a product code is four to eight digits." in spoken(sim)


@pytest.mark.parametrize(
    ("typed", "verdict"),
    [
        ("12A4", "not_digits"),
        ("1 2 3 4", "not_digits"),
        ("12*4", "no_match"),
        ("123", "too_short"),
        ("1001' OR '1'='1", "too_long"),
        ("1'--", "not_digits"),
        ("1;DROP TABLE products", "too_long"),
    ],
)
async def test_bad_product_codes_are_refused_before_any_lookup(flows: FlowSet, typed: str, verdict: str) -> None:
    script = Script(inputs=["1", "1", typed, "", "", "0"], raw=True)
    sim = await run(flows, [], script=script)
    assert catalog(sim).lookups == []
    first = next(e for e in sim.result.path if e.step == "input")
    assert first.result == verdict
    assert sim.result.outcome is Outcome.QUEUED


async def test_a_product_code_carrying_sql_reaches_the_catalog_only_as_data(flows: FlowSet) -> None:
    # Only keys a phone can send ever get past the input step; and the catalog receives whatever it is given
    # as a value, so a real catalog binds it as a parameter.
    sim = await run(flows, ["1", "1", "1001#", "1", "2001#", "0"])
    assert catalog(sim).lookups == ["1001", "2001"]
    assert all(code.isdigit() for code in catalog(sim).lookups)
    assert any("No longer sold." in text for text in spoken(sim))


@settings(max_examples=80, deadline=None)
@given(typed=st.text(max_size=250))
def test_whatever_is_typed_only_well_formed_codes_reach_the_catalog(flows: FlowSet, typed: str) -> None:
    for raw in (True, False):
        script = Script(inputs=["1", "1", typed, typed, typed], raw=raw)
        sim = asyncio.run(simulate(flows, "main", at=OPEN, ports=demo_ports(), script=script))
        assert all(re.fullmatch(r"[0-9]{4,8}", code) for code in catalog(sim).lookups)
        assert sim.result.outcome in (Outcome.QUEUED, Outcome.HUNG_UP_IN_IVR)


async def test_keys_asterisk_can_send_but_are_not_digits_are_refused(flows: FlowSet) -> None:
    # RFC 4733 carries A-D too; GET DATA hands them over as typed.
    sim = await run(flows, ["1", "1", "AB12#", "", "", "0"])
    first = next(e for e in sim.result.path if e.step == "input")
    assert (first.digits, first.result) == ("AB12", "not_digits")
    assert catalog(sim).lookups == []


async def test_control_characters_in_keys_are_not_stored_raw(flows: FlowSet) -> None:
    sim = await run(flows, [], script=Script(inputs=["\x1b[2J"], raw=True))
    first = next(e for e in sim.result.path if e.step == "menu")
    assert first.result == "invalid"
    assert first.digits is not None
    assert "\x1b" not in first.digits


# -- engine guards --------------------------------------------------------------------------------------


def tiny_flows(text: str, tmp_path: Path) -> FlowSet:
    (tmp_path / "main.yaml").write_text(text, encoding="utf-8")
    from ivr_flows.validator import check_path

    return check_path(tmp_path).flows


def engine_for(
    flow_set: FlowSet, flow_ports: FlowPorts | None = None, *, at: datetime = OPEN, **kw: object
) -> FlowEngine:
    return FlowEngine(
        flow_set,
        ports=flow_ports or in_memory_ports(),
        bus=Bus(),
        prompts=DryPrompts(),
        queues={"general": "support", "expert": "expert"},
        clock=FakeClock(at),
        **kw,  # type: ignore[arg-type]
    )


async def test_a_flow_that_loops_without_listening_is_stopped(tmp_path: Path) -> None:
    flow_set = tiny_flows("name: main\nnodes:\n  a: {goto: b}\n  b: {goto: a}\n", tmp_path)
    session = ScriptedSession([])
    result = await engine_for(flow_set, max_steps=50).run(session)
    assert result.outcome is Outcome.ERROR
    assert len(result.path) == 51
    assert session.variables_set == {dialplan.VAR_ACTION: dialplan.ACTION_FALLBACK}


async def test_a_closing_goto_is_not_a_step_of_the_path(tmp_path: Path) -> None:
    text = """\
name: main
prompts:
  hello: {en: "Hello."}
nodes:
  start:
    - play: hello
    - goto: hop
  hop: {goto: done}
  done: hangup
"""
    result = await engine_for(tiny_flows(text, tmp_path)).run(ScriptedSession([]))
    assert result.outcome is Outcome.HANGUP
    # start's goto ends its node without an entry; hop is nothing but a goto and keeps its step.
    assert [(e.node, e.step, e.detail) for e in result.path] == [
        ("start", "play", "hello"),
        ("hop", "goto", "done"),
        ("done", "hangup", None),
    ]
    assert result.nodes() == ["main/start", "main/hop", "main/done"]


async def test_the_result_is_the_published_ivr_ended_data(flows: FlowSet) -> None:
    bus = Bus()
    ended: list[IvrEnded] = []
    bus.subscribe(IvrEnded, ended.append)
    sim = await run(flows, ["1", "1", "1001#", "0"], bus=bus)
    (event,) = ended
    result = sim.result
    assert event_fields(event) == result.data
    assert event.path == [entry.as_dict() for entry in result.path]
    assert (result.outcome, event.outcome) == (Outcome.QUEUED, "queued")
    # Times are numbers in the event; the result shows them as aware datetimes, the end no earlier than the last step.
    assert result.started_at.timestamp() == event.started_at
    assert result.started_at <= result.path[0].wall <= result.path[-1].wall <= result.ended_at
    assert result.duration == pytest.approx(event.ended_at - event.started_at)
    assert result.variables["product_name"] == "Aurora washing machine"


async def test_database_and_error_text_in_path_details_is_clipped(tmp_path: Path) -> None:
    text = """\
name: main
prompts:
  info: {en: "{name}"}
nodes:
  start:
    - set: {product_code: "1001"}
    - lookup: {found: info, not_found: done}
    - hangup
  done: hangup
"""
    hostile = "Evil\r\nname\x1b[2J" + "x" * 500
    flow_ports = in_memory_ports(products=[Product("1001", hostile, Decimal("9.90"), "in_stock", {})])
    result = await engine_for(tiny_flows(text, tmp_path), flow_ports).run(ScriptedSession([]))
    (found,) = [e for e in result.path if e.step == "lookup"]
    assert found.result == "found"
    assert found.detail is not None
    assert found.detail.isprintable()
    assert len(found.detail) <= 201


async def test_the_loop_limit_counts_the_steps_taken(tmp_path: Path) -> None:
    # Each visit of "spin" takes one step (hours, always back to itself); the four plays after it never run.
    text = """\
name: main
prompts:
  hello: {en: "Hello."}
schedules:
  always: {weekly: {mon: ["00:00-24:00"], tue: ["00:00-24:00"], wed: ["00:00-24:00"], thu: ["00:00-24:00"],
           fri: ["00:00-24:00"], sat: ["00:00-24:00"], sun: ["00:00-24:00"]}}
nodes:
  spin:
    - hours: {schedule: always, open: spin, closed: spin}
    - play: hello
    - play: hello
    - play: hello
    - play: hello
"""
    result = await engine_for(tiny_flows(text, tmp_path), max_steps=20).run(ScriptedSession([]))
    assert result.outcome is Outcome.ERROR
    assert [e.step for e in result.path] == ["hours"] * 20 + ["hours"]
    assert result.path[-1].result == "error"
    assert result.path[-1].detail is not None
    assert "20 steps and still going" in result.path[-1].detail


async def test_how_a_recording_ended_is_clipped_in_the_path(flows: FlowSet) -> None:
    class OddAsterisk(ScriptedSession):
        async def record_file(self, *args: Any, **kwargs: Any) -> Any:
            result = await super().record_file(*args, **kwargs)
            return dataclasses.replace(result, reason="dtmf\r\n\x1b[2J" + "z" * 400)

    result = await engine_for(flows, at=CLOSED).run(OddAsterisk(["1"]))
    (recorded,) = [e for e in result.path if e.step == "voicemail"]
    assert recorded.detail is not None
    assert recorded.detail.isprintable()
    assert len(recorded.detail) <= 201


async def test_a_catalog_failure_sends_the_caller_to_the_fallback_queue(flows: FlowSet) -> None:
    class BrokenCatalog:
        async def find(self, code: str) -> Product | None:
            raise ConnectionError("database gone")

    broken = FlowPorts(BrokenCatalog(), InMemoryDirectory(), InMemoryVoicemailSink(), InMemoryRecordingControl())
    sim = await run(flows, ["1", "1", "1001#"], ports=broken)
    assert sim.result.outcome is Outcome.ERROR
    assert isinstance(sim.result.error, ConnectionError)
    assert sim.result.last is not None
    assert (sim.result.last.node, sim.result.last.step, sim.result.last.result) == ("product_code", "lookup", "error")
    assert sim.session.variables_set == {dialplan.VAR_ACTION: dialplan.ACTION_FALLBACK}


async def test_a_lost_connection_ends_the_walk_as_an_error(flows: FlowSet) -> None:
    class LosingSession(ScriptedSession):
        async def get_option(self, filename: str, escape_digits: str, timeout_ms: int = 0):  # type: ignore[no-untyped-def]
            raise AgiConnectionLost("socket closed")

    session = LosingSession(["1"])
    result = await engine_for(flows).run(session)
    assert result.outcome is Outcome.ERROR
    assert isinstance(result.error, AgiConnectionLost)
    assert result.last is not None
    assert result.last.result == "connection_lost"


async def test_a_set_variable_carrying_sql_never_reaches_the_catalog(tmp_path: Path) -> None:
    text = """\
name: main
prompts:
  info: {en: "{name}"}
nodes:
  start:
    - set: {product_code: "1' OR '1'='1"}
    - lookup: {found: info, not_found: done}
    - goto: done
  done: hangup
"""
    flow_set = tiny_flows(text, tmp_path)
    flow_ports = in_memory_ports()
    result = await engine_for(flow_set, flow_ports).run(ScriptedSession([]))
    assert isinstance(flow_ports.catalog, InMemoryCatalog)
    assert flow_ports.catalog.lookups == []
    assert [e.result for e in result.path if e.step == "lookup"] == ["invalid_code"]
    assert result.outcome is Outcome.HANGUP


async def test_say_reads_numbers_dates_and_money(tmp_path: Path) -> None:
    text = """\
name: main
languages: [en, zh]
nodes:
  start:
    - set: {amount: "12.05", count: "42", day: "2026-11-23", code: "007"}
    - say: {money: "{amount}"}
    - say: {number: "{count}"}
    - say: {date: "{day}"}
    - say: {digits: "{code}"}
    - switch_language: zh
    - say: {money: "{amount}"}
    - say: {date: today}
    - say: {digits: "{code}"}
    - say: {number: "not a number"}
    - hangup
"""
    flow_set = tiny_flows(text, tmp_path)
    prompts = DryPrompts()
    session = ScriptedSession([])
    engine = FlowEngine(
        flow_set,
        ports=in_memory_ports(),
        bus=Bus(),
        prompts=prompts,
        queues={"general": "support", "expert": "expert"},
        clock=FakeClock(OPEN),
    )
    result = await engine.run(session)
    texts = [p.text for p in prompts.spoken.values()]
    assert texts == ["12 yuan 5 fen", "Monday, November 23, 2026", "12元零5分", "2026年11月23日，星期一", "0 0 7"]  # noqa: RUF001
    assert 'SAY NUMBER 42 ""' in session.commands
    assert 'SAY DIGITS "007" ""' in session.commands
    assert [e.result for e in result.path if e.step == "say"][-1] == "skipped"


def test_the_engine_needs_both_queue_names(flows: FlowSet) -> None:
    with pytest.raises(ValueError, match="expert"):
        FlowEngine(flows, ports=in_memory_ports(), bus=Bus(), prompts=DryPrompts(), queues={"general": "support"})


def test_products_carry_prices_as_decimals() -> None:
    assert Product("1", "x", Decimal("1.10"), "in_stock").price == Decimal("1.10")
