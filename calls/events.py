"""What the call features publish on the bus (subscribe by class; docs/events.md lists the subscribers)."""

from __future__ import annotations

from dataclasses import dataclass

from calls.ports import FinishedCall


@dataclass(frozen=True, slots=True)
class CallRecorded:
    """A call's record was written: from the live model (``source`` "live"), the CEL backfill or a reconcile.

    ``call`` is the record as written, so that what each call's end sets off (its service records, the board's
    figures, its recordings' owners) needs no read of it."""

    linkedid: str
    outcome: str
    source: str
    call: FinishedCall


@dataclass(frozen=True, slots=True)
class ExpertRequested:
    """An agent handed a call to the expert queue, with notes for the expert."""

    linkedid: str
    handoff_id: str
    from_user: str
    from_interface: str
    notes: str
    requested_at: str  # ISO 8601
    voicemail_recording_id: str | None


@dataclass(frozen=True, slots=True)
class ExpertOutcome:
    """How a handoff ended: ``answered`` by ``expert``, or ``voicemail``/``callback`` when no expert answered in
    time (then the caller's number, the message's path, the notes and who handed the call are given)."""

    linkedid: str
    handoff_id: str
    outcome: str
    expert: str | None = None
    caller_number: str | None = None
    voicemail_path: str | None = None
    notes: str | None = None
    from_user: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackStarted:
    """The engine placed a callback: it rings the agent's phone, then the customer's number."""

    callback_id: str
    linkedid: str
    number: str
    agent: str
    user: str
    service_record_id: int | None
    customer_id: int | None
