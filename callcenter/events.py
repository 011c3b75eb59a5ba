"""The core's domain events: what the live model saw Asterisk do, published on the bus by :mod:`callcenter.live`.

The reducer (:mod:`callcenter.ami.reducer`) yields the first six as it folds AMI events into the live model;
:class:`LiveResynced`, :class:`AsteriskUserEvent` and :class:`ChanSpyChanged` come from the live service itself.
Every event is a frozen dataclass and is subscribed to by its class (``bus.subscribe(CallOffered, handler)``);
docs/events.md lists each one with its publisher and subscribers (written by ``scripts/events_table.py``).
Times are seconds since the epoch (the clock the reducer is given).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from callcenter import fastinit
from callcenter.model import AgentStatus, Call, Transfer


@dataclass(frozen=True, slots=True)
class CallOffered:
    """A queue rings an agent with a call (AgentCalled)."""

    linkedid: str
    queue: str
    agent: str
    channel: str  # the agent's channel that rings
    at: float


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """An agent answered a queued call (AgentConnect)."""

    linkedid: str
    queue: str
    agent: str
    wait_time: float
    at: float


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """A party of the call transferred it (BlindTransfer or AttendedTransfer)."""

    linkedid: str
    transfer: Transfer


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The last channel of a call hung up; ``call`` is the call as the live model last saw it. ``unobserved``: the
    engine did not see the end (a resync found the call gone: the AMI was cut, Asterisk restarted); ``call.ended``
    is when it found out, and the talk it did not see is not filled in (Asterisk's event log knows it)."""

    call: Call
    unobserved: bool = False


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """A seat's state changed (available, ringing, on call, wrap-up, paused, logged out) at ``since``."""

    agent: str
    old: AgentStatus
    new: AgentStatus
    since: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """A queue's waiting callers or members changed."""

    queue: str
    waiting: int
    members: int


DomainEvent: TypeAlias = CallOffered | CallAnswered | CallTransferred | CallEnded | AgentStateChanged | QueueChanged

# The reducer makes these for most AMI events: the same faster __init__ as the model's (callcenter/fastinit.py).
fastinit.install(CallOffered, CallAnswered, CallTransferred, CallEnded, AgentStateChanged, QueueChanged)


@dataclass(frozen=True, slots=True)
class LiveResynced:
    """The live model was rebuilt from Asterisk's own listings (at every (re)connect, after lost events, after an
    Asterisk restart): whatever keeps state beside Asterisk (seats, recordings, call records) checks it now."""

    reason: str
    resyncs: int  # how many rebuilds since the engine started; 1 is the first


@dataclass(frozen=True, slots=True)
class AsteriskUserEvent:
    """A ``UserEvent`` the dialplan raised (the expert handoff's outcome...); the live model ignores them."""

    name: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChanSpyChanged:
    """``ChanSpyStart`` or ``ChanSpyStop`` (``name``): a supervisor's listening channel started or stopped."""

    name: str
    headers: Mapping[str, str] = field(default_factory=dict)
