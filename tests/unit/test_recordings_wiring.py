"""The composition root wires the recordings service, its routes and its housekeeping task."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from callcenter.app import build_app
from callcenter.config import load_config
from callcenter.keys import RECORDINGS
from recordings.plugin import TRANSCODE_DIR, recordings_ctx
from recordings.services import RecordingService


def test_the_engine_serves_recordings_and_runs_their_housekeeping(tmp_path: Path) -> None:
    config = load_config(
        environ={
            "CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"),
            "CALLCENTER_PATHS_RECORDINGS_DIR": str(tmp_path / "recordings"),
            "CALLCENTER_RECORDINGS_RETENTION_FULL_DAYS": "90",
        }
    )
    app = build_app(config)
    service = app[RECORDINGS]
    assert isinstance(service, RecordingService)
    assert service.store.root == tmp_path / "recordings"
    assert service.config.retention_full_days == 90
    assert service._transcode_dir == tmp_path / "data" / TRANSCODE_DIR
    assert recordings_ctx in app.cleanup_ctx
    paths = {route.resource.canonical for route in app.router.routes() if route.resource is not None}
    assert {"/api/v1/recordings", "/api/v1/recordings/{recording_id}/audio", "/api/v1/recordings/erase"} <= paths


async def test_the_housekeeping_task_starts_and_stops_with_the_engine() -> None:
    events: list[str] = []

    class Service:
        async def run_maintenance(self) -> None:
            events.append("running")
            try:
                await asyncio.Event().wait()
            finally:
                events.append("stopped")

    app = web.Application()
    app[RECORDINGS] = Service()  # type: ignore[assignment]
    context = recordings_ctx(app)
    await anext(context)
    await asyncio.sleep(0)
    assert events == ["running"]
    with pytest.raises(StopAsyncIteration):
        await anext(context)
    assert events == ["running", "stopped"]
