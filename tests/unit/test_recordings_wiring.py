"""The composition root wires the recordings plugin: its service, its routes and its housekeeping task."""

from __future__ import annotations

import asyncio
from pathlib import Path

from callcenter.app import PLUGINS, build_app
from callcenter.config import Config, load_config
from recordings.keys import RECORDINGS
from recordings.plugin import TRANSCODE_DIR, RecordingsPlugin
from recordings.services import RecordingService


def _config(tmp_path: Path) -> Config:
    return load_config(
        environ={
            "CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"),
            "CALLCENTER_PATHS_RECORDINGS_DIR": str(tmp_path / "recordings"),
            "CALLCENTER_RECORDINGS_RETENTION_FULL_DAYS": "90",
        }
    )


def test_the_engine_serves_recordings(tmp_path: Path) -> None:
    app = build_app(_config(tmp_path))
    service = app[RECORDINGS]
    assert isinstance(service, RecordingService)
    assert service.store.root == tmp_path / "recordings"
    assert service.config.retention_full_days == 90
    assert service.playback.transcode_dir == tmp_path / "data" / TRANSCODE_DIR
    assert any(isinstance(plugin, RecordingsPlugin) and plugin.recordings is service for plugin in app[PLUGINS])
    paths = {route.resource.canonical for route in app.router.routes() if route.resource is not None}
    assert {"/api/v1/recordings", "/api/v1/recordings/{recording_id}/audio", "/api/v1/recordings/erase"} <= paths


async def test_the_housekeeping_task_starts_and_stops_with_the_plugin(tmp_path: Path) -> None:
    events: list[str] = []

    class Retention:
        async def run_maintenance(self) -> None:
            events.append("running")
            try:
                await asyncio.Event().wait()
            finally:
                events.append("stopped")

    class Service:
        retention = Retention()

    app = build_app(_config(tmp_path))
    plugin = next(plugin for plugin in app[PLUGINS] if isinstance(plugin, RecordingsPlugin))
    plugin.recordings = Service()  # type: ignore[assignment]
    await plugin.start()
    await asyncio.sleep(0)
    assert events == ["running"]
    await plugin.stop()
    assert events == ["running", "stopped"]
