"""Queues and the callers waiting in them, and the queue segments of each call.

Handles QueueCallerJoin, QueueCallerLeave and QueueCallerAbandon, and the list events of the QueueStatus and
QueueSummary answers a resync folds: QueueParams (the completed and abandoned counts), QueueEntry (a waiting
caller) and QueueSummary (a queue with nobody in it). Callers are kept in position order, numbered from 1, as
Asterisk numbers them. The members of a queue are the seats' business: :mod:`.agents` handles QueueMember*.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from callcenter.ami.message import AmiMessage
from callcenter.ami.reducer._copy import _copy, _evolve, _put
from callcenter.ami.reducer._handler import Result, _float, _int
from callcenter.callerid import ami_caller_name, ami_caller_number
from callcenter.events import DomainEvent, QueueChanged
from callcenter.model import Call, CallOutcome, LiveModel, QueueSegment, QueueState, WaitingCaller

_RANK = itemgetter(0)


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


def _segments_with(call: Call, queue: str, **changes: Any) -> tuple[QueueSegment, ...]:
    """The call's segments with its latest one in ``queue`` changed (made if the call has none there yet)."""
    segments = call.segments
    for index in range(len(segments) - 1, -1, -1):
        if segments[index].queue == queue:
            return (*segments[:index], _copy(segments[index], **changes), *segments[index + 1 :])
    entered = changes.pop("entered", call.queued_at if call.queued_at is not None else call.started)
    return (*segments, _copy(QueueSegment(queue=queue, entered=float(entered)), **changes))


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
        ami_caller_number(get("calleridnum", "")),
        ami_caller_name(get("calleridname", "")),
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


# -- list events (resync) --------------------------------------------------------------------------------------


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
        caller_number=ami_caller_number(event.get("CallerIDNum")),
        caller_name=ami_caller_name(event.get("CallerIDName")),
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
