"""The demo's wallboard: its supervisor listens in (issue 16, item 7).

The demo's users and teams (callcenter_devtools.demo.seed_demo_users) in a database of this test's own, the
shared sandbox and SIPp phones of the integration tier: the demo's agent sits at seat 1001 (logged in as the demo
logs its seats in), a caller is queued to it, and the demo's supervisor, logged in on the wallboard with the
demo's password, clicks Listen on the agent's card. Before the supervisor led the agents' team, that answered
403; now the supervisor's own phone (3001) rings with ChanSpy on the agent's channel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from callcenter import dialplan
from callcenter.bus import Bus
from callcenter.config import Config, DatabaseConfig
from callcenter.db import Database, migrate
from callcenter.events import ChanSpyChanged
from callcenter.keys import AUTH, LIVE
from callcenter_devtools.demo import DEMO_USERS, seed_demo_users
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from seats.keys import SEATS
from seats.services import QueueLogin
from tests.browser.conftest import OpenPage, log_in
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, running_engine, wait_for
from tests.integration.test_seats_and_handoff import queue_route

BASE = f"http://127.0.0.1:{TEST_PORTS['web']}"


def _demo_user(username: str) -> tuple[str, str]:
    user = next(user for user in DEMO_USERS if user.username == username)
    return user.username, user.password


async def test_the_demo_supervisor_clicks_listen_and_their_phone_rings_with_the_spy_call(
    config: Config, sandbox: Sandbox, phones: Phones, open_page: OpenPage, tmp_path: Path
) -> None:
    # The demo's users in a database of their own: the session's database keeps the other tests' users.
    demo = config.model_copy(
        update={"database": DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}")}
    )
    await migrate(demo.database_url)
    database = Database(demo.database_url)
    await database.open()
    try:
        await seed_demo_users(database, demo)
    finally:
        await database.close()

    bus = Bus()
    spying: list[ChanSpyChanged] = []
    bus.subscribe(ChanSpyChanged, lambda event: spying.append(event) if event.name == "ChanSpyStart" else None)
    general = demo.queues.general
    async with running_engine(demo, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        agent_name, agent_password = _demo_user("agent1")
        _token, agent = await app[AUTH].login(agent_name, agent_password)
        await app[SEATS].login(agent, [QueueLogin(general)])
        try:
            boss_name, boss_password = _demo_user("supervisor")
            wall = await open_page()
            await log_in(wall, BASE, "/supervisor", boss_name, boss_password)
            await wall.page.locator("#live.live").wait_for()

            agent_phone = phones.desk_phone("demo-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
            boss_phone = phones.desk_phone("demo-3001", local_ip=PHONE_IP, local_port=AGENT_PORTS["3001"])
            caller = phones.call(
                "demo-caller",
                demo.sip.dids[0],
                CallerScript(caller_number="5550101", caller_name="Chen Jie", talk_ms=20000, speech=True),
                local_ip=PSTN,
                local_port=5292,
            )
            card = wall.page.locator('article[data-interface="PJSIP/1001"][data-state="on_call"]')
            await card.wait_for(timeout=30000)
            await card.locator('button[data-spy="listen"]').click()
            # The spy call rang the supervisor's phone, which answered, and ChanSpy runs on the agent's channel.
            assert await wait_for(lambda: bool(spying), timeout=15), boss_phone.output()[-1500:]
            headers = spying[0].headers
            assert headers["SpyerChannel"].startswith("PJSIP/3001-")
            assert headers["SpyeeChannel"].startswith("PJSIP/1001-")
            session = wall.page.locator("#spy-sessions [data-session]")
            await session.filter(has_text="active").wait_for(timeout=10000)
            await session.locator("button.danger").click()
            await wall.page.locator("#spy-panel.hidden").wait_for(state="attached")
            assert await asyncio.to_thread(boss_phone.wait, 20) == 0, boss_phone.output()[-1500:]
            assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
            assert await asyncio.to_thread(agent_phone.wait, 15) == 0, agent_phone.output()[-1500:]
        finally:
            await app[SEATS].logout(agent)
