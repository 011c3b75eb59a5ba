"""The live model: what Asterisk is doing right now, as immutable values.

Every class here is a frozen dataclass; :mod:`callcenter.ami.reducer` makes the next model from the previous one
and an AMI event, so a reader holding a model never sees it change. Times are seconds (the clock the reducer is
given). Caller numbers and names come from SIP and are hostile text: they are stored verbatim and must be escaped
wherever they are shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from types import FunctionType, MemberDescriptorType
from typing import TypeVar

_T = TypeVar("_T")


class _Factory:
    """The default of a field that has a default factory, in the signatures :func:`_slot_init` makes."""

    def __repr__(self) -> str:
        return "<factory>"


_NO_VALUE = _Factory()


def _slot_init(cls: type[_T]) -> type[_T]:
    """Gives a frozen, slotted dataclass an ``__init__`` that stores each field straight into its slot.

    The ``__init__`` that ``@dataclass(frozen=True)`` writes stores every field through ``object.__setattr__``,
    about three times the cost of the slot's own descriptor; the reducer makes several of these values for most
    AMI events (bench/ami.py), and ``dataclasses.replace`` goes through ``__init__`` too. This one is generated
    the way dataclasses generates its own: same parameters in the same order, same defaults, default factories
    called for each instance. Nothing else changes: the class stays frozen (its ``__setattr__`` still refuses
    every assignment), and equality, hashing, repr and pickling are dataclasses' own.
    """
    namespace: dict[str, object] = {"_NO_VALUE": _NO_VALUE}
    parameters: list[str] = []
    body: list[str] = []
    for index, item in enumerate(fields(cls)):  # type: ignore[arg-type]
        slot = cls.__dict__.get(item.name)
        if not isinstance(slot, MemberDescriptorType) or not item.init or item.kw_only:
            raise TypeError(f"{cls.__name__}.{item.name} is not a plain field of a slotted dataclass")
        namespace[f"_set_{index}"] = slot.__set__
        value = item.name
        if item.default is not MISSING:
            namespace[f"_default_{index}"] = item.default
            parameters.append(f"{item.name}=_default_{index}")
        elif item.default_factory is not MISSING:
            namespace[f"_factory_{index}"] = item.default_factory
            parameters.append(f"{item.name}=_NO_VALUE")
            value = f"_factory_{index}() if {item.name} is _NO_VALUE else {item.name}"
        else:
            parameters.append(item.name)
        body.append(f"    _set_{index}(self, {value})\n")
    source = "def __init__(self, " + ", ".join(parameters) + "):\n" + "".join(body)
    exec(source, namespace)  # noqa: S102 - made of the class's own field names only, as dataclasses does
    init = namespace["__init__"]
    assert isinstance(init, FunctionType)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


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


@_slot_init
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


@_slot_init
@dataclass(frozen=True, slots=True)
class Transfer:
    kind: str  # "blind" or "attended"
    at: float
    channel: str  # the transferer's channel name
    target: str  # the extension (blind) or the other call's linkedid (attended)


@_slot_init
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


@_slot_init
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


@_slot_init
@dataclass(frozen=True, slots=True)
class WaitingCaller:
    uniqueid: str
    channel: str
    linkedid: str
    caller_number: str
    caller_name: str
    position: int
    entered: float


@_slot_init
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


@_slot_init
@dataclass(frozen=True, slots=True)
class QueueState:
    name: str
    waiting: tuple[WaitingCaller, ...] = ()  # in position order
    members: Mapping[str, QueueMember] = field(default_factory=dict)
    completed: int = 0
    abandoned: int = 0

    def longest_wait(self, now: float) -> float:
        return max((now - caller.entered for caller in self.waiting), default=0.0)


@_slot_init
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


@_slot_init
@dataclass(frozen=True, slots=True)
class LiveModel:
    channels: Mapping[str, Channel] = field(default_factory=dict)  # by uniqueid
    calls: Mapping[str, Call] = field(default_factory=dict)  # live calls by linkedid
    queues: Mapping[str, QueueState] = field(default_factory=dict)
    agents: Mapping[str, AgentState] = field(default_factory=dict)  # by interface
    wrapup: Mapping[str, float] = field(
        default_factory=dict
    )  # wrap-up seconds by queue (queues.conf wrapuptime; Asterisk never says)
    wrapup_due: float | None = None  # the earliest wrapup_until, so apply() checks one number per event
    asterisk_started: float | None = None  # from FullyBooted; a new value means Asterisk restarted
    resync_needed: bool = False
