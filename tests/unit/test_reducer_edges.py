"""Edge cases of the reducer, with hand-made events."""

from __future__ import annotations

from callcenter.ami.message import AmiMessage
from callcenter.ami.reducer import HANDLERS, apply
from callcenter.events import AgentStateChanged, CallEnded, CallTransferred, DomainEvent
from callcenter.model import AgentStatus, LiveModel
from tests.unit.test_callerid import asterisk_escape_c, sip_quoted


def ev(name: str, **headers: str) -> AmiMessage:
    return AmiMessage.of(("Event", name), *headers.items())


def run(model: LiveModel, *events: AmiMessage, start: float = 100.0) -> tuple[LiveModel, list[DomainEvent]]:
    out: list[DomainEvent] = []
    for index, event in enumerate(events):
        model, produced = apply(model, event, start + index)
        out.extend(produced)
    return model, out


def channel(uid: str, name: str, linkedid: str, **extra: str) -> AmiMessage:
    return ev("Newchannel", Channel=name, Uniqueid=uid, Linkedid=linkedid, ChannelState="4", **extra)


def member(kind: str, queue: str = "support", paused: str = "0", reason: str = "") -> AmiMessage:
    return ev(kind, Queue=queue, Interface="PJSIP/1001", MemberName="Ann", Paused=paused, PausedReason=reason)


def states(events: list[DomainEvent]) -> list[AgentStatus]:
    return [e.new for e in events if isinstance(e, AgentStateChanged)]


def test_every_event_the_brief_names_has_a_handler() -> None:
    names = {"Newchannel", "Newstate", "NewCallerid", "Hangup", "BridgeEnter", "BridgeLeave", "QueueCallerJoin"}
    names |= {"QueueCallerLeave", "QueueCallerAbandon", "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause"}
    names |= {"QueueMemberStatus", "AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer", "FullyBooted"}
    names |= {"CoreShowChannel", "QueueParams", "QueueMember", "QueueEntry", "QueueSummary"}
    assert names <= HANDLERS.keys()


def test_unknown_events_and_replies_change_nothing() -> None:
    model = LiveModel()
    for message in (ev("VarSet", Variable="X"), AmiMessage.of(("Response", "Success")), ev("Hangup", Uniqueid="9")):
        same, events = apply(model, message, 1.0)
        assert same is model
        assert events == []


def test_hostile_caller_id_is_kept_verbatim_and_follows_new_callerid() -> None:
    hostile = '<script>alert(1)</script> "O\'Brien" \\ 王芳'
    # As the AMI carries it: the SIP phone's quoted pairs, then the manager's C escapes.
    escaped = asterisk_escape_c(sip_quoted(hostile))
    model, _ = run(LiveModel(), channel("1.1", "PJSIP/pstn-1", "1.1", CallerIDNum="555", CallerIDName=escaped))
    assert model.calls["1.1"].caller_name == hostile
    model, _ = run(model, ev("NewCallerid", Uniqueid="1.1", Linkedid="1.1", CallerIDNum="556", CallerIDName="X"))
    assert (model.calls["1.1"].caller_number, model.calls["1.1"].caller_name) == ("556", "X")
    # A later leg's caller id does not rename the call.
    model, _ = run(model, channel("1.2", "PJSIP/1001-2", "1.1", CallerIDNum="1001", CallerIDName="Agent"))
    assert model.calls["1.1"].caller_number == "556"


def test_a_call_ends_only_when_its_last_leg_hangs_up() -> None:
    model, _ = run(LiveModel(), channel("1.1", "PJSIP/pstn-1", "1.1"), channel("1.2", "PJSIP/1001-2", "1.1"))
    model, events = run(model, ev("Hangup", Uniqueid="1.2", Linkedid="1.1"), start=200)
    assert events == []
    assert "1.1" in model.calls
    model, events = run(model, ev("Hangup", Uniqueid="1.1", Linkedid="1.1"), start=210)
    assert [type(e) for e in events] == [CallEnded]
    ended = events[0]
    assert isinstance(ended, CallEnded)
    assert ended.call.legs == ("1.1", "1.2")
    assert ended.call.ended == 210
    assert model.calls == {}
    assert model.channels == {}


def test_queue_positions_close_up_when_a_caller_leaves() -> None:
    joins = [
        ev("QueueCallerJoin", Queue="support", Uniqueid=f"{i}.0", Linkedid=f"{i}.0", Channel=f"c{i}", Position=str(i))
        for i in (1, 2, 3)
    ]
    model, _ = run(LiveModel(), *joins)
    model, _ = run(model, ev("QueueCallerLeave", Queue="support", Uniqueid="1.0"))
    assert [(c.uniqueid, c.position) for c in model.queues["support"].waiting] == [("2.0", 1), ("3.0", 2)]
    assert model.queues["support"].longest_wait(110.0) == 9.0


def test_pause_with_reason_and_unpause() -> None:
    model, events = run(LiveModel(), member("QueueMemberAdded"), member("QueueMemberPause", paused="1", reason="lunch"))
    agent = model.agents["PJSIP/1001"]
    assert (agent.status, agent.pause_reason, agent.since) == (AgentStatus.PAUSED, "lunch", 101.0)
    assert states(events) == [AgentStatus.AVAILABLE, AgentStatus.PAUSED]
    assert [e.reason for e in events if isinstance(e, AgentStateChanged)][-1] == "lunch"
    model, events = run(model, member("QueueMemberPause", paused="0"), start=300)
    assert model.agents["PJSIP/1001"].status is AgentStatus.AVAILABLE
    assert model.agents["PJSIP/1001"].pause_reason == ""
    assert states(events) == [AgentStatus.AVAILABLE]


def test_a_pause_during_a_call_takes_effect_after_it() -> None:
    agent_events = [
        member("QueueMemberAdded"),
        ev("AgentCalled", Queue="support", Interface="PJSIP/1001", Linkedid="1.1", DestChannel="PJSIP/1001-2"),
        ev("AgentConnect", Queue="support", Interface="PJSIP/1001", Linkedid="1.1", HoldTime="3"),
        member("QueueMemberPause", paused="1", reason="break"),
    ]
    model, _ = run(LiveModel(wrapup={"support": 10.0}), *agent_events)
    assert model.agents["PJSIP/1001"].status is AgentStatus.ON_CALL
    model, events = run(model, ev("AgentComplete", Queue="support", Interface="PJSIP/1001", Linkedid="1.1"))
    assert model.agents["PJSIP/1001"].status is AgentStatus.PAUSED
    assert model.agents["PJSIP/1001"].pause_reason == "break"
    assert states(events) == [AgentStatus.PAUSED]


def test_ring_no_answer_returns_the_agent_to_available() -> None:
    model, events = run(
        LiveModel(),
        member("QueueMemberAdded"),
        ev("AgentCalled", Queue="support", Interface="PJSIP/1001", Linkedid="1.1"),
        ev("AgentRingNoAnswer", Queue="support", Interface="PJSIP/1001", Linkedid="1.1", RingTime="15"),
    )
    assert states(events) == [AgentStatus.AVAILABLE, AgentStatus.RINGING, AgentStatus.AVAILABLE]
    assert model.agents["PJSIP/1001"].linkedid == ""


def test_member_in_two_queues_stays_logged_in_until_removed_from_both() -> None:
    model, _ = run(LiveModel(), member("QueueMemberAdded"), member("QueueMemberAdded", queue="expert"))
    model, _ = run(model, ev("QueueMemberRemoved", Queue="support", Interface="PJSIP/1001"))
    assert model.agents["PJSIP/1001"].status is AgentStatus.AVAILABLE
    model, events = run(model, ev("QueueMemberRemoved", Queue="expert", Interface="PJSIP/1001"))
    assert model.agents["PJSIP/1001"].status is AgentStatus.LOGGED_OUT
    assert states(events) == [AgentStatus.LOGGED_OUT]


def test_fully_booted_with_a_new_start_time_asks_for_a_resync() -> None:
    model, _ = run(LiveModel(), ev("FullyBooted", Status="Fully Booted", Uptime="50"))
    assert model.asterisk_started == 50.0
    assert not model.resync_needed
    model, _ = run(model, ev("FullyBooted", Status="Fully Booted", Uptime="51"), start=101)
    assert not model.resync_needed  # the same Asterisk, seen again on a reconnect
    model, _ = run(model, ev("FullyBooted", Status="Fully Booted", Uptime="3"), start=400)
    assert model.resync_needed
    assert model.asterisk_started == 397.0


def test_blind_transfer_is_recorded_on_the_call() -> None:
    model, _ = run(LiveModel(), channel("1.1", "PJSIP/pstn-1", "1.1"))
    model, events = run(
        model,
        ev("BlindTransfer", TransfererChannel="PJSIP/1001-2", TransfererLinkedid="1.1", Extension="2001"),
    )
    transfer = model.calls["1.1"].transfers[0]
    assert (transfer.kind, transfer.target, transfer.channel) == ("blind", "2001", "PJSIP/1001-2")
    assert events == [CallTransferred("1.1", transfer)]


def test_bridges_are_remembered_on_the_call_and_cleared_on_the_channel() -> None:
    model, _ = run(LiveModel(), channel("1.1", "PJSIP/pstn-1", "1.1"))
    model, _ = run(
        model, ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid="1.1", Linkedid="1.1", Channel="PJSIP/pstn-1")
    )
    assert model.channels["1.1"].bridge_id == "b1"
    model, _ = run(model, ev("BridgeLeave", BridgeUniqueid="b1", Uniqueid="1.1", Linkedid="1.1"))
    assert model.channels["1.1"].bridge_id == ""
    assert model.calls["1.1"].bridges == ("b1",)
