"""Wiring of the recordings package, for the composition root: the service and its housekeeping task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from callcenter.config import Config
from callcenter.db import Database
from callcenter.keys import RECORDINGS
from recordings.services import Auditor, RecordingService
from recordings.storage import RecordingStore

log = logging.getLogger("callcenter.recordings")

TRANSCODE_DIR = "transcode"


def build_recordings(config: Config, database: Database, auditor: Auditor) -> RecordingService:
    return RecordingService(
        database,
        config.recordings,
        RecordingStore(config.recordings_dir),
        transcode_dir=config.data_dir / TRANSCODE_DIR,
        auditor=auditor,
    )


async def recordings_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs the housekeeping (retention, directories, old conversions) while the engine runs."""
    task = asyncio.create_task(app[RECORDINGS].run_maintenance(), name="recordings-maintenance")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
