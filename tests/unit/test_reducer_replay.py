"""Replays AMI transcripts recorded from the real sandbox (scripts/record_ami.py) through the parser and reducer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from callcenter.ami.message import AmiMessage, AmiParser, AmiResult
from callcenter.ami.reducer import apply, rebuild, tick
from callcenter.events import AgentStateChanged, CallAnswered, CallEnded, CallOffered, DomainEvent, QueueChanged
from callcenter.model import AgentStatus, CallOutcome, LiveModel

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"
START = 1_000.0
STEP = 0.25  # the transcripts carry no timestamps: each message is a quarter second after the previous one
WRAPUP = {"support": 10.0, "expert": 10.0}


@dataclass
class Replay:
    model: LiveModel
    events: list[DomainEvent] = field(default_factory=list)
    results: dict[str, AmiResult] = field(default_factory=dict)
    # The incremental model just before the reply to each action arrived.
    before_reply: dict[str, LiveModel] = field(default_factory=dict)
    now: float = START


def messages(name: str) -> list[AmiMessage]:
    data = (FIXTURES / f"{name}.ami").read_bytes()
    assert b"\r\n" in data, "the transcript must keep Asterisk's CRLF line ends"
    parser = AmiParser()
    out: list[AmiMessage] = []
    # Fed in small chunks, as a socket would deliver them.
    for offset in range(0, len(data), 97):
        out.extend(parser.feed(data[offset : offset + 97]))
    assert parser.banner is not None
    assert parser.banner.startswith("Asterisk Call Manager/")
    return out


def replay(name: str) -> Replay:
    state = Replay(LiveModel(wrapup=WRAPUP))
    pending: dict[str, tuple[AmiMessage, list[AmiMessage]]] = {}
    for message in messages(name):
        state.now += STEP
        if message.is_response:
            state.before_reply[message.action_id] = state.model
            pending[message.action_id] = (message, [])
            continue
        if message.action_id in pending:
            # A list event answers an action: the connection collects it into the action's result.
            reply, items = pending[message.action_id]
            if message.event_list.lower() == "complete":
                state.results[message.action_id] = AmiResult(reply, tuple(items), message)
            else:
                items.append(message)
            continue
        state.model, produced = apply(state.model, message, state.now)
        state.events.extend(produced)
    return state


def of_type(events: list[DomainEvent], kind: type[T]) -> list[T]:
    return [event for event in events if isinstance(event, kind)]


def test_transcripts_parse_whole() -> None:
    for name in ("answered", "abandoned", "status"):
        parsed = messages(name)
        assert parsed[0].response == "Success"
        assert parsed[-1].response == "Goodbye"


def test_answered_call_has_two_legs_and_the_agent_goes_ringing_on_call_wrap_up() -> None:
    state = replay("answered")
    ended = of_type(state.events, CallEnded)
    assert len(ended) == 1
    call = ended[0].call
    assert len(call.legs) == 2
    assert call.caller_number == "5550101"
    assert call.caller_name == "Ann Answered"
    assert call.did == "4000"
    assert call.queue == "support"
    assert call.agent == "PJSIP/1001"
    assert call.outcome is CallOutcome.ANSWERED
    assert len(call.bridges) == 1
    assert call.talk_time is not None
    assert call.talk_time > 0
    assert call.ended is not None
    assert call.ended > call.started
    assert call.wait_time is not None
    assert call.wait_time >= 0
    # Nothing is left live once the call ended.
    assert state.model.calls == {}
    assert state.model.channels == {}
    assert state.model.queues["support"].waiting == ()

    offered = of_type(state.events, CallOffered)
    answered = of_type(state.events, CallAnswered)
    assert [(e.linkedid, e.agent, e.queue) for e in offered] == [(call.linkedid, "PJSIP/1001", "support")]
    assert [(e.linkedid, e.agent) for e in answered] == [(call.linkedid, "PJSIP/1001")]

    transitions = [(e.old, e.new) for e in of_type(state.events, AgentStateChanged) if e.agent == "PJSIP/1001"]
    assert transitions[:4] == [
        (AgentStatus.LOGGED_OUT, AgentStatus.AVAILABLE),
        (AgentStatus.AVAILABLE, AgentStatus.RINGING),
        (AgentStatus.RINGING, AgentStatus.ON_CALL),
        (AgentStatus.ON_CALL, AgentStatus.WRAP_UP),
    ]
    # The recording removes the member at the end: the seat is logged out (its wrap-up cut short).
    assert transitions[-1][1] is AgentStatus.LOGGED_OUT


def test_answered_call_wrap_up_ends_after_the_queue_wrapup_time() -> None:
    model = LiveModel(wrapup=WRAPUP)
    now = START
    wrap_started = None
    for message in messages("answered"):
        if message.event == "QueueMemberRemoved":
            break
        now += STEP
        model, _ = apply(model, message, now)
        if message.event == "AgentComplete":
            wrap_started = now
    assert wrap_started is not None
    agent = model.agents["PJSIP/1001"]
    assert agent.status is AgentStatus.WRAP_UP
    assert agent.since == wrap_started
    same, events = tick(model, wrap_started + 9.0)
    assert same is model
    assert events == []
    model, events = tick(model, wrap_started + 10.5)
    assert model.agents["PJSIP/1001"].status is AgentStatus.AVAILABLE
    assert model.agents["PJSIP/1001"].since == wrap_started + 10.0
    assert [(e.old, e.new) for e in of_type(events, AgentStateChanged)] == [
        (AgentStatus.WRAP_UP, AgentStatus.AVAILABLE)
    ]


def test_caller_who_hangs_up_in_the_queue_is_abandoned_with_the_wait_time() -> None:
    state = replay("abandoned")
    ended = of_type(state.events, CallEnded)
    assert len(ended) == 1
    call = ended[0].call
    assert call.outcome is CallOutcome.ABANDONED
    assert call.caller_number == "5550102"
    assert call.queue == "support"
    assert call.agent == ""
    assert call.answered_at is None
    assert call.talk_time is None
    assert call.wait_time is not None
    assert call.wait_time > 0
    assert state.model.queues["support"].abandoned == 1
    assert state.model.queues["support"].waiting == ()
    changes = [e.waiting for e in of_type(state.events, QueueChanged) if e.queue == "support"]
    assert 1 in changes
    assert changes[-1] == 0
    assert of_type(state.events, CallOffered) == []


def test_rebuild_from_list_responses_matches_the_incremental_model_mid_call() -> None:
    state = replay("status")
    core_id = next(aid for aid, r in state.results.items() if r.events and r.events[0].event == "CoreShowChannel")
    incremental = state.before_reply[core_id]
    assert len(incremental.channels) == 3
    results = list(state.results.values())
    rebuilt, events = rebuild(incremental, results, state.now)

    def channels(model: LiveModel) -> dict[str, tuple[str, str, int, str, str]]:
        return {
            uid: (ch.name, ch.linkedid, ch.state, ch.bridge_id, ch.caller_number) for uid, ch in model.channels.items()
        }

    assert channels(rebuilt) == channels(incremental)
    assert rebuilt.calls.keys() == incremental.calls.keys()
    for linkedid, call in incremental.calls.items():
        assert rebuilt.calls[linkedid].legs == call.legs
        assert rebuilt.calls[linkedid].started == call.started
        assert rebuilt.calls[linkedid].agent == call.agent
    # One caller waits (the other talks to the agent); the rebuilt queue agrees, and keeps the join time seen.
    waiting = incremental.queues["support"].waiting
    assert [c.caller_number for c in waiting] == ["5550104"]
    assert rebuilt.queues["support"].waiting == waiting
    assert rebuilt.queues["support"].members.keys() == {"PJSIP/1002"}
    assert rebuilt.agents["PJSIP/1002"].status is AgentStatus.ON_CALL
    assert rebuilt.agents["PJSIP/1002"].since == incremental.agents["PJSIP/1002"].since
    assert "expert" in rebuilt.queues
    # Nothing ended, and the agent did not change state.
    assert of_type(events, CallEnded) == []
    assert of_type(events, AgentStateChanged) == []


def test_rebuild_from_scratch_gives_the_same_channels_and_calls() -> None:
    state = replay("status")
    core_id = next(aid for aid, r in state.results.items() if r.events and r.events[0].event == "CoreShowChannel")
    incremental = state.before_reply[core_id]
    rebuilt, events = rebuild(LiveModel(wrapup=WRAPUP), list(state.results.values()), state.now)
    assert rebuilt.channels.keys() == incremental.channels.keys()
    for linkedid, call in incremental.calls.items():
        fresh = rebuilt.calls[linkedid]
        assert sorted(fresh.legs) == sorted(call.legs)
        assert fresh.caller_number == call.caller_number
        assert fresh.did == ""  # the number dialled is not in CoreShowChannels
        assert fresh.agent == call.agent
    assert rebuilt.agents["PJSIP/1002"].status is AgentStatus.ON_CALL
    assert rebuilt.agents["PJSIP/1002"].linkedid == incremental.agents["PJSIP/1002"].linkedid
    assert [(e.agent, e.new) for e in of_type(events, AgentStateChanged)] == [("PJSIP/1002", AgentStatus.ON_CALL)]


def test_rebuild_after_the_calls_ended_closes_them() -> None:
    state = replay("status")
    core_id = next(aid for aid, r in state.results.items() if r.events and r.events[0].event == "CoreShowChannel")
    incremental = state.before_reply[core_id]
    empty = [AmiResult(AmiMessage.of(("Response", "Success")))]
    rebuilt, events = rebuild(incremental, empty, state.now + 30)
    closed = sorted(e.call.linkedid for e in of_type(events, CallEnded))
    assert closed == sorted(incremental.calls)
    assert all(e.call.ended == state.now + 30 for e in of_type(events, CallEnded))
    assert rebuilt.calls == {}
    assert rebuilt.channels == {}
    assert rebuilt.agents["PJSIP/1002"].status is AgentStatus.LOGGED_OUT


@pytest.mark.parametrize("name", ["answered", "abandoned", "status"])
def test_replaying_twice_gives_equal_models(name: str) -> None:
    assert replay(name).model == replay(name).model
