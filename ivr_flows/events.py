"""What the flow engine publishes on the bus (subscribe by class; docs/events.md lists the subscribers).

Times are seconds since the epoch. Caller text (numbers, names, digits) is hostile and stored verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class IvrStarted:
    """A call entered the voice menus."""

    uniqueid: str
    linkedid: str
    caller_number: str
    caller_name: str
    did: str
    flow: str
    language: str
    at: float


@dataclass(frozen=True, slots=True)
class IvrStep:
    """One step of a call's path (published only while someone subscribes: a tracing aid)."""

    uniqueid: str
    linkedid: str
    flow: str
    node: str
    step: str
    index: int
    digits: str | None
    result: str | None
    detail: str | None
    monotonic: float
    at: float


@dataclass(frozen=True, slots=True)
class IvrChoice:
    """The caller picked a menu option (published only while someone subscribes)."""

    uniqueid: str
    linkedid: str
    digits: str
    flow: str
    node: str
    target: str


@dataclass(frozen=True, slots=True)
class IvrEnded:
    """A call left the voice menus: how (``outcome``), where to (``queue``, ``priority``, ``choice``) and the whole
    path, one dict per step (see ``ivr_flows.steps.CallState.trace``). The call records keep it with the call and
    the screen-pop shows it to the agent."""

    uniqueid: str
    linkedid: str
    caller_number: str
    flow: str
    outcome: str
    path: list[dict[str, Any]]
    language: str
    queue: str | None
    priority: int | None
    choice: str | None
    voicemails: list[dict[str, Any]]
    started_at: float
    ended_at: float
    duration: float
    error: str | None


@dataclass(frozen=True, slots=True)
class FlowsReloaded:
    """The flow files were read again (SIGHUP, the API or a file change); ``ok`` False: the running ones stay."""

    ok: bool
    trigger: str
    flows: tuple[str, ...]
    issues: int
    at: str
