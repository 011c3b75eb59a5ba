"""The composition root's adapters: what one feature package needs from another, built from the other's services.

The flow engine (ivr_flows) names what it needs as small Protocols in ``ivr_flows.ports``: a product catalog and a
customer directory (the CRM), a place for voicemail and an on-demand recording control (the recordings). This
module fills them in; feature packages never import each other.

- Products and customer tiers come from the CRM (``crm_bridge.catalog``), which binds the caller's keys as
  parameters and refuses anything that is not a code or a number before any query.
- An after-hours message is recorded by Asterisk into ``<recordings_dir>/voicemail``, and filed as a CRM service
  record of its intent (complaint, suggestion, repair booking) with status ``new``, through the outbox, so that
  a database that is down for a while loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from callcenter.config import Config
from crm_bridge.catalog import CrmCustomerDirectory, CrmProductCatalog
from crm_bridge.models import RecordType
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import ServiceRecordIn
from crm_bridge.services import CrmService
from ivr_flows.ports import (
    FlowPorts,
    InMemoryRecordingControl,
    RecordingControl,
    VoicemailMessage,
    VoicemailTarget,
    safe_file_part,
)

log = logging.getLogger("callcenter.adapters")

VOICEMAIL_SUBDIR = "voicemail"
# Who the service records of the IVR are written by, in their history.
IVR_ACTOR = "ivr"
# The service record type of each voicemail intent of the shipped flows; any other intent files a plain voicemail.
RECORD_TYPES = {
    "complaint": RecordType.COMPLAINT,
    "suggestion": RecordType.SUGGESTION,
    "repair_request": RecordType.REPAIR_BOOKING,
}
INTENT_WORDS = {"complaint": "complaint", "suggestion": "suggestion", "repair_request": "repair request"}


def writable_like_parent(directory: Path) -> None:
    """Makes ``directory`` with the owner, group and mode of its parent (blocking).

    The recordings directory is Asterisk's: it writes the messages there as the sandbox's own user.
    """
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    parent = directory.parent.stat()
    if os.geteuid() == 0:
        os.chown(directory, parent.st_uid, parent.st_gid)
    directory.chmod(parent.st_mode & 0o7777)


class VoicemailFiler:
    """``ivr_flows.ports.VoicemailSink`` for the engine: the file, then the CRM service record of its intent."""

    def __init__(self, spool: Path, outbox: ServiceRecordOutbox) -> None:
        self.spool = spool
        self._outbox = outbox
        self._ready = False

    async def allocate(self, *, uniqueid: str, intent: str) -> VoicemailTarget:
        if not self._ready:
            try:
                await asyncio.to_thread(writable_like_parent, self.spool)
                self._ready = True
            except OSError as exc:
                # Asterisk then cannot record; the flow goes on and the log says why.
                log.error("voicemail directory %s cannot be made: %s", self.spool, exc)
        # A random part: two messages of one call (or a reused uniqueid after a restart) never share a file.
        stem = f"{safe_file_part(uniqueid)}-{safe_file_part(intent)}-{secrets.token_hex(4)}"
        return VoicemailTarget(record_as=str(self.spool / stem), path=self.spool / f"{stem}.wav")

    async def store(self, message: VoicemailMessage) -> None:
        """Files the message; a CRM that refuses it is logged, never the caller's problem (the file is kept)."""
        record_type = RECORD_TYPES.get(message.intent, RecordType.VOICEMAIL)
        words = INTENT_WORDS.get(message.intent, message.intent.replace("_", " "))
        content = (
            f"After-hours voicemail ({words}), {message.duration:.1f} s, left at "
            f"{message.recorded_at.isoformat(timespec='seconds')}: {message.path.name}"
        )
        try:
            data = ServiceRecordIn(
                type=record_type,
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
            return
        if submitted.queued:
            log.warning("voicemail %s: service record waits in the outbox (database unavailable)", message.path.name)


def flow_ports(
    config: Config,
    *,
    crm: CrmService,
    outbox: ServiceRecordOutbox,
    recording: RecordingControl | None = None,
) -> FlowPorts:
    """The flow engine's ports for this engine."""
    return FlowPorts(
        catalog=CrmProductCatalog(crm),
        directory=CrmCustomerDirectory(crm),
        voicemail=VoicemailFiler(config.recordings_dir / VOICEMAIL_SUBDIR, outbox),
        recording=recording or InMemoryRecordingControl(),
    )
