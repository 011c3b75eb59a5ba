"""The reducer never changes a model it was given: a reader holding an old model keeps seeing what it saw.

The model's classes are frozen, so the risk is in what they hold: the mappings (channels, calls, queues, agents,
a queue's members) are plain dicts that the reducer copies before it changes them. Every model a replay goes
through is kept with a deep copy taken before the next event, and compared with it at the end.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from callcenter.ami.message import AmiMessage, AmiParser, AmiResult
from callcenter.ami.reducer import apply, rebuild, tick
from callcenter.model import AgentState, AgentStatus, Channel, LiveModel, QueueMember, QueueState

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"
WRAPUP = {"support": 10.0, "expert": 10.0}


def transcript(name: str) -> list[AmiMessage]:
    parser = AmiParser()
    return parser.feed((FIXTURES / f"{name}.ami").read_bytes())


def ev(name: str, **headers: str) -> AmiMessage:
    return AmiMessage.of(("Event", name), *headers.items())


def test_no_model_a_replay_went_through_changes_afterwards() -> None:
    # Every event of the three transcripts, the list events that answer actions included (they are upserts),
    # one call after the other, with time for the wrap-ups to run out in between.
    messages = [m for name in ("answered", "abandoned", "status") for m in transcript(name) if m.is_event]
    kept: list[tuple[LiveModel, LiveModel]] = []
    model = LiveModel(wrapup=dict(WRAPUP))
    now = 1_000.0
    changed = 0
    for message in messages:
        now += 0.5
        kept.append((model, copy.deepcopy(model)))
        before = model
        model, _ = apply(model, message, now)
        changed += model is not before
    assert changed > len(messages) // 2
    kept.append((model, copy.deepcopy(model)))
    ticked, _ = tick(model, now + 60)
    results = [
        AmiResult(AmiMessage.of(("Response", "Success")), tuple(m for m in messages if m.event == name))
        for name in ("CoreShowChannel", "QueueMember", "QueueEntry", "QueueParams")
    ]
    rebuilt, _ = rebuild(ticked, results, now + 61)
    assert rebuilt is not ticked

    for held, snapshot in kept:
        assert held == snapshot
        for name in ("channels", "calls", "queues", "agents"):
            assert dict(getattr(held, name)) == dict(getattr(snapshot, name))
        for queue_name, queue in held.queues.items():
            assert dict(queue.members) == dict(snapshot.queues[queue_name].members)


def test_a_mapping_an_old_model_shares_with_a_reader_is_never_written() -> None:
    model, _ = apply(LiveModel(), ev("Newchannel", Uniqueid="1.1", Linkedid="1.1", Channel="PJSIP/pstn-1"), 1.0)
    channels, calls = model.channels, model.calls
    seen = (dict(channels), dict(calls))
    later, _ = apply(model, ev("Newstate", Uniqueid="1.1", Linkedid="1.1", ChannelState="6"), 2.0)
    later, _ = apply(later, ev("Hangup", Uniqueid="1.1", Linkedid="1.1"), 3.0)
    assert later.channels == {}
    assert later.calls == {}
    assert (dict(channels), dict(calls)) == seen
    assert model.channels is channels
    assert model.channels["1.1"].state == 0


def test_an_event_that_changes_nothing_gives_back_the_same_model() -> None:
    status = ev("QueueMemberStatus", Queue="support", Interface="PJSIP/1001", MemberName="Ann", Status="1", Paused="0")
    model, _ = apply(LiveModel(), status, 1.0)
    assert model.agents["PJSIP/1001"].status is AgentStatus.AVAILABLE
    same, events = apply(model, status, 2.0)
    assert same is model
    assert events == []
    channel, _ = apply(LiveModel(), ev("Newchannel", Uniqueid="1.1", Linkedid="1.1", Channel="PJSIP/pstn-1"), 1.0)
    assert apply(channel, ev("BridgeLeave", Uniqueid="1.1", BridgeUniqueid="b1"), 2.0)[0] is channel


@pytest.mark.parametrize(
    "value",
    [
        Channel("1.1", "PJSIP/pstn-1", "1.1"),
        QueueMember("PJSIP/1001", "Ann"),
        QueueState("support"),
        AgentState("PJSIP/1001"),
        LiveModel(),
    ],
)
def test_model_values_stay_frozen_with_their_quicker_constructor(value: object) -> None:
    name = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, name, "changed")
    assert copy.deepcopy(value) == value
    assert dataclasses.replace(value) == value  # type: ignore[type-var]


def test_defaults_and_default_factories_are_those_of_the_dataclass() -> None:
    first, second = LiveModel(), LiveModel()
    assert first.channels == {}
    assert first.channels is not second.channels
    assert QueueState("support").members == {}
    assert QueueState("a").members is not QueueState("b").members
    assert AgentState("PJSIP/1001") == AgentState(
        interface="PJSIP/1001", status=AgentStatus.LOGGED_OUT, since=0.0, queues=frozenset(), wrapup_until=None
    )
    with pytest.raises(TypeError):
        Channel("1.1")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Channel("1.1", "PJSIP/pstn-1", "1.1", colour="red")  # type: ignore[call-arg]
