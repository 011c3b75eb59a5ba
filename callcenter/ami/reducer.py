"""Folds AMI events into the live model: ``apply(model, event, now) -> (model, domain_events)``, and nothing else.

Pure: no I/O, no clock (``now`` is given, since Asterisk's events carry no timestamp unless timestampevents is
on), no state outside the model. Handlers are looked up by event name in :data:`HANDLERS`; an event without a
handler returns the same model and no domain events. The list events that answer CoreShowChannels, QueueStatus
and QueueSummary are handled too, as upserts; :func:`rebuild` uses them to make a fresh model after a (re)connect
and closes the calls Asterisk no longer has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.model import (
    AgentState,
    AgentStateChanged,
    AgentStatus,
    Call,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallOutcome,
    CallTransferred,
    Channel,
    DomainEvent,
    LiveModel,
    QueueChanged,
    QueueMember,
    QueueSegment,
    QueueState,
    Transfer,
    WaitingCaller,
)

Result = tuple[LiveModel, list[DomainEvent]]
Handler = Callable[[LiveModel, AmiMessage, float], Result]
K = TypeVar("K")
V = TypeVar("V")

# Device states (Asterisk's ast_device_state) in QueueMember/QueueMemberStatus "Status".
_RINGING_STATES = frozenset({6})
# FullyBooted's start time is derived from Uptime, which has a one-second resolution.
_BOOT_TOLERANCE = 2.0
# The channel variable (manager.conf channelvars) that carries the number the caller dialled: a snapshot's Exten
# is wherever the dialplan is now, so CoreShowChannel can tell the DID only through it.
DID_VARIABLE = "CC_DID"


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _duration(value: str) -> float:
    """CoreShowChannel's ``Duration: HH:MM:SS``."""
    total = 0
    for part in value.split(":"):
        total = total * 60 + _int(part)
    return float(total)


def _put(mapping: Mapping[K, V], key: K, value: V) -> dict[K, V]:
    updated = dict(mapping)
    updated[key] = value
    return updated


def _drop(mapping: Mapping[K, V], key: K) -> dict[K, V]:
    updated = dict(mapping)
    updated.pop(key, None)
    return updated


# -- channels and calls --------------------------------------------------------------------------------------


def _channel(event: AmiMessage, now: float, old: Channel | None) -> Channel:
    """A channel as the event describes it; what the event does not say is kept from ``old``."""
    base = old or Channel(uniqueid=event.get("Uniqueid"), name=event.get("Channel"), linkedid="", created=now)
    return replace(
        base,
        name=event.get("Channel", base.name),
        linkedid=event.get("Linkedid", base.linkedid) or base.linkedid or base.uniqueid,
        state=_int(event.get("ChannelState"), base.state),
        state_desc=event.get("ChannelStateDesc", base.state_desc),
        caller_number=event.get("CallerIDNum", base.caller_number),
        caller_name=event.get("CallerIDName", base.caller_name),
        context=event.get("Context", base.context),
        exten=event.get("Exten", base.exten) if old is None else base.exten,
    )


def _did(event: AmiMessage) -> str:
    if "ChanVariable" not in event:
        return ""
    return event.variables().get(DID_VARIABLE, "")


def _with_leg(model: LiveModel, channel: Channel, now: float, did: str = "") -> LiveModel:
    """The model with ``channel`` stored and counted as a leg of its call (a call is made for its first leg)."""
    channels = _put(model.channels, channel.uniqueid, channel)
    call = model.calls.get(channel.linkedid)
    if call is None:
        call = Call(
            linkedid=channel.linkedid,
            started=channel.created if channel.created <= now else now,
            caller_number=channel.caller_number,
            caller_name=channel.caller_name,
            did=did or channel.exten,
        )
    elif did and call.did != did:
        call = replace(call, did=did)
    if channel.uniqueid not in call.legs:
        call = replace(call, legs=(*call.legs, channel.uniqueid))
    if channel.bridge_id and channel.bridge_id not in call.bridges:
        call = replace(call, bridges=(*call.bridges, channel.bridge_id))
    return replace(model, channels=channels, calls=_put(model.calls, call.linkedid, call))


def _update_call(model: LiveModel, linkedid: str, **changes: object) -> LiveModel:
    call = model.calls.get(linkedid)
    if call is None:
        return model
    return replace(model, calls=_put(model.calls, linkedid, replace(call, **changes)))  # type: ignore[arg-type]


def _segment_update(call: Call, queue: str, **changes: object) -> Call:
    """The call with its latest segment in ``queue`` changed (made if the call has none there yet)."""
    for index in range(len(call.segments) - 1, -1, -1):
        if call.segments[index].queue == queue:
            segment = replace(call.segments[index], **changes)  # type: ignore[arg-type]
            return replace(call, segments=(*call.segments[:index], segment, *call.segments[index + 1 :]))
    entered = changes.pop("entered", call.queued_at if call.queued_at is not None else call.started)
    segment = replace(QueueSegment(queue=queue, entered=float(entered)), **changes)  # type: ignore[arg-type]
    return replace(call, segments=(*call.segments, segment))


def _end_call(call: Call, now: float) -> Call:
    talk = call.talk_time
    if talk is None and call.answered_at is not None:
        talk = max(0.0, now - call.answered_at)
    segments = tuple(
        replace(segment, talk_time=max(0.0, now - segment.answered_at))
        if segment.answered_at is not None and segment.talk_time is None
        else segment
        for segment in call.segments
    )
    return replace(call, ended=now, talk_time=talk, segments=segments)


def _on_newchannel(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        return model, []
    return _with_leg(model, _channel(event, now, model.channels.get(uniqueid)), now, _did(event)), []


def _on_channel_update(model: LiveModel, event: AmiMessage, now: float) -> Result:
    """Newstate and NewCallerid: the channel's state and caller id; the call's caller follows its first leg."""
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        return model, []
    channel = _channel(event, now, model.channels.get(uniqueid))
    model = _with_leg(model, channel, now, _did(event))
    call = model.calls[channel.linkedid]
    if call.legs and call.legs[0] == uniqueid:
        model = _update_call(model, call.linkedid, caller_number=channel.caller_number, caller_name=channel.caller_name)
    return model, []


def _on_hangup(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.get("Uniqueid")
    channel = model.channels.get(uniqueid)
    if channel is None:
        return model, []
    model = replace(model, channels=_drop(model.channels, uniqueid))
    linkedid = channel.linkedid
    events: list[DomainEvent] = []
    model = _agent_leg_ended(model, channel, now, events)
    call = model.calls.get(linkedid)
    if call is None or any(other.linkedid == linkedid for other in model.channels.values()):
        return model, events
    ended = _end_call(call, now)
    return replace(model, calls=_drop(model.calls, linkedid)), [*events, CallEnded(ended)]


def _agent_leg_ended(model: LiveModel, channel: Channel, now: float, events: list[DomainEvent]) -> LiveModel:
    """A seat's own channel hung up while the seat was on that call: the seat's part of the call is over.

    Usually AgentComplete says so, but when the caller is taken out of the queue's bridge (a Redirect, as the
    expert handoff does) Asterisk hangs up the agent's leg without one. The segment the seat answered closes
    with its talk time, and the seat goes to wrap-up.
    """
    interface, _, _ = channel.name.rpartition("-")
    agent = model.agents.get(interface)
    if agent is None or agent.status is not AgentStatus.ON_CALL or agent.linkedid != channel.linkedid:
        return model
    call = model.calls.get(channel.linkedid)
    queue = ""
    if call is not None:
        for segment in reversed(call.segments):
            if segment.agent == interface:
                queue = segment.queue
                if segment.talk_time is None and segment.answered_at is not None:
                    call = _segment_update(call, queue, talk_time=max(0.0, now - segment.answered_at))
                    model = replace(model, calls=_put(model.calls, call.linkedid, call))
                break
    wrapup = model.wrapup.get(queue, 0.0)
    if wrapup > 0 and not agent.paused and agent.queues:
        return _set_agent(model, agent, AgentStatus.WRAP_UP, now, events, linkedid="", wrapup_until=now + wrapup)
    return _set_agent(model, agent, _idle(agent), now, events, linkedid="")


def _on_bridge_enter(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        return model, []
    channel = replace(_channel(event, now, model.channels.get(uniqueid)), bridge_id=event.get("BridgeUniqueid"))
    return _with_leg(model, channel, now), []


def _on_bridge_leave(model: LiveModel, event: AmiMessage, now: float) -> Result:
    channel = model.channels.get(event.get("Uniqueid"))
    if channel is None:
        return model, []
    return replace(model, channels=_put(model.channels, channel.uniqueid, replace(channel, bridge_id=""))), []


def _on_transfer(kind: str) -> Handler:
    def handler(model: LiveModel, event: AmiMessage, now: float) -> Result:
        prefix = "Transferer" if kind == "blind" else "OrigTransferer"
        linkedid = event.get(f"{prefix}Linkedid")
        call = model.calls.get(linkedid)
        if call is None:
            return model, []
        target = event.get("Extension") if kind == "blind" else event.get("SecondTransfererLinkedid")
        transfer = Transfer(kind=kind, at=now, channel=event.get(f"{prefix}Channel"), target=target)
        model = _update_call(model, linkedid, transfers=(*call.transfers, transfer))
        return model, [CallTransferred(linkedid, transfer)]

    return handler


# -- agents ---------------------------------------------------------------------------------------------------


def _idle(agent: AgentState) -> AgentStatus:
    if not agent.queues:
        return AgentStatus.LOGGED_OUT
    return AgentStatus.PAUSED if agent.paused else AgentStatus.AVAILABLE


def _set_agent(
    model: LiveModel, agent: AgentState, status: AgentStatus, now: float, events: list[DomainEvent], **changes: object
) -> LiveModel:
    old = model.agents.get(agent.interface)
    updated: AgentState = replace(agent, **changes)  # type: ignore[arg-type]
    if status is not updated.status:
        updated = replace(updated, status=status, since=now)
    if status is not AgentStatus.WRAP_UP:
        updated = replace(updated, wrapup_until=None)
    if status is not AgentStatus.PAUSED:
        updated = replace(updated, pause_reason="") if not updated.paused else updated
    if old is None or old.status is not updated.status or old.pause_reason != updated.pause_reason:
        reason = updated.pause_reason if updated.status is AgentStatus.PAUSED else ""
        events.append(AgentStateChanged(agent.interface, old.status if old else agent.status, status, now, reason))
    agents = _put(model.agents, agent.interface, updated)
    due = min((a.wrapup_until for a in agents.values() if a.wrapup_until is not None), default=None)
    return replace(model, agents=agents, wrapup_due=due)


def _agent(model: LiveModel, interface: str) -> AgentState:
    return model.agents.get(interface) or AgentState(interface=interface)


def _expire_wrapups(model: LiveModel, now: float, events: list[DomainEvent]) -> LiveModel:
    for agent in list(model.agents.values()):
        if agent.status is AgentStatus.WRAP_UP and agent.wrapup_until is not None and agent.wrapup_until <= now:
            model = _set_agent(model, agent, _idle(agent), agent.wrapup_until, events)
    return model


def tick(model: LiveModel, now: float) -> Result:
    """Ends the wrap-ups that are over (Asterisk sends no event when a member's wrap-up time runs out)."""
    if model.wrapup_due is None or now < model.wrapup_due:
        return model, []
    events: list[DomainEvent] = []
    return _expire_wrapups(model, now, events), events


# -- queues ---------------------------------------------------------------------------------------------------


def _queue(model: LiveModel, name: str) -> QueueState:
    return model.queues.get(name) or QueueState(name=name)


def _put_queue(model: LiveModel, queue: QueueState, events: list[DomainEvent]) -> LiveModel:
    old = model.queues.get(queue.name)
    if old is None or old.waiting != queue.waiting or old.members != queue.members:
        events.append(QueueChanged(queue.name, len(queue.waiting), len(queue.members)))
    return replace(model, queues=_put(model.queues, queue.name, queue))


def _renumber(waiting: Iterable[WaitingCaller]) -> tuple[WaitingCaller, ...]:
    ordered = sorted(waiting, key=lambda caller: caller.position)
    return tuple(replace(caller, position=index) for index, caller in enumerate(ordered, 1))


def _on_caller_join(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    queue = _queue(model, event.get("Queue"))
    uniqueid = event.get("Uniqueid")
    caller = WaitingCaller(
        uniqueid=uniqueid,
        channel=event.get("Channel"),
        linkedid=event.get("Linkedid") or uniqueid,
        caller_number=event.get("CallerIDNum"),
        caller_name=event.get("CallerIDName"),
        position=_int(event.get("Position"), len(queue.waiting) + 1),
        entered=now,
    )
    others = [c for c in queue.waiting if c.uniqueid != uniqueid]
    # A caller who joins ahead of others (a priority) pushes them one place back, as Asterisk does.
    shifted = [replace(c, position=c.position + 1) if c.position >= caller.position else c for c in others]
    model = _put_queue(model, replace(queue, waiting=_renumber([*shifted, caller])), events)
    call = model.calls.get(caller.linkedid)
    if call is not None:
        segment = QueueSegment(queue=queue.name, entered=now)
        call = replace(call, queue=queue.name, queued_at=now, segments=(*call.segments, segment))
        model = replace(model, calls=_put(model.calls, call.linkedid, call))
    return model, events


def _on_caller_leave(model: LiveModel, event: AmiMessage, now: float) -> Result:
    queue = model.queues.get(event.get("Queue"))
    if queue is None:
        return model, []
    events: list[DomainEvent] = []
    uniqueid = event.get("Uniqueid")
    waiting = _renumber(c for c in queue.waiting if c.uniqueid != uniqueid)
    return _put_queue(model, replace(queue, waiting=waiting), events), events


def _on_caller_abandon(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    queue = _queue(model, event.get("Queue"))
    model = _put_queue(model, replace(queue, abandoned=queue.abandoned + 1), events)
    linkedid = event.get("Linkedid") or event.get("Uniqueid")
    call = model.calls.get(linkedid)
    if call is not None:
        held = _float(event.get("HoldTime"))
        wait = held if held is not None else (now - call.queued_at if call.queued_at is not None else None)
        call = _segment_update(call, queue.name, abandoned=True, wait_time=wait)
        call = replace(
            call, wait_time=wait, outcome=CallOutcome.ABANDONED if call.answered_at is None else call.outcome
        )
        model = replace(model, calls=_put(model.calls, linkedid, call))
    return model, events


def _member(event: AmiMessage, old: QueueMember | None) -> QueueMember:
    interface = event.get("Interface") or event.get("Location")
    base = old or QueueMember(interface=interface, name=event.get("MemberName") or event.get("Name") or interface)
    return replace(
        base,
        state_interface=event.get("StateInterface", base.state_interface),
        membership=event.get("Membership", base.membership),
        penalty=_int(event.get("Penalty"), base.penalty),
        paused=event.get("Paused", "1" if base.paused else "0") == "1",
        paused_reason=event.get("PausedReason", event.get("Reason", base.paused_reason)),
        in_call=event.get("InCall", "1" if base.in_call else "0") == "1",
        status=_int(event.get("Status"), base.status),
        calls_taken=_int(event.get("CallsTaken"), base.calls_taken),
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
    events: list[DomainEvent] = []
    queue = _queue(model, event.get("Queue"))
    interface = event.get("Interface") or event.get("Location")
    if not interface or not queue.name:
        return model, []
    member = _member(event, queue.members.get(interface))
    model = _put_queue(model, replace(queue, members=_put(queue.members, interface, member)), events)
    agent = _agent(model, interface)
    agent = replace(agent, queues=agent.queues | {queue.name}, paused=member.paused)
    reason = member.paused_reason if member.paused else ""
    status = agent.status
    if event.event == "QueueMember":
        # A snapshot (resync): the member's flags are all we know of the seat.
        if member.in_call:
            status = AgentStatus.ON_CALL
        elif member.status in _RINGING_STATES:
            status = AgentStatus.RINGING
        elif status is AgentStatus.WRAP_UP and agent.wrapup_until is not None and agent.wrapup_until > now:
            pass
        else:
            status = _idle(agent)
        if status in (AgentStatus.ON_CALL, AgentStatus.RINGING):
            agent = replace(agent, linkedid=_agent_linkedid(model, interface) or agent.linkedid)
    elif status in (AgentStatus.LOGGED_OUT, AgentStatus.AVAILABLE, AgentStatus.PAUSED) or (
        status is AgentStatus.WRAP_UP and member.paused
    ):
        # Pausing during a call takes effect when the call is over; during wrap-up it ends the wrap-up.
        status = _idle(agent)
    return _set_agent(model, agent, status, now, events, pause_reason=reason), events


def _on_member_removed(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    queue = model.queues.get(event.get("Queue"))
    interface = event.get("Interface")
    if queue is not None:
        model = _put_queue(model, replace(queue, members=_drop(queue.members, interface)), events)
    agent = model.agents.get(interface)
    if agent is None:
        return model, events
    agent = replace(agent, queues=agent.queues - {event.get("Queue")})
    status = agent.status if agent.queues and agent.status is not AgentStatus.AVAILABLE else _idle(agent)
    return _set_agent(model, agent, status, now, events), events


def _on_agent_called(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    interface = event.get("Interface")
    linkedid = event.get("Linkedid")
    model = _set_agent(model, _agent(model, interface), AgentStatus.RINGING, now, events, linkedid=linkedid)
    events.append(CallOffered(linkedid, event.get("Queue"), interface, event.get("DestChannel"), now))
    return model, events


def _on_ring_no_answer(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    agent = model.agents.get(event.get("Interface"))
    if agent is None or agent.status is not AgentStatus.RINGING:
        return model, []
    return _set_agent(model, agent, _idle(agent), now, events, linkedid=""), events


def _on_agent_connect(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    interface = event.get("Interface")
    linkedid = event.get("Linkedid")
    queue = event.get("Queue")
    model = _set_agent(model, _agent(model, interface), AgentStatus.ON_CALL, now, events, linkedid=linkedid)
    call = model.calls.get(linkedid)
    held = _float(event.get("HoldTime"))
    if held is None:
        held = now - call.queued_at if call is not None and call.queued_at is not None else 0.0
    if call is not None:
        call = _segment_update(call, queue, agent=interface, answered_at=now, wait_time=held)
        call = replace(call, agent=interface, answered_at=now, wait_time=held, outcome=CallOutcome.ANSWERED)
        model = replace(model, calls=_put(model.calls, linkedid, call))
    events.append(CallAnswered(linkedid, queue, interface, held, now))
    return model, events


def _on_agent_complete(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    interface = event.get("Interface")
    linkedid = event.get("Linkedid")
    queue_name = event.get("Queue")
    talk = _float(event.get("TalkTime"))
    call = model.calls.get(linkedid)
    if talk is not None and call is not None:
        call = replace(_segment_update(call, queue_name, talk_time=talk), talk_time=talk)
        model = replace(model, calls=_put(model.calls, linkedid, call))
    queue = model.queues.get(queue_name)
    if queue is not None:
        model = replace(model, queues=_put(model.queues, queue_name, replace(queue, completed=queue.completed + 1)))
    agent = _agent(model, interface)
    if agent.status is AgentStatus.WRAP_UP or (agent.linkedid and agent.linkedid != linkedid):
        # The seat's leg ended first (its Hangup came before this event) or it has moved on to another call.
        return model, events
    wrapup = model.wrapup.get(queue_name, 0.0)
    if wrapup > 0 and not agent.paused and agent.queues:
        model = _set_agent(model, agent, AgentStatus.WRAP_UP, now, events, linkedid="", wrapup_until=now + wrapup)
    else:
        model = _set_agent(model, agent, _idle(agent), now, events, linkedid="")
    return model, events


def _on_fully_booted(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uptime = _float(event.get("Uptime"))
    if uptime is None:
        return model, []
    started = now - uptime
    restarted = model.asterisk_started is not None and abs(started - model.asterisk_started) > _BOOT_TOLERANCE
    return replace(model, asterisk_started=started, resync_needed=model.resync_needed or restarted), []


# -- list events (resync) --------------------------------------------------------------------------------------


def _on_core_show_channel(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        return model, []
    old = model.channels.get(uniqueid)
    channel = replace(_channel(event, now, old), bridge_id=event.get("BridgeId"))
    if old is None:
        channel = replace(channel, created=now - _duration(event.get("Duration")))
    new_call = channel.linkedid not in model.calls
    did = _did(event)
    model = _with_leg(model, channel, now, did)
    call = model.calls[channel.linkedid]
    if new_call and not did:
        # Exten is where the dialplan is now, not the number dialled: only CC_DID tells the DID.
        call = replace(call, did="")
    if channel.created < call.started:
        call = replace(call, started=channel.created)
    if uniqueid == channel.linkedid and old is None:
        # The call's first leg carries the caller (CoreShowChannels lists the legs in no particular order).
        call = replace(call, caller_number=channel.caller_number, caller_name=channel.caller_name)
    model = replace(model, calls=_put(model.calls, call.linkedid, call))
    return model, []


def _on_queue_params(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    queue = _queue(model, event.get("Queue"))
    queue = replace(
        queue,
        completed=_int(event.get("Completed"), queue.completed),
        abandoned=_int(event.get("Abandoned"), queue.abandoned),
    )
    return _put_queue(model, queue, events), events


def _on_queue_entry(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    queue = _queue(model, event.get("Queue"))
    uniqueid = event.get("Uniqueid")
    channel = model.channels.get(uniqueid)
    old = next((c for c in queue.waiting if c.uniqueid == uniqueid), None)
    caller = WaitingCaller(
        uniqueid=uniqueid,
        channel=event.get("Channel"),
        linkedid=event.get("Linkedid") or (channel.linkedid if channel else uniqueid),
        caller_number=event.get("CallerIDNum"),
        caller_name=event.get("CallerIDName"),
        position=_int(event.get("Position"), len(queue.waiting) + 1),
        entered=old.entered if old else now - (_float(event.get("Wait")) or 0.0),
    )
    waiting = _renumber([*(c for c in queue.waiting if c.uniqueid != uniqueid), caller])
    model = _put_queue(model, replace(queue, waiting=waiting), events)
    call = model.calls.get(caller.linkedid)
    if call is not None and call.queued_at is None:
        call = _segment_update(replace(call, queue=queue.name, queued_at=caller.entered), queue.name)
        model = replace(model, calls=_put(model.calls, call.linkedid, call))
    return model, events


def _on_queue_summary(model: LiveModel, event: AmiMessage, now: float) -> Result:
    name = event.get("Queue")
    if not name or name in model.queues:
        return model, []
    events: list[DomainEvent] = []
    return _put_queue(model, QueueState(name=name), events), events


HANDLERS: Mapping[str, Handler] = {
    "Newchannel": _on_newchannel,
    "Newstate": _on_channel_update,
    "NewCallerid": _on_channel_update,
    "Hangup": _on_hangup,
    "BridgeEnter": _on_bridge_enter,
    "BridgeLeave": _on_bridge_leave,
    "BlindTransfer": _on_transfer("blind"),
    "AttendedTransfer": _on_transfer("attended"),
    "QueueCallerJoin": _on_caller_join,
    "QueueCallerLeave": _on_caller_leave,
    "QueueCallerAbandon": _on_caller_abandon,
    "QueueMemberAdded": _on_member,
    "QueueMemberStatus": _on_member,
    "QueueMemberPause": _on_member,
    "QueueMemberRemoved": _on_member_removed,
    "AgentCalled": _on_agent_called,
    "AgentRingNoAnswer": _on_ring_no_answer,
    "AgentConnect": _on_agent_connect,
    "AgentComplete": _on_agent_complete,
    "FullyBooted": _on_fully_booted,
    "CoreShowChannel": _on_core_show_channel,
    "QueueParams": _on_queue_params,
    "QueueMember": _on_member,
    "QueueEntry": _on_queue_entry,
    "QueueSummary": _on_queue_summary,
}


def apply(model: LiveModel, event: AmiMessage, now: float) -> Result:
    """The next model and the domain events ``event`` caused; an unknown event changes nothing."""
    handler = HANDLERS.get(event.event)
    expired: list[DomainEvent] = []
    if model.wrapup_due is not None and now >= model.wrapup_due:
        model = _expire_wrapups(model, now, expired)
    if handler is None:
        return model, expired
    model, events = handler(model, event, now)
    return model, [*expired, *events] if expired else events


def rebuild(model: LiveModel, results: Iterable[AmiResult], now: float) -> Result:
    """A model made from CoreShowChannels, QueueStatus and QueueSummary, merged with what ``model`` knew.

    Calls keep their history (start, queue, agent, transfers) when Asterisk still has them; the ones it no
    longer has ended while we were not listening and are closed now. Agents keep their ``since`` when their
    state did not change, and a wrap-up still running is kept (Asterisk's snapshot cannot show it).
    """
    fresh = LiveModel(wrapup=model.wrapup, asterisk_started=model.asterisk_started)
    fresh_agents = {
        interface: replace(agent, queues=frozenset(), status=AgentStatus.LOGGED_OUT)
        for interface, agent in model.agents.items()
    }
    fresh = replace(fresh, agents=fresh_agents)
    ordered = sorted(
        results, key=lambda result: 0 if result.events and result.events[0].event == "CoreShowChannel" else 1
    )
    for result in ordered:
        for event in result.events:
            fresh, _ = apply(fresh, event, now)
    events: list[DomainEvent] = []
    calls: dict[str, Call] = {}
    talking = {a.linkedid: a.interface for a in fresh.agents.values() if a.status is AgentStatus.ON_CALL and a.linkedid}
    for linkedid, call in fresh.calls.items():
        old = model.calls.get(linkedid)
        if old is None:
            # Answered while we were away: the seat on the call is all the snapshot tells.
            seat = talking.get(linkedid, "")
            calls[linkedid] = replace(call, agent=seat, outcome=CallOutcome.ANSWERED) if seat else call
            continue
        legs = (*old.legs, *(leg for leg in call.legs if leg not in old.legs))
        bridges = (*old.bridges, *(bridge for bridge in call.bridges if bridge not in old.bridges))
        segments = old.segments or call.segments
        calls[linkedid] = replace(old, legs=legs, bridges=bridges, queue=old.queue or call.queue,
                                  queued_at=old.queued_at if old.queued_at is not None else call.queued_at,
                                  did=old.did or call.did, segments=segments)  # fmt: skip
    for linkedid, call in model.calls.items():
        if linkedid not in fresh.calls:
            events.append(CallEnded(_end_call(call, now)))
    agents: dict[str, AgentState] = {}
    for interface, agent in fresh.agents.items():
        old_agent = model.agents.get(interface)
        if old_agent is not None and old_agent.status is agent.status:
            agents[interface] = replace(old_agent, queues=agent.queues, paused=agent.paused, linkedid=agent.linkedid)
            continue
        if old_agent is None and agent.status is AgentStatus.LOGGED_OUT:
            continue
        agents[interface] = replace(agent, since=now)
        old_status = old_agent.status if old_agent is not None else AgentStatus.LOGGED_OUT
        reason = agent.pause_reason if agent.status is AgentStatus.PAUSED else ""
        events.append(AgentStateChanged(interface, old_status, agent.status, now, reason))
    queues: dict[str, QueueState] = {}
    for name, queue in fresh.queues.items():
        old_queue = model.queues.get(name)
        if (
            old_queue is None
            or [c.uniqueid for c in old_queue.waiting] != [c.uniqueid for c in queue.waiting]
            or (old_queue.members != queue.members)
        ):
            events.append(QueueChanged(name, len(queue.waiting), len(queue.members)))
        if old_queue is not None:
            # Asterisk's Wait has a one-second resolution; the join time we saw ourselves is better.
            entered = {caller.uniqueid: caller.entered for caller in old_queue.waiting}
            queue = replace(
                queue, waiting=tuple(replace(c, entered=entered.get(c.uniqueid, c.entered)) for c in queue.waiting)
            )
        queues[name] = queue
    due = min((a.wrapup_until for a in agents.values() if a.wrapup_until is not None), default=None)
    rebuilt = replace(fresh, calls=calls, agents=agents, queues=queues, wrapup_due=due, resync_needed=False)
    return rebuilt, events
