"""The live model: what Asterisk is doing right now, as immutable values.

Every class here is a frozen dataclass; :mod:`callcenter.ami.reducer` makes the next model from the previous one
and an AMI event, so a reader holding a model never sees it change. Times are seconds (the clock the reducer is
given). Caller numbers and names come from SIP and are hostile text: they are stored verbatim and must be escaped
wherever they are shown.

The classes are plain ``@dataclass(frozen=True, slots=True)`` declarations. For speed they get a faster
``__init__`` in one place, at the bottom of this file (:mod:`callcenter.fastinit`); it builds the same objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from callcenter import fastinit


class AgentStatus(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class CallOutcome(StrEnum):
    # Still live, or ended without reaching a queue decision (IVR only, voicemail...): call records refine it.
    NONE = ""
    ANSWERED = "answered"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Channel:
    uniqueid: str
    name: str
    linkedid: str
    state: int = 0
    state_desc: str = ""
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    bridge_id: str = ""
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class Transfer:
    kind: str  # "blind" or "attended"
    at: float
    channel: str  # the transferer's channel name
    target: str  # the extension (blind) or the other call's linkedid (attended)


@dataclass(frozen=True, slots=True)
class QueueSegment:
    """One stay of the call in one queue: an expert handoff gives a call a second segment in the expert queue."""

    queue: str
    entered: float
    agent: str = ""  # the member's interface that answered this segment
    answered_at: float | None = None
    wait_time: float | None = None
    talk_time: float | None = None
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """Every channel that shares one linkedid; it ends when the last of them hangs up."""

    linkedid: str
    started: float
    caller_number: str = ""
    caller_name: str = ""
    did: str = ""
    legs: tuple[str, ...] = ()  # uniqueids of every channel the call ever had, in order
    bridges: tuple[str, ...] = ()  # every bridge the call's channels entered, in order
    transfers: tuple[Transfer, ...] = ()
    queue: str = ""
    queued_at: float | None = None
    agent: str = ""  # the queue member's interface that answered (PJSIP/1001)
    answered_at: float | None = None
    wait_time: float | None = None
    talk_time: float | None = None
    outcome: CallOutcome = CallOutcome.NONE
    ended: float | None = None
    segments: tuple[QueueSegment, ...] = ()  # every queue the call went through, in order


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    uniqueid: str
    channel: str
    linkedid: str
    caller_number: str
    caller_name: str
    position: int
    entered: float


@dataclass(frozen=True, slots=True)
class QueueMember:
    interface: str
    name: str
    state_interface: str = ""
    membership: str = "dynamic"
    penalty: int = 0
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    status: int = 0  # Asterisk's device state (1 not in use, 2 in use, 6 ringing...)
    calls_taken: int = 0


@dataclass(frozen=True, slots=True)
class QueueState:
    name: str
    waiting: tuple[WaitingCaller, ...] = ()  # in position order
    members: Mapping[str, QueueMember] = field(default_factory=dict)
    completed: int = 0
    abandoned: int = 0

    def longest_wait(self, now: float) -> float:
        return max((now - caller.entered for caller in self.waiting), default=0.0)


@dataclass(frozen=True, slots=True)
class AgentState:
    """One seat, by its queue interface; ``since`` is when ``status`` began."""

    interface: str
    status: AgentStatus = AgentStatus.LOGGED_OUT
    since: float = 0.0
    pause_reason: str = ""
    paused: bool = False  # paused in Asterisk; during a call the status stays on_call and becomes paused after
    queues: frozenset[str] = frozenset()
    linkedid: str = ""  # the call being offered or handled
    wrapup_until: float | None = None


@dataclass(frozen=True, slots=True)
class LiveModel:
    channels: Mapping[str, Channel] = field(default_factory=dict)  # by uniqueid
    calls: Mapping[str, Call] = field(default_factory=dict)  # live calls by linkedid
    queues: Mapping[str, QueueState] = field(default_factory=dict)
    agents: Mapping[str, AgentState] = field(default_factory=dict)  # by interface
    # Wrap-up seconds by queue (queues.conf wrapuptime; Asterisk never says).
    wrapup: Mapping[str, float] = field(default_factory=dict)
    wrapup_due: float | None = None  # the earliest wrapup_until, so apply() checks one number per event
    asterisk_started: float | None = None  # from FullyBooted; a new value means Asterisk restarted
    resync_needed: bool = False


# The classes above get a faster __init__ than the one dataclasses writes (it stores each field straight into
# its slot): the reducer builds several of them for most AMI events. Same arguments, same objects, same errors;
# see callcenter/fastinit.py and tests/unit/test_model_fastinit.py. A class added above belongs here too.
fastinit.install(Channel, Transfer, QueueSegment, Call, WaitingCaller, QueueMember, QueueState, AgentState, LiveModel)
