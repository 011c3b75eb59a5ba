"""The seats: queue membership, the status of each seat (ringing, on a call, wrap-up, paused) and its changes.

Handles QueueMemberAdded, QueueMemberStatus, QueueMemberPause and QueueMemberRemoved, the QueueMember list event
of a QueueStatus answer (a snapshot: the member's flags are all a resync knows of the seat), and AgentCalled,
AgentRingNoAnswer, AgentConnect and AgentComplete. Also here: the end of a seat's part in a call when its own
channel hangs up without an AgentComplete (:func:`_agent_leg_ended`, called by :mod:`.channels` on Hangup), and
the end of wrap-ups, for which Asterisk sends no event (:func:`_expire_wrapups`, run by ``apply`` and ``tick``).
Every change of a seat goes through :func:`_set_agent`, which appends the AgentStateChanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callcenter.ami.message import AmiMessage
from callcenter.ami.reducer._copy import _copy, _drop, _evolve, _put
from callcenter.ami.reducer._handler import Result, _float, _int
from callcenter.ami.reducer.queues import _queue, _queues_with, _segments_with
from callcenter.events import AgentStateChanged, CallAnswered, CallOffered, DomainEvent
from callcenter.model import (
    AgentState,
    AgentStatus,
    Call,
    CallOutcome,
    Channel,
    LiveModel,
    QueueMember,
    QueueState,
)

# Device states (Asterisk's ast_device_state) in QueueMember/QueueMemberStatus "Status".
_RINGING_STATES = frozenset({6})
_SEAT_STATES = (AgentStatus.LOGGED_OUT, AgentStatus.AVAILABLE, AgentStatus.PAUSED)
_BUSY_STATES = (AgentStatus.ON_CALL, AgentStatus.RINGING)


def _idle(queues: frozenset[str], paused: bool) -> AgentStatus:
    """The status of a seat with these queues and pause flag when it has no call and no wrap-up."""
    if not queues:
        return AgentStatus.LOGGED_OUT
    return AgentStatus.PAUSED if paused else AgentStatus.AVAILABLE


def _set_agent(
    model: LiveModel,
    agent: AgentState,
    status: AgentStatus,
    now: float,
    events: list[DomainEvent],
    *,
    linkedid: str | None = None,
    wrapup_until: float | None = None,
    pause_reason: str | None = None,
    queues: frozenset[str] | None = None,
    paused: bool | None = None,
    calls: Mapping[str, Call] | None = None,
    queue_states: Mapping[str, QueueState] | None = None,
) -> LiveModel:
    """The model with ``agent`` in ``status`` (``since`` moves when the status does) and the fields given
    changed (None: as ``agent`` has them); outside wrap-up there is no ``wrapup_until``, and the pause reason
    goes with the pause. An AgentStateChanged is appended when the status or the pause reason changes.

    ``calls`` and ``queue_states`` are the other mappings the same event changed (None: unchanged), so that the
    event makes one new model. A seat that ends up as it was stays the same object.
    """
    interface = agent.interface
    if queues is None:
        queues = agent.queues
    if paused is None:
        paused = agent.paused
    if linkedid is None:
        linkedid = agent.linkedid
    if pause_reason is None:
        pause_reason = agent.pause_reason
    if status is not AgentStatus.PAUSED and not paused:
        pause_reason = ""
    since = agent.since if status is agent.status else now
    if status is not AgentStatus.WRAP_UP:
        wrapup_until = None
    elif wrapup_until is None:
        wrapup_until = agent.wrapup_until
    agents = model.agents
    old = agents.get(interface)
    if (
        old is not None
        and old.status is status
        and old.linkedid == linkedid
        and old.paused == paused
        and old.pause_reason == pause_reason
        and old.since == since
        and old.wrapup_until == wrapup_until
        and (old.queues is queues or old.queues == queues)
    ):
        if calls is None and queue_states is None:
            return model
        return _evolve(model, calls=calls, queues=queue_states)
    if old is None or old.status is not status or old.pause_reason != pause_reason:
        reason = pause_reason if status is AgentStatus.PAUSED else ""
        events.append(AgentStateChanged(interface, agent.status if old is None else old.status, status, now, reason))
    updated = AgentState(interface, status, since, pause_reason, paused, queues, linkedid, wrapup_until)
    agents = _put(agents, interface, updated)
    due = model.wrapup_due
    # The earliest end of a wrap-up can only move when this seat had one or gets one.
    if wrapup_until is not None or (old is not None and old.wrapup_until is not None):
        due = min((a.wrapup_until for a in agents.values() if a.wrapup_until is not None), default=None)
    return LiveModel(
        model.channels,
        model.calls if calls is None else calls,
        model.queues if queue_states is None else queue_states,
        agents,
        model.wrapup,
        due,
        model.asterisk_started,
        model.resync_needed,
    )


def _agent(model: LiveModel, interface: str) -> AgentState:
    return model.agents.get(interface) or AgentState(interface=interface)


def _expire_wrapups(model: LiveModel, now: float, events: list[DomainEvent]) -> LiveModel:
    for agent in list(model.agents.values()):
        if agent.status is AgentStatus.WRAP_UP and agent.wrapup_until is not None and agent.wrapup_until <= now:
            model = _set_agent(model, agent, _idle(agent.queues, agent.paused), agent.wrapup_until, events)
    return model


def _agent_leg_ended(model: LiveModel, channel: Channel, now: float, events: list[DomainEvent]) -> LiveModel:
    """A seat's own channel hung up while the seat was on that call: the seat's part of the call is over.

    Usually AgentComplete says so, but when the caller is taken out of the queue's bridge (a Redirect, as the
    expert handoff does) Asterisk hangs up the agent's leg without one. The segment the seat answered closes
    with its talk time, and the seat goes to wrap-up.
    """
    interface = channel.name.rpartition("-")[0]
    agent = model.agents.get(interface)
    if agent is None or agent.status is not AgentStatus.ON_CALL or agent.linkedid != channel.linkedid:
        return model
    call = model.calls.get(channel.linkedid)
    queue = ""
    calls = None
    if call is not None:
        for segment in reversed(call.segments):
            if segment.agent == interface:
                queue = segment.queue
                if segment.talk_time is None and segment.answered_at is not None:
                    talk = max(0.0, now - segment.answered_at)
                    call = _copy(call, segments=_segments_with(call, queue, talk_time=talk))
                    calls = _put(model.calls, call.linkedid, call)
                break
    wrapup = model.wrapup.get(queue, 0.0)
    if wrapup > 0 and not agent.paused and agent.queues:
        return _set_agent(
            model, agent, AgentStatus.WRAP_UP, now, events, linkedid="", wrapup_until=now + wrapup, calls=calls
        )
    return _set_agent(model, agent, _idle(agent.queues, agent.paused), now, events, linkedid="", calls=calls)


# -- queue members ---------------------------------------------------------------------------------------------


def _member(headers: Mapping[str, str], interface: str, old: QueueMember | None) -> QueueMember:
    """The member as the event describes it; what the event does not say is kept from ``old``, which comes back
    itself when the event changes nothing."""
    get = headers.get
    base = old or QueueMember(interface=interface, name=get("membername", "") or get("name", "") or interface)
    state_interface = get("stateinterface", base.state_interface)
    membership = get("membership", base.membership)
    penalty = _int(get("penalty", ""), base.penalty)
    flag = get("paused")
    paused = base.paused if flag is None else flag == "1"
    paused_reason = get("pausedreason", get("reason", base.paused_reason))
    flag = get("incall")
    in_call = base.in_call if flag is None else flag == "1"
    status = _int(get("status", ""), base.status)
    calls_taken = _int(get("callstaken", ""), base.calls_taken)
    if (
        old is not None
        and status == old.status
        and in_call is old.in_call
        and paused is old.paused
        and paused_reason == old.paused_reason
        and calls_taken == old.calls_taken
        and penalty == old.penalty
        and state_interface == old.state_interface
        and membership == old.membership
    ):
        return old
    return QueueMember(
        base.interface,
        base.name,
        state_interface,
        membership,
        penalty,
        paused,
        paused_reason,
        in_call,
        status,
        calls_taken,
    )


def _agent_linkedid(model: LiveModel, interface: str) -> str:
    """The call of the agent's channel (PJSIP/1001 talks on PJSIP/1001-00000004)."""
    prefix = interface + "-"
    for channel in model.channels.values():
        if channel.name.startswith(prefix):
            return channel.linkedid
    return ""


def _on_member(model: LiveModel, event: AmiMessage, now: float) -> Result:
    """QueueMemberAdded, QueueMemberStatus, QueueMemberPause and the QueueMember list event."""
    headers = event.lowered
    queue = _queue(model, headers.get("queue", ""))
    interface = headers.get("interface", "") or headers.get("location", "")
    if not interface or not queue.name:
        return model, []
    events: list[DomainEvent] = []
    old_member = queue.members.get(interface)
    member = _member(headers, interface, old_member)
    queue_states = None
    if member is not old_member:
        # The member is new or differs: the queue has changed.
        members = _put(queue.members, interface, member)
        queue = QueueState(queue.name, queue.waiting, members, queue.completed, queue.abandoned)
        queue_states = _queues_with(model, queue, events, changed=True)
    agent = _agent(model, interface)
    queues = agent.queues if queue.name in agent.queues else agent.queues | {queue.name}
    paused = member.paused
    status = agent.status
    linkedid = None
    if event.event == "QueueMember":
        # A snapshot (resync): the member's flags are all we know of the seat.
        if member.in_call:
            status = AgentStatus.ON_CALL
        elif member.status in _RINGING_STATES:
            status = AgentStatus.RINGING
        elif status is AgentStatus.WRAP_UP and agent.wrapup_until is not None and agent.wrapup_until > now:
            pass
        else:
            status = _idle(queues, paused)
        if status in _BUSY_STATES:
            linkedid = _agent_linkedid(model, interface) or agent.linkedid
        elif status is not AgentStatus.WRAP_UP:
            linkedid = ""  # idle now: whatever call the seat was on before the resync is over
    elif status in _SEAT_STATES or (status is AgentStatus.WRAP_UP and paused):
        # Pausing during a call takes effect when the call is over; during wrap-up it ends the wrap-up.
        status = _idle(queues, paused)
    model = _set_agent(
        model,
        agent,
        status,
        now,
        events,
        linkedid=linkedid,
        pause_reason=member.paused_reason if paused else "",
        queues=queues,
        paused=paused,
        queue_states=queue_states,
    )
    return model, events


def _on_member_removed(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    events: list[DomainEvent] = []
    name = headers.get("queue", "")
    interface = headers.get("interface", "")
    queue = model.queues.get(name)
    queue_states = None
    if queue is not None:
        queue_states = _queues_with(model, _copy(queue, members=_drop(queue.members, interface)), events)
    agent = model.agents.get(interface)
    if agent is None:
        return (model if queue_states is None else _evolve(model, queues=queue_states)), events
    queues = agent.queues - {name}
    status = agent.status if queues and agent.status is not AgentStatus.AVAILABLE else _idle(queues, agent.paused)
    return _set_agent(model, agent, status, now, events, queues=queues, queue_states=queue_states), events


# -- calls offered to and handled by seats ---------------------------------------------------------------------


def _on_agent_called(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    events: list[DomainEvent] = []
    interface = headers.get("interface", "")
    linkedid = headers.get("linkedid", "")
    model = _set_agent(model, _agent(model, interface), AgentStatus.RINGING, now, events, linkedid=linkedid)
    events.append(CallOffered(linkedid, headers.get("queue", ""), interface, headers.get("destchannel", ""), now))
    return model, events


def _on_ring_no_answer(model: LiveModel, event: AmiMessage, now: float) -> Result:
    agent = model.agents.get(event.lowered.get("interface", ""))
    if agent is None or agent.status is not AgentStatus.RINGING:
        return model, []
    events: list[DomainEvent] = []
    return _set_agent(model, agent, _idle(agent.queues, agent.paused), now, events, linkedid=""), events


def _on_agent_connect(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    events: list[DomainEvent] = []
    interface = headers.get("interface", "")
    linkedid = headers.get("linkedid", "")
    queue = headers.get("queue", "")
    call = model.calls.get(linkedid)
    held = _float(headers.get("holdtime", ""))
    if held is None:
        held = now - call.queued_at if call is not None and call.queued_at is not None else 0.0
    calls = None
    if call is not None:
        call = _copy(
            call,
            segments=_segments_with(call, queue, agent=interface, answered_at=now, wait_time=held),
            agent=interface,
            answered_at=now,
            wait_time=held,
            outcome=CallOutcome.ANSWERED,
        )
        calls = _put(model.calls, linkedid, call)
    agent = _agent(model, interface)
    model = _set_agent(model, agent, AgentStatus.ON_CALL, now, events, linkedid=linkedid, calls=calls)
    events.append(CallAnswered(linkedid, queue, interface, held, now))
    return model, events


def _completed(call: Call, queue: str, interface: str, talk: float, held: float | None, now: float) -> Call:
    """The call once ``interface`` has finished talking ``talk`` seconds to it in ``queue``.

    A call the model did not see answered (the engine was restarted or disconnected meanwhile, and a resync
    adopted the call from Asterisk's listings, which say nothing of queues) learns here who answered it, when
    (the end less the talk time) and after how long a wait (HoldTime): without that its queue segment would be
    one nobody answered, and the call's record an abandoned call with an agent and a talk time."""
    segment = next((item for item in reversed(call.segments) if item.queue == queue), None)
    if segment is not None and segment.answered_at is not None:
        return _copy(call, segments=_segments_with(call, queue, talk_time=talk), talk_time=talk)
    answered = now - talk
    changes: dict[str, Any] = {"talk_time": talk, "agent": interface, "answered_at": answered}
    if held is not None:
        changes["wait_time"] = held
    if segment is None:
        changes["entered"] = answered - (held or 0.0)
    segments = _segments_with(call, queue, **changes)
    return _copy(
        call,
        segments=segments,
        queue=call.queue or queue,
        queued_at=call.queued_at if call.queued_at is not None else segments[-1].entered,
        agent=call.agent or interface,
        answered_at=call.answered_at if call.answered_at is not None else answered,
        wait_time=call.wait_time if call.wait_time is not None else held,
        talk_time=talk,
        outcome=CallOutcome.ANSWERED,
    )


def _on_agent_complete(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    events: list[DomainEvent] = []
    interface = headers.get("interface", "")
    linkedid = headers.get("linkedid", "")
    queue_name = headers.get("queue", "")
    talk = _float(headers.get("talktime", ""))
    calls = None
    call = model.calls.get(linkedid)
    if talk is not None and call is not None:
        call = _completed(call, queue_name, interface, talk, _float(headers.get("holdtime", "")), now)
        calls = _put(model.calls, linkedid, call)
    queue_states = None
    queue = model.queues.get(queue_name)
    if queue is not None:
        queue_states = _put(model.queues, queue_name, _copy(queue, completed=queue.completed + 1))
    agent = _agent(model, interface)
    if agent.status is AgentStatus.WRAP_UP or (agent.linkedid and agent.linkedid != linkedid):
        # The seat's leg ended first (its Hangup came before this event) or it has moved on to another call.
        if calls is None and queue_states is None:
            return model, events
        return _evolve(model, calls=calls, queues=queue_states), events
    wrapup = model.wrapup.get(queue_name, 0.0)
    if wrapup > 0 and not agent.paused and agent.queues:
        status = AgentStatus.WRAP_UP
        until: float | None = now + wrapup
    else:
        status = _idle(agent.queues, agent.paused)
        until = None
    model = _set_agent(
        model, agent, status, now, events, linkedid="", wrapup_until=until, calls=calls, queue_states=queue_states
    )
    return model, events
