"""Queue segments on calls (one per stay in a queue) and the DID from the CC_DID channel variable."""

from __future__ import annotations

from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.ami.reducer import apply, rebuild
from callcenter.events import CallAnswered, CallEnded, DomainEvent
from callcenter.model import Call, CallOutcome, LiveModel, QueueSegment

CALLER = "1700000000.1"


def ev(name: str, *repeated: tuple[str, str], **headers: str) -> AmiMessage:
    return AmiMessage.of(("Event", name), *repeated, *headers.items())


def feed(model: LiveModel, *timed: tuple[float, AmiMessage]) -> tuple[LiveModel, list[DomainEvent]]:
    out: list[DomainEvent] = []
    for now, event in timed:
        model, produced = apply(model, event, now)
        out.extend(produced)
    return model, out


def new_channel(uid: str, name: str, *variables: str, exten: str = "s") -> AmiMessage:
    chanvars = tuple(("ChanVariable", item) for item in variables)
    return ev(
        "Newchannel",
        *chanvars,
        Channel=name,
        Uniqueid=uid,
        Linkedid=CALLER,
        ChannelState="4",
        CallerIDNum="+8613800000000",
        Exten=exten,
    )


def join(queue: str, position: str = "1") -> AmiMessage:
    return ev(
        "QueueCallerJoin", Queue=queue, Uniqueid=CALLER, Linkedid=CALLER, Channel="PJSIP/pstn-1", Position=position
    )


def connect(queue: str, interface: str, hold: str) -> AmiMessage:
    return ev("AgentConnect", Queue=queue, Interface=interface, Linkedid=CALLER, HoldTime=hold)


def ended_of(events: list[DomainEvent]) -> Call:
    (ended,) = [e for e in events if isinstance(e, CallEnded)]
    return ended.call


def test_an_expert_handoff_leaves_two_segments_with_their_own_agents_waits_and_talk() -> None:
    wrapup = {"general": 10.0, "expert": 30.0}
    model, events = feed(
        LiveModel(wrapup=wrapup),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000", exten="4000")),
        (101.0, join("general")),
        (104.0, new_channel("1700000000.2", "PJSIP/1001-00000002")),
        (105.0, connect("general", "PJSIP/1001", "4")),
        (105.0, ev("QueueCallerLeave", Queue="general", Uniqueid=CALLER)),
        (135.0, ev("AgentComplete", Queue="general", Interface="PJSIP/1001", Linkedid=CALLER, TalkTime="30")),
        (135.5, ev("Hangup", Uniqueid="1700000000.2", Linkedid=CALLER)),
        (136.0, join("expert")),
        (140.0, new_channel("1700000000.3", "PJSIP/2001-00000003")),
        (146.0, connect("expert", "PJSIP/2001", "10")),
    )
    live = model.calls[CALLER]
    assert [s.queue for s in live.segments] == ["general", "expert"]
    assert live.segments[1] == QueueSegment("expert", 136.0, "PJSIP/2001", answered_at=146.0, wait_time=10.0)
    assert [(e.queue, e.agent, e.wait_time) for e in events if isinstance(e, CallAnswered)] == [
        ("general", "PJSIP/1001", 4.0),
        ("expert", "PJSIP/2001", 10.0),
    ]
    model, events = feed(
        model,
        (200.0, ev("Hangup", Uniqueid="1700000000.3", Linkedid=CALLER)),
        (200.0, ev("Hangup", Uniqueid=CALLER, Linkedid=CALLER)),
    )
    call = ended_of(events)
    assert CALLER not in model.calls
    assert call.segments == (
        QueueSegment("general", 101.0, "PJSIP/1001", answered_at=105.0, wait_time=4.0, talk_time=30.0),
        # Nobody sent AgentComplete for the expert: the talk runs until the call ended.
        QueueSegment("expert", 136.0, "PJSIP/2001", answered_at=146.0, wait_time=10.0, talk_time=54.0),
    )
    assert call.did == "4000"
    assert call.outcome is CallOutcome.ANSWERED
    # The call's scalar fields describe its last queue.
    assert (call.queue, call.agent, call.answered_at) == ("expert", "PJSIP/2001", 146.0)
    assert call.ended == 200.0


def test_abandoning_a_queue_marks_the_segment_abandoned_with_the_wait() -> None:
    model, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", exten="4000")),
        (102.0, join("general")),
        (127.0, ev("QueueCallerAbandon", Queue="general", Uniqueid=CALLER, Linkedid=CALLER, HoldTime="25")),
    )
    call = model.calls[CALLER]
    assert call.segments == (QueueSegment("general", 102.0, wait_time=25.0, abandoned=True),)
    assert call.outcome is CallOutcome.ABANDONED
    assert call.wait_time == 25.0
    assert model.queues["general"].abandoned == 1
    _, events = feed(model, (128.0, ev("Hangup", Uniqueid=CALLER, Linkedid=CALLER)))
    ended = ended_of(events)
    assert ended.segments[0].abandoned is True
    assert ended.segments[0].talk_time is None


def test_an_abandon_without_hold_time_counts_from_the_join() -> None:
    model, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1")),
        (110.0, join("general")),
        (118.5, ev("QueueCallerAbandon", Queue="general", Uniqueid=CALLER, Linkedid=CALLER)),
    )
    assert model.calls[CALLER].segments[0].wait_time == 8.5


def test_abandoning_the_expert_queue_keeps_the_answered_first_segment() -> None:
    model, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1")),
        (101.0, join("general")),
        (103.0, connect("general", "PJSIP/1001", "2")),
        (130.0, ev("AgentComplete", Queue="general", Interface="PJSIP/1001", Linkedid=CALLER, TalkTime="27")),
        (131.0, join("expert")),
        (171.0, ev("QueueCallerAbandon", Queue="expert", Uniqueid=CALLER, Linkedid=CALLER, HoldTime="40")),
    )
    call = model.calls[CALLER]
    general, expert = call.segments
    assert (general.agent, general.abandoned, general.talk_time) == ("PJSIP/1001", False, 27.0)
    assert (expert.agent, expert.abandoned, expert.wait_time) == ("", True, 40.0)
    # The caller talked to a seat: the call stays answered.
    assert call.outcome is CallOutcome.ANSWERED


def test_newchannel_with_cc_did_sets_the_did() -> None:
    model, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_REASON=", "CC_DID=4000", exten="s")),
    )
    assert model.calls[CALLER].did == "4000"


def test_a_later_event_carrying_cc_did_fills_it_and_an_empty_one_changes_nothing() -> None:
    # At Newchannel the dialplan has not set CC_DID yet; the next channel event carries it.
    model, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_DID=", exten="4001")),
        (101.0, ev("Newstate", ("ChanVariable", "CC_DID=4000"), Uniqueid=CALLER, Linkedid=CALLER, ChannelState="6")),
    )
    assert model.calls[CALLER].did == "4000"
    # The agent's leg does not inherit CC_DID: its empty value leaves the call's DID alone.
    model, _ = feed(model, (105.0, new_channel("1700000000.2", "PJSIP/1001-00000002", "CC_DID=")))
    assert model.calls[CALLER].did == "4000"


def core_show_channel(uid: str, name: str, *variables: str, bridge: str = "") -> AmiMessage:
    chanvars = tuple(("ChanVariable", item) for item in variables)
    return ev(
        "CoreShowChannel",
        *chanvars,
        Channel=name,
        Uniqueid=uid,
        Linkedid=CALLER,
        ChannelState="6",
        CallerIDNum="+8613800000000",
        Context="cc-queue",
        Exten="s",
        Duration="00:00:30",
        BridgeId=bridge,
    )


def snapshot(*events: AmiMessage) -> list[AmiResult]:
    return [AmiResult(AmiMessage.of(("Response", "Success"), ("EventList", "start")), tuple(events))]


def test_a_rebuild_reads_the_did_from_cc_did() -> None:
    results = snapshot(
        core_show_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000", bridge="b-1"),
        core_show_channel("1700000000.2", "PJSIP/1001-00000002", "CC_DID=", bridge="b-1"),
    )
    rebuilt, _ = rebuild(LiveModel(), results, 500.0)
    call = rebuilt.calls[CALLER]
    assert call.did == "4000"
    assert call.started == 470.0
    # The Exten of a snapshot is where the dialplan is now, never taken for the DID.
    rebuilt, _ = rebuild(LiveModel(), snapshot(core_show_channel(CALLER, "PJSIP/pstn-1")), 500.0)
    assert rebuilt.calls[CALLER].did == ""


def test_a_rebuild_with_the_agent_leg_listed_first_still_finds_the_did() -> None:
    results = snapshot(
        core_show_channel("1700000000.2", "PJSIP/1001-00000002", "CC_DID="),
        core_show_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000"),
    )
    rebuilt, _ = rebuild(LiveModel(), results, 500.0)
    assert rebuilt.calls[CALLER].did == "4000"


def test_a_rebuild_keeps_the_segments_it_knew() -> None:
    known, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000")),
        (101.0, join("general")),
        (104.0, connect("general", "PJSIP/1001", "3")),
    )
    results = snapshot(core_show_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000", bridge="b-1"))
    rebuilt, events = rebuild(known, results, 130.0)
    call = rebuilt.calls[CALLER]
    assert call.segments == known.calls[CALLER].segments
    assert call.segments[0].agent == "PJSIP/1001"
    assert call.did == "4000"
    assert not [e for e in events if isinstance(e, CallEnded)]


def test_a_second_rebuild_fills_a_did_the_first_could_not_tell() -> None:
    # The first snapshot came before the dialplan set CC_DID.
    first, _ = rebuild(LiveModel(), snapshot(core_show_channel(CALLER, "PJSIP/pstn-1", "CC_DID=")), 100.0)
    assert first.calls[CALLER].did == ""
    second, _ = rebuild(first, snapshot(core_show_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000")), 110.0)
    assert second.calls[CALLER].did == "4000"
    assert second.calls[CALLER].started == first.calls[CALLER].started


def test_a_rebuild_closes_a_call_asterisk_lost_as_unobserved_with_its_history_and_no_invented_talk() -> None:
    known, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000")),
        (101.0, join("general")),
        (104.0, connect("general", "PJSIP/1001", "3")),
    )
    _, events = rebuild(known, [AmiResult(AmiMessage.of(("Response", "Success")))], 160.0)
    (ended,) = [event for event in events if isinstance(event, CallEnded)]
    # The engine did not see the end: when it was and how long they talked are Asterisk's event log's to say.
    assert ended.unobserved
    assert ended.call.ended == 160.0
    assert ended.call.segments == (
        QueueSegment("general", 101.0, "PJSIP/1001", answered_at=104.0, wait_time=3.0, talk_time=None),
    )
    assert ended.call.talk_time is None
    assert ended.call.did == "4000"


def _adopted_and_completed(complete_at: float) -> list[DomainEvent]:
    """A call answered before the engine (re)started: the resync adopts it from the listings, which say nothing
    of queues, and the seat's AgentComplete and the hangups come afterwards."""
    results = snapshot(
        core_show_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000", bridge="b-1"),
        core_show_channel("1700000000.2", "PJSIP/1001-00000002", "CC_DID=", bridge="b-1"),
    )
    adopted, _ = rebuild(LiveModel(wrapup={"general": 0.0}), results, 500.0)
    assert adopted.calls[CALLER].segments == ()
    _, events = feed(
        adopted,
        (
            complete_at,
            ev(
                "AgentComplete",
                Queue="general",
                Interface="PJSIP/1001",
                Linkedid=CALLER,
                HoldTime="4",
                TalkTime="40",
                Reason="caller",
            ),
        ),
        (complete_at, ev("Hangup", Uniqueid=CALLER, Channel="PJSIP/pstn-1", Linkedid=CALLER)),
        (complete_at, ev("Hangup", Uniqueid="1700000000.2", Channel="PJSIP/1001-00000002", Linkedid=CALLER)),
    )
    return events


def test_a_call_adopted_by_a_resync_is_answered_by_the_seat_its_agent_complete_names() -> None:
    call = ended_of(_adopted_and_completed(520.0))
    # The answer is the end less the talk time, the wait is Asterisk's HoldTime: not an abandoned segment.
    assert call.segments == (
        QueueSegment(
            queue="general",
            entered=476.0,
            agent="PJSIP/1001",
            answered_at=480.0,
            wait_time=4.0,
            talk_time=40.0,
        ),
    )
    assert call.agent == "PJSIP/1001"
    assert call.answered_at == 480.0
    assert call.outcome is CallOutcome.ANSWERED
    assert (call.wait_time, call.talk_time) == (4.0, 40.0)


def test_agent_complete_of_a_call_seen_answered_only_adds_the_talk_time() -> None:
    model, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000")),
        (101.0, join("general")),
        (104.0, connect("general", "PJSIP/1001", "3")),
        (
            130.0,
            ev("AgentComplete", Queue="general", Interface="PJSIP/1001", Linkedid=CALLER, HoldTime="3", TalkTime="26"),
        ),
    )
    (segment,) = model.calls[CALLER].segments
    assert (segment.entered, segment.answered_at, segment.wait_time, segment.talk_time) == (101.0, 104.0, 3.0, 26.0)


def test_a_seat_idle_at_a_rebuild_is_on_no_call_whatever_it_was_on_before() -> None:
    known, _ = feed(
        LiveModel(),
        (100.0, new_channel(CALLER, "PJSIP/pstn-1", "CC_DID=4000")),
        (101.0, join("general")),
        (104.0, connect("general", "PJSIP/1001", "3")),
    )
    assert known.agents["PJSIP/1001"].linkedid == CALLER
    # The call ended while the AMI was cut: the listing shows the member free and no channel.
    member = ev("QueueMember", Queue="general", Name="PJSIP/1001", Location="PJSIP/1001", Status="1", InCall="0")
    listing = [AmiResult(AmiMessage.of(("Response", "Success"), ("EventList", "start")), (member,))]
    rebuilt, _ = rebuild(known, listing, 160.0)
    seat = rebuilt.agents["PJSIP/1001"]
    assert seat.status.value == "available"
    assert seat.linkedid == ""


def test_the_callers_own_channel_names_the_caller_whichever_leg_came_first() -> None:
    # After a reconnect the first event of a call may be its agent's leg, whose caller ID is the seat's.
    agent_leg = ev("Newstate", Uniqueid="1700000000.2", Linkedid=CALLER, Channel="PJSIP/1008-00000002",
                   ChannelState="6", CallerIDNum="1008", CallerIDName="Agent 8")  # fmt: skip
    model, _ = feed(LiveModel(), (100.0, agent_leg))
    assert model.calls[CALLER].caller_number == "1008"
    caller_leg = ev("Newstate", Uniqueid=CALLER, Linkedid=CALLER, Channel="PJSIP/pstn-1", ChannelState="6",
                    CallerIDNum="770222", CallerIDName="Caller")  # fmt: skip
    model, _ = feed(model, (101.0, caller_leg))
    assert (model.calls[CALLER].caller_number, model.calls[CALLER].caller_name) == ("770222", "Caller")
    # The agent's leg never takes it back.
    model, _ = feed(model, (102.0, agent_leg))
    assert model.calls[CALLER].caller_number == "770222"


def test_a_rebuild_corrects_a_caller_taken_from_the_agents_leg() -> None:
    agent_leg = ev("Newstate", Uniqueid="1700000000.2", Linkedid=CALLER, Channel="PJSIP/1008-00000002",
                   ChannelState="6", CallerIDNum="1008")  # fmt: skip
    known, _ = feed(LiveModel(), (100.0, agent_leg))
    results = snapshot(
        core_show_channel("1700000000.2", "PJSIP/1008-00000002", bridge="b-1"),
        core_show_channel(CALLER, "PJSIP/pstn-1", bridge="b-1"),
    )
    rebuilt, _ = rebuild(known, results, 130.0)
    assert rebuilt.calls[CALLER].caller_number == "+8613800000000"
    # A listing without the caller's own channel leaves the caller the model had.
    rebuilt, _ = rebuild(known, snapshot(core_show_channel("1700000000.2", "PJSIP/1008-00000002")), 130.0)
    assert rebuilt.calls[CALLER].caller_number == "1008"
