"""What the call features offer other packages: the records of finished calls, and callbacks placed for them.

Interfaces in plain values: :mod:`calls.reads` implements the reads over ``call_records`` and
:mod:`calls.callback_port` the one action (:class:`Callbacks`, the service desk's visits); the composition root
hands them to the packages that need them (the CRM's screen-pop, the service records calls leave and its callback
visits, the supervisor's board and statistics). Nothing here imports more than the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FinishedCall:
    """A finished call's record (docs/api.md, "Call records"); caller text is the caller's own, verbatim."""

    linkedid: str
    direction: str  # inbound | outbound | internal
    caller_number: str
    caller_name: str
    did: str
    started_at: datetime
    ended_at: datetime
    outcome: str  # answered | voicemail | after_hours | abandoned | abandoned_in_ivr | completed_in_ivr | failed
    ivr_choice: str | None
    wait_time: float | None
    talk_time: float | None
    agent: str | None  # the first seat that answered
    expert: str | None
    handoff_notes: str | None
    # The call's stays in queues as JSON text, as the API gives them: a list of {"queue", "agent", "entered",
    # "answered_at", "wait_time", "talk_time", "abandoned"}, times in ISO 8601.
    segments: str


@dataclass(frozen=True, slots=True)
class CallFigures:
    """What figures over many calls need of each: when it started, which way, how it ended, its stays."""

    linkedid: str
    started_at: datetime
    direction: str
    outcome: str
    segments: str  # as in FinishedCall


@dataclass(frozen=True, slots=True)
class PastCall:
    """An earlier call of a caller, as a caller's history shows it."""

    linkedid: str
    started_at: datetime
    caller_number: str
    outcome: str
    ivr_choice: str | None
    agent: str | None
    expert: str | None
    talk_time: float | None
    handoff_notes: str | None


class CallRecords(Protocol):
    """The records of finished calls."""

    async def record(self, linkedid: str) -> FinishedCall | None:
        """The record of one call, once it is written."""
        ...

    async def started_between(
        self, start: datetime, end: datetime | None = None, *, direction: str | None = None
    ) -> Sequence[CallFigures]:
        """The calls that started in [start, end) (no end: up to now), of one direction if given, by start."""
        ...


class CallHistory(Protocol):
    """Earlier calls by caller number, for a caller's history (a hot read: one trip to the database)."""

    async def calls_from(self, numbers: Sequence[str], limit: int) -> Sequence[PastCall]:
        """Up to ``limit`` calls whose caller number ends in the same last digits as one of ``numbers``, newest
        first. The digits find candidates however a number was written (+86 138..., 0138..., 138...); they can
        also match other numbers, so the caller keeps the ones its own numbering rules say are the same."""
        ...


@dataclass(frozen=True, slots=True)
class PlacedCallback:
    """A callback Asterisk was asked to place: the agent's phone rings first, then ``number``."""

    callback_id: str
    linkedid: str  # the call's linkedid (Asterisk takes it from the agent leg's channel id)
    number: str  # as dialled: digits after an optional +
    agent: str  # the interface rung first, PJSIP/<extension>


class Callbacks(Protocol):
    """Outbound callbacks placed for another package (the service desk's callback visits), recorded in full by the
    dialplan like every callback. Refusals are the API's errors, with their status: a number that is not one
    (400), a user without a phone or whose phone is busy (409), Asterisk not taking the call (503)."""

    async def place(
        self,
        *,
        user_id: int,
        username: str,
        extension: str | None,
        number: str,
        service_record_id: int | None = None,
        customer_id: int | None = None,
        remote: str | None = None,
    ) -> PlacedCallback:
        """Rings ``extension`` (the placing user's own phone), then ``number``; audited as the user's callback."""
        ...
