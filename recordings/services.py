"""The recordings, as the engine holds them: one object composing their parts, each in its own module.

- ``index`` (recordings.index): a row by id under the access rule (recordings.access), search, edits of the
  description and tags, and the audit trail every part writes to.
- ``lifecycle`` (recordings.lifecycle): start, pause, resume and finish a recording's row; index a closed file.
- ``playback`` (recordings.playback): the verified file to stream, its conversions, waveform peaks; audited.
- ``retention`` (recordings.retention): retention by kind, erasure by number, housekeeping, the index checked
  against the files.

What they take and give is in recordings.infos. RecordingService only builds the parts with what they share (the
database, the configuration, the store, the auditor, the clock) and holds them: callers name the part they use
(``recordings.lifecycle.start(...)``), so there is no second name for any method.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from callcenter.auth.audit import Auditor
from callcenter.config import RecordingsConfig
from callcenter.db import Database, utcnow
from recordings.index import RecordingIndex
from recordings.lifecycle import RecordingLifecycle
from recordings.playback import Playback
from recordings.retention import Retention
from recordings.storage import RecordingStore


class RecordingService:
    def __init__(
        self,
        database: Database,
        config: RecordingsConfig,
        store: RecordingStore,
        *,
        transcode_dir: Path,
        auditor: Auditor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.index = RecordingIndex(database, config, auditor=auditor)
        self.lifecycle = RecordingLifecycle(database, self.index, store, clock=clock)
        self.playback = Playback(self.index, store, config, transcode_dir=transcode_dir)
        self.retention = Retention(database, self.index, store, self.playback, config, clock=clock)
