"""The composition root's adapters: what one feature package needs from another, built from the other's services.

The flow engine (ivr_flows) names what it needs as small Protocols in ``ivr_flows.ports``: a product catalog and a
customer directory (the CRM), a place for voicemail and an on-demand recording control (the recordings). This
module fills them in; feature packages never import each other.

- Products and customer tiers come from the CRM (:class:`CrmProductCatalog`, :class:`CrmCustomerDirectory`): the
  CRM binds the caller's keys as parameters and refuses anything that is not a code or a number before any query
  (a code carrying SQL, or 200 digits, is simply not found).
- An after-hours message is allocated in the recordings store as kind ``voicemail`` (Asterisk records it there),
  filed as a CRM service record of its intent (complaint, suggestion, repair booking) with status ``new`` through
  the outbox (a database that is down for a while loses nothing), and indexed with its intent, the caller's
  number, the time and the duration (read from the file), linked to that service record.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from crm_bridge.customers import Customers
from crm_bridge.knowledge import Knowledge
from crm_bridge.models import RecordType
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import ServiceRecordIn
from crm_bridge.services import CrmService
from ivr_flows.ports import (
    FlowPorts,
    InMemoryRecordingControl,
    Product,
    RecordingControl,
    VoicemailMessage,
    VoicemailTarget,
    safe_file_part,
)
from recordings.infos import CallFacts
from recordings.lifecycle import RecordingLifecycle
from recordings.models import Kind
from recordings.services import RecordingService

log = logging.getLogger("callcenter.adapters")

# Who the service records of the IVR are written by, in their history.
IVR_ACTOR = "ivr"
# The service record type of each voicemail intent of the shipped flows; any other intent files a plain voicemail.
RECORD_TYPES = {
    "complaint": RecordType.COMPLAINT,
    "suggestion": RecordType.SUGGESTION,
    "repair_request": RecordType.REPAIR_BOOKING,
}
INTENT_WORDS = {"complaint": "complaint", "suggestion": "suggestion", "repair_request": "repair request"}


class CrmProductCatalog:
    """``ivr_flows.ports.ProductCatalog`` over the CRM's products."""

    def __init__(self, knowledge: Knowledge) -> None:
        self._knowledge = knowledge

    async def find(self, code: str) -> Product | None:
        found = await self._knowledge.product(code)
        if found is None:
            return None
        return Product(found.code, found.name, found.price, found.availability, dict(found.spoken))


class CrmCustomerDirectory:
    """``ivr_flows.ports.CustomerDirectory`` over the CRM's customers."""

    def __init__(self, customers: Customers) -> None:
        self._customers = customers

    async def tier(self, caller_number: str) -> str | None:
        """The best tier among the customers owning the number: a number shared by a VIP queues as the VIP."""
        return await self._customers.best_tier(caller_number)


class VoicemailFiler:
    """``ivr_flows.ports.VoicemailSink`` for the engine: the recordings store, the CRM and the recordings index."""

    def __init__(self, lifecycle: RecordingLifecycle, outbox: ServiceRecordOutbox) -> None:
        self._lifecycle = lifecycle
        self._outbox = outbox

    async def allocate(self, *, uniqueid: str, intent: str) -> VoicemailTarget:
        store = self._lifecycle.store
        now = datetime.now(UTC)
        allocation = store.allocate(Kind.VOICEMAIL, now)
        try:
            # Made with the store root's owner: Asterisk, which writes the file, runs as the sandbox's user.
            await asyncio.to_thread(store.ensure_directory, Kind.VOICEMAIL, now)
        except OSError as exc:
            # Asterisk then cannot record; the flow goes on and the log says why.
            log.error("voicemail directory for %s cannot be made: %s", allocation.relative, exc)
        # RECORD FILE takes the name without its extension and adds the format's (.wav).
        return VoicemailTarget(record_as=allocation.asterisk_path.removesuffix(".wav"), path=allocation.path)

    async def store(self, message: VoicemailMessage) -> None:
        """Files the message. A CRM or an index that refuses it is logged, never the caller's problem: the file
        is kept on disk, and the recordings check reports a file without an index row."""
        record_id = await self._service_record(message)
        facts = CallFacts(
            linkedid=message.linkedid or None,
            uniqueid=message.uniqueid or None,
            caller_number=message.caller_number or None,
            called_number=message.did or None,
            did=message.did or None,
            service_record_id=record_id,
            service_record_type=str(record_type(message.intent)),
            intent=message.intent,
            description=f"After-hours voicemail: {intent_words(message.intent)}",
            tags=("after_hours", message.intent),
        )
        try:
            await self._lifecycle.register_file(
                message.path,
                facts,
                kind=Kind.VOICEMAIL,
                started_at=message.recorded_at,
                ended_at=message.recorded_at + timedelta(seconds=message.duration),
            )
        except Exception:
            log.exception("voicemail %s: not indexed in the recordings", message.path.name)

    async def _service_record(self, message: VoicemailMessage) -> int | None:
        content = (
            f"After-hours voicemail ({intent_words(message.intent)}), {message.duration:.1f} s, left at "
            f"{message.recorded_at.isoformat(timespec='seconds')}: {message.path.name}"
        )
        try:
            data = ServiceRecordIn(
                type=record_type(message.intent),
                content=content,
                linkedid=message.linkedid[:64] or None,
                caller_number=message.caller_number or None,
                idempotency_key=f"ivr-voicemail:{safe_file_part(message.path.stem, 100)}",
            )
            submitted = await self._outbox.submit(data, actor=IVR_ACTOR)
        except Exception:
            # Refused (or broken) records are the CRM's to report; the message is on disk and the caller is
            # thanked all the same: a failure here must not send them to the fallback queue.
            log.exception("voicemail %s: the CRM did not take its service record", message.path.name)
            return None
        if submitted.queued:
            log.warning("voicemail %s: service record waits in the outbox (database unavailable)", message.path.name)
        return submitted.record.id if submitted.record is not None else None


def record_type(intent: str) -> RecordType:
    return RECORD_TYPES.get(intent, RecordType.VOICEMAIL)


def intent_words(intent: str) -> str:
    return INTENT_WORDS.get(intent, intent.replace("_", " "))


def flow_ports(
    *,
    crm: CrmService,
    outbox: ServiceRecordOutbox,
    recordings: RecordingService,
    recording: RecordingControl | None = None,
) -> FlowPorts:
    """The flow engine's ports for this engine."""
    return FlowPorts(
        catalog=CrmProductCatalog(crm.knowledge),
        directory=CrmCustomerDirectory(crm.customers),
        voicemail=VoicemailFiler(recordings.lifecycle, outbox),
        recording=recording or InMemoryRecordingControl(),
    )
