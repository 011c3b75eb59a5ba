"""Folds AMI events into the live model: ``apply(model, event, now) -> (model, domain_events)``, and nothing else.

Pure: no I/O, no clock (``now`` is given, since Asterisk's events carry no timestamp unless timestampevents is
on), no state outside the model. Handlers are looked up by event name in :data:`HANDLERS`; an event without a
handler returns the same model and no domain events. The list events that answer CoreShowChannels, QueueStatus
and QueueSummary are handled too, as upserts; :func:`rebuild` uses them to make a fresh model after a (re)connect
and closes the calls Asterisk no longer has.

Every event of a live connection goes through :func:`apply`, so the handlers are written for speed (bench/ami.py)
without giving up immutability: nothing that is already part of a model is ever changed. A handler copies each
mapping it changes once (:func:`_put`, :func:`_drop`), builds each changed value once with one constructor call
(:func:`_copy` instead of ``dataclasses.replace``, several times slower on the frozen, slotted classes of
:mod:`callcenter.model`) and makes one new :class:`LiveModel` at the end; when an event changes nothing (a device
state the seat already had, a BridgeLeave of a channel in no bridge) the same model object comes back. Headers are
read through :attr:`AmiMessage.lowered` (lower-cased names, no ``lower()`` per lookup).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallTransferred,
    DomainEvent,
    QueueChanged,
)
from callcenter.model import (
    AgentState,
    AgentStatus,
    Call,
    CallOutcome,
    Channel,
    LiveModel,
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
T = TypeVar("T")

# Device states (Asterisk's ast_device_state) in QueueMember/QueueMemberStatus "Status".
_RINGING_STATES = frozenset({6})
# FullyBooted's start time is derived from Uptime, which has a one-second resolution.
_BOOT_TOLERANCE = 2.0
# The channel variable (manager.conf channelvars) that carries the number the caller dialled: a snapshot's Exten
# is wherever the dialplan is now, so CoreShowChannel can tell the DID only through it.
DID_VARIABLE = "CC_DID"
_SEAT_STATES = (AgentStatus.LOGGED_OUT, AgentStatus.AVAILABLE, AgentStatus.PAUSED)
_BUSY_STATES = (AgentStatus.ON_CALL, AgentStatus.RINGING)
_RANK = itemgetter(0)


# The numbers AMI sends most (states, positions, penalties), parsed once: int() and its try cost more than a lookup.
_SMALL_INTS = {str(number): number for number in range(1000)}


def _int(value: str, default: int = 0) -> int:
    number = _SMALL_INTS.get(value)
    if number is not None:
        return number
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _float(value: str) -> float | None:
    if not value:
        return None
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


# Per model class: an attrgetter of every field, in order, and each field's position.
_LAYOUTS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]] = {}


def _copy(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` for the model's frozen dataclasses, several times cheaper: every field is read
    with one attrgetter made once per class, ``changes`` go in by position, and the class is called once."""
    cls: Any = type(obj)
    layout = _LAYOUTS.get(cls)
    if layout is None:
        names = tuple(field.name for field in fields(cls))
        layout = _LAYOUTS[cls] = (attrgetter(*names), {name: index for index, name in enumerate(names)})
    getter, index = layout
    values = list(getter(obj))
    for name, value in changes.items():
        values[index[name]] = value
    copied: T = cls(*values)
    return copied


def _evolve(
    model: LiveModel,
    *,
    channels: Mapping[str, Channel] | None = None,
    calls: Mapping[str, Call] | None = None,
    queues: Mapping[str, QueueState] | None = None,
) -> LiveModel:
    """The model with the mappings given (None: kept as they are)."""
    return LiveModel(
        model.channels if channels is None else channels,
        model.calls if calls is None else calls,
        model.queues if queues is None else queues,
        model.agents,
        model.wrapup,
        model.wrapup_due,
        model.asterisk_started,
        model.resync_needed,
    )


# -- channels and calls --------------------------------------------------------------------------------------


def _channel(headers: Mapping[str, str], now: float, old: Channel | None, bridge_id: str | None = None) -> Channel:
    """A channel as the event describes it; what the event does not say is kept from ``old``. ``headers`` is the
    event's :attr:`AmiMessage.lowered`; ``bridge_id`` replaces the channel's when given."""
    get = headers.get
    if old is None:
        uniqueid = get("uniqueid", "")
        # Positional arguments, in the order of the fields (keywords cost more, and this runs for most events).
        return Channel(
            uniqueid,
            get("channel", ""),
            get("linkedid", "") or uniqueid,
            _int(get("channelstate", "")),
            get("channelstatedesc", ""),
            get("calleridnum", ""),
            get("calleridname", ""),
            get("context", ""),
            get("exten", ""),
            "" if bridge_id is None else bridge_id,
            now,
        )
    return Channel(
        old.uniqueid,
        get("channel", old.name),
        get("linkedid", old.linkedid) or old.linkedid or old.uniqueid,
        _int(get("channelstate", ""), old.state),
        get("channelstatedesc", old.state_desc),
        get("calleridnum", old.caller_number),
        get("calleridname", old.caller_name),
        get("context", old.context),
        old.exten,
        old.bridge_id if bridge_id is None else bridge_id,
        old.created,
    )


def _did(event: AmiMessage) -> str:
    if "chanvariable" not in event.lowered:
        return ""
    return event.variables().get(DID_VARIABLE, "")


def _with_leg(model: LiveModel, channel: Channel, now: float, did: str = "", *, caller: bool = False) -> LiveModel:
    """The model with ``channel`` stored and counted as a leg of its call (a call is made for its first leg).

    ``did`` replaces the call's DID when not empty; with ``caller``, the call's caller follows its first leg's.
    """
    uniqueid = channel.uniqueid
    linkedid = channel.linkedid
    bridge = channel.bridge_id
    channels = _put(model.channels, uniqueid, channel)
    call = model.calls.get(linkedid)
    if call is None:
        call = Call(
            linkedid,
            channel.created if channel.created <= now else now,  # started
            channel.caller_number,
            channel.caller_name,
            did or channel.exten,
            (uniqueid,),  # legs
            (bridge,) if bridge else (),  # bridges
        )
    else:
        legs = call.legs if uniqueid in call.legs else (*call.legs, uniqueid)
        bridges = call.bridges if not bridge or bridge in call.bridges else (*call.bridges, bridge)
        number, name = call.caller_number, call.caller_name
        if caller and legs[0] == uniqueid:
            number, name = channel.caller_number, channel.caller_name
        did = did or call.did
        if (
            legs is call.legs
            and bridges is call.bridges
            and did == call.did
            and number == call.caller_number
            and name == call.caller_name
        ):
            return _evolve(model, channels=channels)
        call = _copy(call, did=did, legs=legs, bridges=bridges, caller_number=number, caller_name=name)
    return _evolve(model, channels=channels, calls=_put(model.calls, linkedid, call))


def _segments_with(call: Call, queue: str, **changes: Any) -> tuple[QueueSegment, ...]:
    """The call's segments with its latest one in ``queue`` changed (made if the call has none there yet)."""
    segments = call.segments
    for index in range(len(segments) - 1, -1, -1):
        if segments[index].queue == queue:
            return (*segments[:index], _copy(segments[index], **changes), *segments[index + 1 :])
    entered = changes.pop("entered", call.queued_at if call.queued_at is not None else call.started)
    return (*segments, _copy(QueueSegment(queue=queue, entered=float(entered)), **changes))


def _end_call(call: Call, now: float) -> Call:
    talk = call.talk_time
    if talk is None and call.answered_at is not None:
        talk = max(0.0, now - call.answered_at)
    segments = tuple(
        _copy(segment, talk_time=max(0.0, now - segment.answered_at))
        if segment.answered_at is not None and segment.talk_time is None
        else segment
        for segment in call.segments
    )
    return _copy(call, ended=now, talk_time=talk, segments=segments)


def _has_live_leg(channels: Mapping[str, Channel], call: Call) -> bool:
    """A channel of the call is still up. Every channel is a leg of the call of its linkedid (``_with_leg`` sees
    to it, :func:`rebuild` keeps it), so the call's legs are the only channels to look at."""
    linkedid = call.linkedid
    for leg in call.legs:
        other = channels.get(leg)
        if other is not None and other.linkedid == linkedid:
            return True
    return False


def _on_newchannel(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    uniqueid = headers.get("uniqueid", "")
    if not uniqueid:
        return model, []
    return _with_leg(model, _channel(headers, now, model.channels.get(uniqueid)), now, _did(event)), []


def _on_channel_update(model: LiveModel, event: AmiMessage, now: float) -> Result:
    """Newstate and NewCallerid: the channel's state and caller id; the call's caller follows its first leg."""
    headers = event.lowered
    uniqueid = headers.get("uniqueid", "")
    if not uniqueid:
        return model, []
    channel = _channel(headers, now, model.channels.get(uniqueid))
    return _with_leg(model, channel, now, _did(event), caller=True), []


def _on_hangup(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.lowered.get("uniqueid", "")
    channel = model.channels.get(uniqueid)
    if channel is None:
        return model, []
    events: list[DomainEvent] = []
    model = _agent_leg_ended(model, channel, now, events)  # reads and changes no channel
    channels = _drop(model.channels, uniqueid)
    calls = model.calls
    call = calls.get(channel.linkedid)
    if call is not None and not _has_live_leg(channels, call):
        events.append(CallEnded(_end_call(call, now)))
        calls = _drop(calls, call.linkedid)
    return _evolve(model, channels=channels, calls=calls), events


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


def _on_bridge_enter(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    uniqueid = headers.get("uniqueid", "")
    if not uniqueid:
        return model, []
    channel = _channel(headers, now, model.channels.get(uniqueid), headers.get("bridgeuniqueid", ""))
    return _with_leg(model, channel, now), []


def _on_bridge_leave(model: LiveModel, event: AmiMessage, now: float) -> Result:
    channel = model.channels.get(event.lowered.get("uniqueid", ""))
    if channel is None or not channel.bridge_id:
        return model, []
    return _evolve(model, channels=_put(model.channels, channel.uniqueid, _copy(channel, bridge_id=""))), []


def _on_transfer(kind: str) -> Handler:
    def handler(model: LiveModel, event: AmiMessage, now: float) -> Result:
        prefix = "Transferer" if kind == "blind" else "OrigTransferer"
        linkedid = event.get(f"{prefix}Linkedid")
        call = model.calls.get(linkedid)
        if call is None:
            return model, []
        target = event.get("Extension") if kind == "blind" else event.get("SecondTransfererLinkedid")
        transfer = Transfer(kind=kind, at=now, channel=event.get(f"{prefix}Channel"), target=target)
        calls = _put(model.calls, linkedid, _copy(call, transfers=(*call.transfers, transfer)))
        return _evolve(model, calls=calls), [CallTransferred(linkedid, transfer)]

    return handler


# -- agents ---------------------------------------------------------------------------------------------------


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


def tick(model: LiveModel, now: float) -> Result:
    """Ends the wrap-ups that are over (Asterisk sends no event when a member's wrap-up time runs out)."""
    if model.wrapup_due is None or now < model.wrapup_due:
        return model, []
    events: list[DomainEvent] = []
    return _expire_wrapups(model, now, events), events


# -- queues ---------------------------------------------------------------------------------------------------


def _queue(model: LiveModel, name: str) -> QueueState:
    return model.queues.get(name) or QueueState(name=name)


def _queues_with(
    model: LiveModel, queue: QueueState, events: list[DomainEvent], *, changed: bool = False
) -> dict[str, QueueState]:
    """The model's queues with ``queue`` stored; a QueueChanged is appended when its callers or members changed
    (``changed``: the caller knows they did)."""
    old = model.queues.get(queue.name)
    if changed or old is None or old.waiting != queue.waiting or old.members != queue.members:
        events.append(QueueChanged(queue.name, len(queue.waiting), len(queue.members)))
    return _put(model.queues, queue.name, queue)


def _renumber(ranked: list[tuple[int, WaitingCaller]]) -> tuple[WaitingCaller, ...]:
    """The callers in the order of their rank (ties keep the list's order), numbered from 1; a caller whose
    position is already right stays the same object."""
    if len(ranked) == 1:
        caller = ranked[0][1]
        return (caller if caller.position == 1 else _copy(caller, position=1),)
    ranked.sort(key=_RANK)
    return tuple(
        caller if caller.position == index else _copy(caller, position=index)
        for index, (_, caller) in enumerate(ranked, 1)
    )


def _on_caller_join(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    get = headers.get
    events: list[DomainEvent] = []
    queue = _queue(model, get("queue", ""))
    uniqueid = get("uniqueid", "")
    caller = WaitingCaller(
        uniqueid,
        get("channel", ""),
        get("linkedid", "") or uniqueid,
        get("calleridnum", ""),
        get("calleridname", ""),
        _int(get("position", ""), len(queue.waiting) + 1),
        now,  # entered
    )
    # A caller who joins ahead of others (a priority) pushes them one place back, as Asterisk does.
    position = caller.position
    ranked = [
        (c.position + 1 if c.position >= position else c.position, c) for c in queue.waiting if c.uniqueid != uniqueid
    ]
    ranked.append((position, caller))
    queue = QueueState(queue.name, _renumber(ranked), queue.members, queue.completed, queue.abandoned)
    queues = _queues_with(model, queue, events)
    calls = None
    call = model.calls.get(caller.linkedid)
    if call is not None:
        segment = QueueSegment(queue.name, now)
        call = _copy(call, queue=queue.name, queued_at=now, segments=(*call.segments, segment))
        calls = _put(model.calls, call.linkedid, call)
    return _evolve(model, calls=calls, queues=queues), events


def _on_caller_leave(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    queue = model.queues.get(headers.get("queue", ""))
    if queue is None:
        return model, []
    uniqueid = headers.get("uniqueid", "")
    waiting = _renumber([(c.position, c) for c in queue.waiting if c.uniqueid != uniqueid])
    if waiting == queue.waiting:
        return model, []
    events: list[DomainEvent] = []
    queue = QueueState(queue.name, waiting, queue.members, queue.completed, queue.abandoned)
    return _evolve(model, queues=_queues_with(model, queue, events, changed=True)), events


def _on_caller_abandon(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    events: list[DomainEvent] = []
    queue = _queue(model, headers.get("queue", ""))
    queue = _copy(queue, abandoned=queue.abandoned + 1)
    queues = _queues_with(model, queue, events)
    linkedid = headers.get("linkedid", "") or headers.get("uniqueid", "")
    calls = None
    call = model.calls.get(linkedid)
    if call is not None:
        held = _float(headers.get("holdtime", ""))
        wait = held if held is not None else (now - call.queued_at if call.queued_at is not None else None)
        call = _copy(
            call,
            segments=_segments_with(call, queue.name, abandoned=True, wait_time=wait),
            wait_time=wait,
            outcome=CallOutcome.ABANDONED if call.answered_at is None else call.outcome,
        )
        calls = _put(model.calls, linkedid, call)
    return _evolve(model, calls=calls, queues=queues), events


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
        call = _copy(call, segments=_segments_with(call, queue_name, talk_time=talk), talk_time=talk)
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


def _on_fully_booted(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uptime = _float(event.get("Uptime"))
    if uptime is None:
        return model, []
    started = now - uptime
    restarted = model.asterisk_started is not None and abs(started - model.asterisk_started) > _BOOT_TOLERANCE
    return _copy(model, asterisk_started=started, resync_needed=model.resync_needed or restarted), []


# -- list events (resync) --------------------------------------------------------------------------------------


def _on_core_show_channel(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.get("Uniqueid")
    if not uniqueid:
        return model, []
    old = model.channels.get(uniqueid)
    channel = _channel(event.lowered, now, old, event.get("BridgeId"))
    if old is None:
        channel = _copy(channel, created=now - _duration(event.get("Duration")))
    new_call = channel.linkedid not in model.calls
    did = _did(event)
    model = _with_leg(model, channel, now, did)
    call = model.calls[channel.linkedid]
    changes: dict[str, Any] = {}
    if new_call and not did:
        # Exten is where the dialplan is now, not the number dialled: only CC_DID tells the DID.
        changes["did"] = ""
    if channel.created < call.started:
        changes["started"] = channel.created
    if uniqueid == channel.linkedid and old is None:
        # The call's first leg carries the caller (CoreShowChannels lists the legs in no particular order).
        changes.update(caller_number=channel.caller_number, caller_name=channel.caller_name)
    if changes:
        model = _evolve(model, calls=_put(model.calls, call.linkedid, _copy(call, **changes)))
    return model, []


def _on_queue_params(model: LiveModel, event: AmiMessage, now: float) -> Result:
    events: list[DomainEvent] = []
    queue = _queue(model, event.get("Queue"))
    queue = _copy(
        queue,
        completed=_int(event.get("Completed"), queue.completed),
        abandoned=_int(event.get("Abandoned"), queue.abandoned),
    )
    return _evolve(model, queues=_queues_with(model, queue, events)), events


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
    ranked = [(c.position, c) for c in queue.waiting if c.uniqueid != uniqueid]
    ranked.append((caller.position, caller))
    model = _evolve(model, queues=_queues_with(model, _copy(queue, waiting=_renumber(ranked)), events))
    call = model.calls.get(caller.linkedid)
    if call is not None and call.queued_at is None:
        call = _copy(call, queue=queue.name, queued_at=caller.entered)
        call = _copy(call, segments=_segments_with(call, queue.name))
        model = _evolve(model, calls=_put(model.calls, call.linkedid, call))
    return model, events


def _on_queue_summary(model: LiveModel, event: AmiMessage, now: float) -> Result:
    name = event.get("Queue")
    if not name or name in model.queues:
        return model, []
    events: list[DomainEvent] = []
    return _evolve(model, queues=_queues_with(model, QueueState(name=name), events)), events


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
    """The next model and the domain events ``event`` caused; an unknown event changes nothing.

    ``model`` itself is never changed: a reader holding it keeps seeing what it saw.
    """
    handler = HANDLERS.get(event.event)
    due = model.wrapup_due
    if due is None or now < due:
        if handler is None:
            return model, []
        return handler(model, event, now)
    expired: list[DomainEvent] = []
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
    fresh_agents = {
        interface: _copy(agent, queues=frozenset(), status=AgentStatus.LOGGED_OUT)
        for interface, agent in model.agents.items()
    }
    fresh = LiveModel(agents=fresh_agents, wrapup=model.wrapup, asterisk_started=model.asterisk_started)
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
            calls[linkedid] = _copy(call, agent=seat, outcome=CallOutcome.ANSWERED) if seat else call
            continue
        legs = (*old.legs, *(leg for leg in call.legs if leg not in old.legs))
        bridges = (*old.bridges, *(bridge for bridge in call.bridges if bridge not in old.bridges))
        segments = old.segments or call.segments
        calls[linkedid] = _copy(old, legs=legs, bridges=bridges, queue=old.queue or call.queue,
                                queued_at=old.queued_at if old.queued_at is not None else call.queued_at,
                                did=old.did or call.did, segments=segments)  # fmt: skip
    for linkedid, call in model.calls.items():
        if linkedid not in fresh.calls:
            events.append(CallEnded(_end_call(call, now)))
    agents: dict[str, AgentState] = {}
    for interface, agent in fresh.agents.items():
        old_agent = model.agents.get(interface)
        if old_agent is not None and old_agent.status is agent.status:
            agents[interface] = _copy(old_agent, queues=agent.queues, paused=agent.paused, linkedid=agent.linkedid)
            continue
        if old_agent is None and agent.status is AgentStatus.LOGGED_OUT:
            continue
        agents[interface] = _copy(agent, since=now)
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
            queue = _copy(
                queue, waiting=tuple(_copy(c, entered=entered.get(c.uniqueid, c.entered)) for c in queue.waiting)
            )
        queues[name] = queue
    due = min((a.wrapup_until for a in agents.values() if a.wrapup_until is not None), default=None)
    rebuilt = _copy(fresh, calls=calls, agents=agents, queues=queues, wrapup_due=due, resync_needed=False)
    return rebuilt, events
