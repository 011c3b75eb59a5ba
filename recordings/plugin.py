"""The recordings as a plugin (:class:`callcenter.plugin.Plugin`): the index of every recording, on-demand control
(start, stop, PCI pause), playback, retention and the housekeeping task.

After the first resync of the live model the recording control finds the recordings that were running when the
engine stopped and indexes the full recordings the dialplan made while it was away; every few minutes it looks
again (recordings.full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from callcenter.auth.audit import Auditor
from callcenter.auth.directory import UserDirectory
from callcenter.config import Config
from callcenter.db import Database, DatabaseError
from callcenter.events import LiveResynced
from callcenter.plugin import Core
from calls.ports import CallRecords
from crm_bridge.ports import EvaluationItemCatalog, RepairVisits
from outlets.ports import OutletQuality
from recordings.control import RecordingControl, RecordingRules
from recordings.control_http import recording_control_routes
from recordings.evaluation_http import evaluation_routes
from recordings.evaluations import CallEvaluations
from recordings.full import FullRecordings
from recordings.http import recordings_routes
from recordings.keys import EVALUATIONS, OUTLET_QUALITY, RECORDING_CONTROL, RECORDINGS
from recordings.outlet_quality import OutletQualitySummary
from recordings.services import RecordingService
from recordings.storage import RecordingStore
from seats.ports import SeatDirectory

log = logging.getLogger("callcenter.recordings")

TRANSCODE_DIR = "transcode"
# Seconds between sweeps for full recordings nobody heard of (the dialplan's UserEvent missed, the index down).
SWEEP_SECONDS = 300.0

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

    def __init__(
        self,
        core: Core,
        *,
        seats: SeatDirectory,
        calls: CallRecords | None = None,
        tier: TierLookup | None = None,
        items: EvaluationItemCatalog | None = None,
        users: UserDirectory | None = None,
        outlets: OutletQuality | None = None,
        repairs: RepairVisits | None = None,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        """The ports of the other packages, given by the composition root: who sits at which seat (``seats``), the
        records of finished calls (``calls``: what a full recording found on disk is indexed with), and the CRM's
        best tier of a caller number for the recording rules (``tier``; none without a CRM); the CRM's evaluation items
        (``items``), the users' names (``users``), the outlets' evaluations and work orders (``outlets``) and the repair
        visits' results (``repairs``) for the call evaluations and the quality summaries, served only with all four."""
        config, live = core.config, core.live
        self._bus = core.bus
        self.recordings = build_recordings(config, core.database, core.auth)
        self.control = RecordingControl(
            self.recordings,
            seats,
            core.bus,
            lambda: live.connection,
            lambda: live.model,
            full=FullRecordings(self.recordings, seats, calls, lambda: live.model),
            rules=RecordingRules(config.recordings.record_tiers, config.recordings.record_queues),
            tier=tier,
        )
        self.evaluations: CallEvaluations | None = None
        self.outlet_quality: OutletQualitySummary | None = None
        if items is not None and users is not None and outlets is not None and repairs is not None:
            self.evaluations = CallEvaluations(core.database, self.recordings.index, items, users)
            self.outlet_quality = OutletQualitySummary(outlets, repairs, items)
        self._sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def install(self, app: web.Application) -> None:
        app[RECORDINGS] = self.recordings
        app[RECORDING_CONTROL] = self.control
        app.add_routes(recordings_routes)
        app.add_routes(recording_control_routes)
        if self.evaluations is not None and self.outlet_quality is not None:
            app[EVALUATIONS] = self.evaluations
            app[OUTLET_QUALITY] = self.outlet_quality
            app.add_routes(evaluation_routes)

    async def start(self) -> None:
        self.control.start()
        self._unsubscribe = self._bus.subscribe(LiveResynced, self._after_resync)
        # Retention, directories, old conversions, while the engine runs.
        self._maintenance = asyncio.create_task(
            self.recordings.retention.run_maintenance(), name="recordings-maintenance"
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="recordings-sweep")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.control.sweep()
            except DatabaseError as exc:
                log.warning("the sweep for full recordings waits for the database: %s", exc)
            except Exception:
                log.exception("the sweep for full recordings failed; trying again at the next one")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in (self._maintenance, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.control.close()

    async def _after_resync(self, event: LiveResynced) -> None:
        if event.resyncs == 1:
            try:
                await self.control.recover()
            except DatabaseError as exc:
                log.warning("recordings left by the last run wait for the database: %s", exc)
