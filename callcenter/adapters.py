"""The composition root's adapters: what one feature package needs from another, built from the other's services.

The flow engine (ivr_flows) names what it needs as small Protocols in ``ivr_flows.ports``: a product catalog and a
customer directory (the CRM), a place for voicemail and an on-demand recording control (the recordings). This
module fills them in; feature packages never import each other.

Until the CRM bridge and the recordings store are in the engine, the flows run on the in-memory ports: a demo
catalog, no customer tiers, and voicemail recorded by Asterisk into ``<recordings_dir>/voicemail`` and kept in
memory (the file stays on disk).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from callcenter.config import Config
from ivr_flows.ports import (
    DEMO_PRODUCTS,
    FlowPorts,
    InMemoryCatalog,
    InMemoryDirectory,
    InMemoryRecordingControl,
    InMemoryVoicemailSink,
    VoicemailTarget,
)

log = logging.getLogger("callcenter.adapters")

VOICEMAIL_SUBDIR = "voicemail"


def writable_like_parent(directory: Path) -> None:
    """Makes ``directory`` with the owner and group of its parent (the recordings directory is Asterisk's: it
    writes the messages there, and runs as the sandbox's own user)."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    parent = directory.parent.stat()
    if os.geteuid() == 0:
        os.chown(directory, parent.st_uid, parent.st_gid)
    directory.chmod(parent.st_mode & 0o7777)


class SpoolVoicemailSink(InMemoryVoicemailSink):
    """Keeps the messages in memory; Asterisk writes each file under the spool directory, made on first use."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.directory = directory
        self._ready = False

    def allocate(self, *, uniqueid: str, intent: str) -> VoicemailTarget:
        if not self._ready:
            try:
                writable_like_parent(self.directory)
                self._ready = True
            except OSError as exc:
                # Asterisk then fails to record and the caller hears the flow go on; the log says why.
                log.error("voicemail directory %s cannot be made: %s", self.directory, exc)
        return super().allocate(uniqueid=uniqueid, intent=intent)


def flow_ports(config: Config) -> FlowPorts:
    """The flow engine's ports for this engine."""
    return FlowPorts(
        catalog=InMemoryCatalog(DEMO_PRODUCTS),
        directory=InMemoryDirectory(),
        voicemail=SpoolVoicemailSink(config.recordings_dir / VOICEMAIL_SUBDIR),
        recording=InMemoryRecordingControl(),
    )
