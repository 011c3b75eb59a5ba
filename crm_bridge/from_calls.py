"""Service records that calls leave on their own, whether or not an agent writes one.

- A caller who gave up in a queue leaves a ``callback_visit`` task (call them back).
- A caller who chose "complaint" in the IVR always leaves a ``complaint`` record (the agent adds the content).
- An expert voicemail (a handoff nobody took) leaves a ``voicemail`` record with the first agent's notes.

Writes go through the outbox with an idempotency key made from the call, so a record is written once even when
the database is down for a while or an event is seen twice. After-hours voicemails are filed by the IVR's
voicemail sink (callcenter/adapters.py), not here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from callcenter.bus import Bus
from callcenter.db import DatabaseError
from callcenter.model import LiveModel
from calls.events import CallRecorded, ExpertOutcome
from calls.ports import CallRecords, FinishedCall
from crm_bridge.models import CALLER_NUMBER_MAX, NAME_MAX, RecordType
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import ServiceRecordIn
from crm_bridge.services import CrmService

log = logging.getLogger("crm_bridge.from_calls")

ACTOR = "system"


def _truly_abandoned(row: FinishedCall) -> bool:
    """Whether the record says nobody served the caller, and nothing in it says otherwise: a record with a seat or a
    talk time was answered whatever its outcome says (a record made from a partial view, after a crash, once read
    ``abandoned`` with both), and a callback task for a served customer is work for nothing."""
    return row.outcome == "abandoned" and not row.agent and not row.expert and not row.talk_time


class CallServiceRecords:
    """Files the service records calls leave: from the record each ``CallRecorded`` carries, and for an expert's
    outcome from the call's record read through the calls' port (``calls``)."""

    def __init__(
        self,
        crm: CrmService,
        outbox: ServiceRecordOutbox,
        calls: CallRecords,
        bus: Bus,
        model: Callable[[], LiveModel],
    ) -> None:
        self._model = model
        self._crm = crm
        self._outbox = outbox
        self._calls = calls
        self._bus = bus
        self._unsubscribe: list[Callable[[], None]] = []
        self.written: list[str] = []

    def start(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(CallRecorded, self._on_recorded),
            self._bus.subscribe(ExpertOutcome, self._on_expert_outcome),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    async def _customer(self, number: str) -> int | None:
        """The customer a record is filed under: the one owner of the number (none when unknown or shared)."""
        owners = await self._crm.customers.owners_of(number, limit=2)
        return owners[0] if len(owners) == 1 else None

    async def _submit(self, key: str, record_type: RecordType, number: str, content: str, **extra: Any) -> None:
        try:
            customer = await self._customer(number) if number else None
        except DatabaseError:
            customer = None
        data = ServiceRecordIn(
            type=record_type,
            content=content,
            customer_id=customer,
            caller_number=number[:CALLER_NUMBER_MAX] or None,
            idempotency_key=key,
            **extra,
        )
        await self._outbox.submit(data, actor=ACTOR)
        self.written.append(key)

    async def _on_recorded(self, event: CallRecorded) -> None:
        # The event carries the record as written: what it says decides the service records, even when the
        # database went away right after writing it (the outbox keeps them until it is back).
        linkedid = event.linkedid
        row = event.call
        number = row.caller_number
        if _truly_abandoned(row):
            waited = f" after waiting {row.wait_time:.0f} s" if row.wait_time is not None else ""
            await self._submit(
                f"abandoned:{linkedid}",
                RecordType.CALLBACK_VISIT,
                number,
                f"The caller hung up in the queue{waited}. Call them back.",
                linkedid=linkedid,
                caller_name=row.caller_name[:NAME_MAX] or None,
            )
        if row.ivr_choice == RecordType.COMPLAINT and row.outcome != "voicemail":
            await self._submit(
                f"complaint:{linkedid}",
                RecordType.COMPLAINT,
                number,
                "Complaint chosen in the voice menu.",
                linkedid=linkedid,
                caller_name=row.caller_name[:NAME_MAX] or None,
            )

    async def _on_expert_outcome(self, event: ExpertOutcome) -> None:
        if event.outcome not in ("voicemail", "callback"):
            return
        linkedid = event.linkedid
        handoff = event.handoff_id
        number = ""
        call_notes = ""
        try:
            row = await self._calls.record(linkedid)
        except DatabaseError:
            # The event carries what the record needs; the outbox keeps it until the database is back.
            row = None
        if row is not None:
            number, call_notes = row.caller_number, row.handoff_notes or ""
        live = self._model().calls.get(linkedid)
        if live is not None and not number:
            number = live.caller_number
        notes = event.notes or ""
        call_notes = call_notes or notes
        if event.outcome == "voicemail":
            content = f"Voicemail for an expert ({event.voicemail_path})."
            record_type = RecordType.VOICEMAIL
        else:
            content = "The caller asked an expert to call back."
            record_type = RecordType.CALLBACK_VISIT
        if call_notes:
            content += f" Agent's notes: {call_notes}"
        await self._submit(f"expert-{event.outcome}:{handoff}", record_type, number, content, linkedid=linkedid)
