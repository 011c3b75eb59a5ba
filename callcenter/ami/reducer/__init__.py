"""Folds AMI events into the live model: ``apply(model, event, now) -> (model, domain_events)``, and nothing else.

Pure: no I/O, no clock (``now`` is given, since Asterisk's events carry no timestamp unless timestampevents is
on), no state outside the model. Handlers are looked up by event name in :data:`HANDLERS`; an event without a
handler returns the same model and no domain events. The list events that answer CoreShowChannels, QueueStatus
and QueueSummary are handled too, as upserts; :func:`rebuild` uses them to make a fresh model after a (re)connect
and closes the calls Asterisk no longer has.

Every event of a live connection goes through :func:`apply`, so the handlers are written for speed (bench/ami.py)
without giving up immutability: nothing that is already part of a model is ever changed. A handler copies each
mapping it changes once (``_put``, ``_drop``), builds each changed value once with one constructor call
(``_copy`` instead of ``dataclasses.replace``, several times slower on the frozen, slotted classes of
:mod:`callcenter.model`) and makes one new :class:`LiveModel` at the end; when an event changes nothing (a device
state the seat already had, a BridgeLeave of a channel in no bridge) the same model object comes back. Headers are
read through :attr:`AmiMessage.lowered` (lower-cased names, no ``lower()`` per lookup).

The handlers live by what they keep current, each module naming the AMI events it handles:

- :mod:`._copy`: the immutable-update helpers above; :mod:`._handler`: a handler's signature, header numbers.
- :mod:`.channels`: channels and calls (Newchannel, Newstate, NewCallerid, Hangup, bridges, transfers, the DID).
- :mod:`.queues`: queues and their waiting callers (QueueCaller*, and the QueueParams, QueueEntry and
  QueueSummary list events), and the queue segments of each call.
- :mod:`.agents`: the seats (QueueMember*, Agent*, wrap-up, pause).
- :mod:`.resync`: FullyBooted, CoreShowChannel, and the merge that ends :func:`rebuild`.

A handler calls another module's helpers directly, imported by name: a call costs what it did when all of them
were in one module. :data:`HANDLERS` is the only place that knows which module handles which event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.ami.reducer._handler import Handler, Result
from callcenter.ami.reducer.agents import (
    _expire_wrapups,
    _on_agent_called,
    _on_agent_complete,
    _on_agent_connect,
    _on_member,
    _on_member_removed,
    _on_ring_no_answer,
)
from callcenter.ami.reducer.channels import (
    DID_VARIABLE,
    _on_bridge_enter,
    _on_bridge_leave,
    _on_channel_update,
    _on_hangup,
    _on_newchannel,
    _on_transfer,
)
from callcenter.ami.reducer.queues import (
    _on_caller_abandon,
    _on_caller_join,
    _on_caller_leave,
    _on_queue_entry,
    _on_queue_params,
    _on_queue_summary,
)
from callcenter.ami.reducer.resync import _fresh, _listing_order, _merged, _on_core_show_channel, _on_fully_booted
from callcenter.events import DomainEvent
from callcenter.model import LiveModel

__all__ = ["DID_VARIABLE", "HANDLERS", "Handler", "Result", "apply", "rebuild", "tick"]

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
    fresh = _fresh(model)
    for result in sorted(results, key=_listing_order):
        for event in result.events:
            fresh, _ = apply(fresh, event, now)
    return _merged(model, fresh, now)


def tick(model: LiveModel, now: float) -> Result:
    """Ends the wrap-ups that are over (Asterisk sends no event when a member's wrap-up time runs out)."""
    if model.wrapup_due is None or now < model.wrapup_due:
        return model, []
    events: list[DomainEvent] = []
    return _expire_wrapups(model, now, events), events
