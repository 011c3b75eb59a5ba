"""Shutdown: event subscribers still running finish on the database before the engine closes it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web
from sqlalchemy import text

from callcenter.app import _database_ctx
from callcenter.bus import Bus
from callcenter.config import load_config
from callcenter.db import Database
from callcenter.events import LiveResynced
from callcenter.keys import BUS, CONFIG, DATABASE


async def test_the_database_closes_after_the_subscribers_still_running(tmp_path: Path) -> None:
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    app = web.Application()
    database = Database(config.database_url)
    bus = Bus()
    app[CONFIG], app[DATABASE], app[BUS] = config, database, bus
    answers: list[int] = []
    started = asyncio.Event()

    async def slow_subscriber(_event: LiveResynced) -> None:
        started.set()
        await asyncio.sleep(0.3)
        async with database.session() as session:
            answers.append(int(await session.scalar(text("SELECT 41 + 1")) or 0))

    bus.subscribe(LiveResynced, slow_subscriber)
    context = _database_ctx(app)
    await anext(context)
    bus.publish(LiveResynced(reason="late", resyncs=1))
    await started.wait()
    # Shutdown begins while the subscriber waits; it still gets its answer from an open database.
    with contextlib.suppress(StopAsyncIteration):
        await anext(context)
    assert answers == [42]
