"""What the integration tests share: the test ports and addresses, the engine in a test's loop, waiting.

The fixtures of the real parts (the sandbox, its config, SIPp phones) are in tests/real_parts.py, registered by
tests/conftest.py, so that tests/browser and tests/integration share one sandbox per session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from callcenter.agi.server import Handler
from callcenter.app import build_app
from callcenter.auth.services import UserInfo
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import migrate
from callcenter.keys import AUTH

PSTN = "127.0.0.2"
PHONE_IP = "127.0.0.3"
AGENT_PORTS = {"1001": 5181, "1002": 5182, "2001": 5191, "3001": 5195}
TEST_PORTS = {"sip": 5260, "ami": 5238, "agi": 4673, "web": 8281}


async def add_user(
    app: web.Application, username: str, password: str, *, extension: str | None = None, **more: Any
) -> UserInfo:
    """A user made for one test. The tier's database lives for the whole session and an extension is one active
    user's: whoever an earlier test gave this extension is disabled first (a test that failed half-way included)."""
    auth = app[AUTH]
    if extension:
        for user in await auth.list_users():
            if user.is_active and user.extension == extension:
                await auth.update_user(user.username, is_active=False)
    return await auth.create_user(username, password, extension=extension, **more)


@contextlib.asynccontextmanager
async def running_engine(
    config: Config, bus: Bus, agi_routes: Mapping[str, Handler] | None = None, **build: Any
) -> AsyncIterator[web.Application]:
    """The whole engine in this test's event loop, stopped again however the test ends.

    ``build`` goes to ``build_app`` (``clock=`` sets the IVR's time of day, ``flow_ports=`` its CRM and storage).
    """
    await migrate(config.database_url)
    app = build_app(config, bus=bus, agi_routes=agi_routes, **build)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.web.host, config.web.port)
    await site.start()
    try:
        yield app
    finally:
        await runner.cleanup()


async def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False
