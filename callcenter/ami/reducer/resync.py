"""Resync: Asterisk's restarts, and the fresh model made from its listings after a (re)connect.

Handles FullyBooted (a new start time means Asterisk restarted: the model needs a resync) and CoreShowChannel,
the list event of a CoreShowChannels answer (a channel and its call as they are now). The QueueStatus and
QueueSummary list events are handled where their live counterparts are (:mod:`.queues`, :mod:`.agents`).

``rebuild`` folds the listings into :func:`_fresh`'s model with ``apply``, in :func:`_listing_order`, then
:func:`_merged` keeps what only the previous model knew (a call's history, a seat's ``since``, a wrap-up still
running, a caller's join time) and closes the calls Asterisk no longer has.
"""

from __future__ import annotations

from typing import Any

from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.ami.reducer._copy import _copy, _evolve, _put
from callcenter.ami.reducer._handler import Result, _float, _int
from callcenter.ami.reducer.channels import _channel, _did, _with_leg
from callcenter.events import AgentStateChanged, CallEnded, DomainEvent, QueueChanged
from callcenter.model import AgentState, AgentStatus, Call, CallOutcome, LiveModel, QueueState

# FullyBooted's start time is derived from Uptime, which has a one-second resolution.
_BOOT_TOLERANCE = 2.0


def _duration(value: str) -> float:
    """CoreShowChannel's ``Duration: HH:MM:SS``."""
    total = 0
    for part in value.split(":"):
        total = total * 60 + _int(part)
    return float(total)


def _on_fully_booted(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uptime = _float(event.get("Uptime"))
    if uptime is None:
        return model, []
    started = now - uptime
    restarted = model.asterisk_started is not None and abs(started - model.asterisk_started) > _BOOT_TOLERANCE
    return _copy(model, asterisk_started=started, resync_needed=model.resync_needed or restarted), []


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
    if changes:
        model = _evolve(model, calls=_put(model.calls, call.linkedid, _copy(call, **changes)))
    return model, []


# -- rebuild ---------------------------------------------------------------------------------------------------


def _fresh(model: LiveModel) -> LiveModel:
    """The model the listings are folded into: the seats known so far, logged out and in no queue (the
    QueueMember events put back the ones Asterisk still has), the wrap-up times and Asterisk's start time."""
    fresh_agents = {
        interface: _copy(agent, queues=frozenset(), status=AgentStatus.LOGGED_OUT)
        for interface, agent in model.agents.items()
    }
    return LiveModel(agents=fresh_agents, wrapup=model.wrapup, asterisk_started=model.asterisk_started)


def _listing_order(result: AmiResult) -> int:
    """The channels first, so that the queue listings find the calls their callers are in and the channels
    their seats talk on."""
    return 0 if result.events and result.events[0].event == "CoreShowChannel" else 1


def _merged(model: LiveModel, fresh: LiveModel, now: float) -> Result:
    """``fresh``, folded from the listings, merged with what ``model`` knew, and the domain events of the
    differences: a CallEnded for each call Asterisk no longer has, an AgentStateChanged for each seat whose
    status changed, a QueueChanged for each queue whose callers or members changed."""
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
        # The listing's caller when it shows the call's own channel: the live events that came first after a
        # reconnect may have made the call from its agent's leg.
        caller = call if linkedid in fresh.channels else old
        calls[linkedid] = _copy(old, legs=legs, bridges=bridges, queue=old.queue or call.queue,
                                queued_at=old.queued_at if old.queued_at is not None else call.queued_at,
                                did=old.did or call.did, segments=segments,
                                caller_number=caller.caller_number, caller_name=caller.caller_name)  # fmt: skip
    for linkedid, call in model.calls.items():
        if linkedid not in fresh.calls:
            # Ended while nobody listened: found out now, but when it ended and how long it talked are not known.
            events.append(CallEnded(_copy(call, ended=now), unobserved=True))
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
