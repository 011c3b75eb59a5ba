"""The recordings as a plugin (:class:`callcenter.plugin.Plugin`): the index of every recording, on-demand control
(start, stop, PCI pause), playback, retention and the housekeeping task.

After the first resync of the live model the recording control finds the recordings that were running when the
engine stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from callcenter.auth.audit import Auditor
from callcenter.config import Config
from callcenter.db import Database
from callcenter.events import LiveResynced
from callcenter.plugin import Core
from recordings.control import RecordingControl, RecordingRules
from recordings.control_http import recording_control_routes
from recordings.http import recordings_routes
from recordings.keys import RECORDING_CONTROL, RECORDINGS
from recordings.services import RecordingService
from recordings.storage import RecordingStore
from seats.ports import SeatDirectory

log = logging.getLogger("callcenter.recordings")

TRANSCODE_DIR = "transcode"

# A customer's tier by caller number (the CRM's, given by the composition root), for the recording rules.
TierLookup = Callable[[str], Awaitable[str | None]]


def build_recordings(config: Config, database: Database, auditor: Auditor) -> RecordingService:
    return RecordingService(
        database,
        config.recordings,
        RecordingStore(config.recordings_dir),
        transcode_dir=config.data_dir / TRANSCODE_DIR,
        auditor=auditor,
    )


class RecordingsPlugin:
    name = "recordings"

    def __init__(self, core: Core, *, seats: SeatDirectory, tier: TierLookup | None = None) -> None:
        """The ports of the other packages, given by the composition root: who sits at which seat (``seats``), and
        the CRM's best tier of a caller number for the recording rules (``tier``; none without a CRM)."""
        config, live = core.config, core.live
        self._bus = core.bus
        self.recordings = build_recordings(config, core.database, core.auth)
        self.control = RecordingControl(
            self.recordings,
            seats,
            core.bus,
            lambda: live.connection,
            lambda: live.model,
            rules=RecordingRules(config.recordings.record_tiers, config.recordings.record_queues),
            tier=tier,
        )
        self._maintenance: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def install(self, app: web.Application) -> None:
        app[RECORDINGS] = self.recordings
        app[RECORDING_CONTROL] = self.control
        app.add_routes(recordings_routes)
        app.add_routes(recording_control_routes)

    async def start(self) -> None:
        self.control.start()
        self._unsubscribe = self._bus.subscribe(LiveResynced, self._after_resync)
        # Retention, directories, old conversions, while the engine runs.
        self._maintenance = asyncio.create_task(
            self.recordings.retention.run_maintenance(), name="recordings-maintenance"
        )

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.control.close()

    async def _after_resync(self, event: LiveResynced) -> None:
        if event.resyncs == 1:
            await self.control.recover()
