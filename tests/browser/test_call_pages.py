"""The pages during a real call: the sandboxed Asterisk, SIPp phones, the engine, and Chromium.

A SIPp caller whose caller ID is an HTML payload dials the hotline; the IVR is replaced by a route that queues
every caller at once (as in tests/integration/test_seats_and_handoff.py). The agent, logged in to the queue from
the agent desktop, sees the customer's file pop before the phone (a SIPp desk phone ringing for 2 s) answers,
and files a service record for the call; the supervisor who leads the agent's team sees the call on the
wallboard and clicks Listen, which rings their own SIPp desk phone with ChanSpy on the agent's channel; after the
call, QA finds its full recording and the player loads the audio and draws the waveform. The caller ID shows as
literal text on every page, with no element injected.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from callcenter import dialplan
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.events import CallAnswered, ChanSpyChanged
from callcenter.keys import LIVE
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from crm_bridge.keys import CRM
from crm_bridge.schemas import CustomerIn, PhoneIn, ServiceRecordQuery
from recordings.keys import RECORDINGS
from recordings.schemas import SearchQuery
from tests.browser.conftest import OpenPage, Watched, add_user, log_in, screenshot
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, running_engine, wait_for
from tests.integration.test_seats_and_handoff import queue_route

HOSTILE = "<img src=x onerror=alert(1)>"
BASE = f"http://127.0.0.1:{TEST_PORTS['web']}"


async def _no_injected_elements(watched: Watched) -> None:
    page = watched.page
    assert await page.locator("img").count() == 0
    sources = await page.eval_on_selector_all("script", "nodes => nodes.map(n => n.getAttribute('src'))")
    assert all(source and source.startswith("/static/") for source in sources), sources


async def _complete_recording(app: Any, linkedid: str) -> Any:
    for _ in range(150):
        page = await app[RECORDINGS].index.search(SearchQuery(linkedid=linkedid))
        done = [item for item in page.items if item.status == "complete" and item.kind == "full"]
        if done:
            return done[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no complete recording of {linkedid}")


async def test_a_call_pops_on_the_agent_desktop_shows_on_the_wallboard_rings_the_listener_and_plays_in_qa(
    config: Config, sandbox: Sandbox, phones: Phones, open_page: OpenPage
) -> None:
    bus = Bus()
    answered: list[float] = []
    spying: list[ChanSpyChanged] = []
    bus.subscribe(CallAnswered, lambda _event: answered.append(time.monotonic()))
    bus.subscribe(ChanSpyChanged, lambda event: spying.append(event) if event.name == "ChanSpyStart" else None)
    general = config.queues.general
    team = f"team-{secrets.token_hex(3)}"
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        number = f"1390000{secrets.randbelow(10000):04d}"
        await app[CRM].customers.create(
            CustomerIn(
                name="Mei Chen",
                company="Ocean Freight",
                tier="vip",
                notes=f"prefers mornings {HOSTILE}",
                phones=[PhoneIn(number=number)],
            ),
            actor="test",
        )
        agent = await add_user(app, Role.AGENT, extension="1001", display_name="Ada Agent", teams=[team])
        boss = await add_user(app, Role.SUPERVISOR, extension="3001", display_name="Sam Lead", lead_of=[team])
        qa = await add_user(app, Role.QA, display_name="Quinn QA")

        desk = await open_page()
        await log_in(desk, BASE, "/agent", agent)
        await desk.page.locator("#live.live").wait_for()
        await desk.page.click("#seat-login-button")
        await desk.page.locator("#seat-state").filter(has_text="available").wait_for()
        # A pause with a reason from the config's list, and back.
        await desk.page.select_option("#pause-reason", "lunch")
        await desk.page.click("#pause-button")
        await desk.page.locator("#seat-state").filter(has_text="paused (lunch)").wait_for()
        await desk.page.click("#unpause-button")
        await desk.page.locator("#seat-state").filter(has_text="available").wait_for()

        wall = await open_page()
        await log_in(wall, BASE, "/supervisor", boss)
        await wall.page.locator("#live.live").wait_for()

        agent_phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"], ring_ms=2000)
        boss_phone = phones.desk_phone("super-3001", local_ip=PHONE_IP, local_port=AGENT_PORTS["3001"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number=number, caller_name=HOSTILE, talk_ms=25000, speech=True),
            local_ip=PSTN,
            local_port=5290,
        )
        try:
            # The agent desktop: the customer's name before the phone answers, the caller ID as text.
            await desk.page.locator(".customer-name").filter(has_text="Mei Chen").wait_for(timeout=30000)
            popped_at = time.monotonic()
            assert await wait_for(lambda: bool(answered), timeout=15), caller.output()[-1500:]
            assert popped_at < answered[0]
            assert await desk.page.locator("#pop-caller-name").inner_text() == HOSTILE
            assert await desk.page.locator("#pop-caller-number").inner_text() == number
            assert HOSTILE in await desk.page.locator(".customer-card").inner_text()
            await _no_injected_elements(desk)
            linkedid = await desk.page.locator("#pop-body").get_attribute("data-linkedid")
            assert linkedid
            await desk.page.locator("#seat-state").filter(has_text="on call").wait_for()

            # The service record form is bound to this call.
            await desk.page.select_option("#record-type", "product_guide")
            await desk.page.fill("#record-content", "asked about the F-200 freight plan")
            await desk.page.click("#record-button")
            await desk.page.locator("#notice.ok").filter(has_text="Service record").wait_for()
            # The time on the call counts up in the browser.
            await desk.page.wait_for_function(
                "() => !['—', '0:00', '0:01'].includes(document.getElementById('seat-since').textContent)"
            )
            await desk.page.evaluate("document.querySelectorAll('.agent-grid > *').forEach(n => { n.scrollTop = 0; })")
            await screenshot(desk, "agent")

            # The wallboard: the agent on the call, the caller ID as text; Listen rings the supervisor's phone.
            card = wall.page.locator('article[data-interface="PJSIP/1001"][data-state="on_call"]')
            await card.wait_for(timeout=15000)
            assert await card.locator(".caller").inner_text() == HOSTILE
            assert await card.locator(".name").inner_text() == "Ada Agent"
            await _no_injected_elements(wall)
            await card.locator('button[data-spy="listen"]').click()
            assert await wait_for(lambda: bool(spying), timeout=15), boss_phone.output()[-1500:]
            headers = spying[0].headers
            assert headers["SpyeeChannel"].startswith("PJSIP/1001-")
            assert headers["SpyerChannel"].startswith("PJSIP/3001-")
            session = wall.page.locator("#spy-sessions [data-session]")
            await session.filter(has_text="active").wait_for(timeout=10000)
            await screenshot(wall, "supervisor")
            await session.locator("button.danger").click()
            # Stopped: the session is gone from the page and the supervisor's phone is hung up.
            await wall.page.locator("#spy-panel.hidden").wait_for(state="attached")
            assert await asyncio.to_thread(boss_phone.wait, 20) == 0, boss_phone.output()[-1500:]

            assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
            assert await asyncio.to_thread(agent_phone.wait, 15) == 0, agent_phone.output()[-1500:]
        finally:
            await desk.page.click("#seat-logout-button")
            await desk.page.locator("#seat-state").filter(has_text="logged out").wait_for()

        records = await app[CRM].records.find(ServiceRecordQuery(linkedid=linkedid))
        assert [(record.type, record.content, record.created_by) for record in records] == [
            ("product_guide", "asked about the F-200 freight plan", agent)
        ]

        # QA: the call's full recording, found by its call id, plays and has its waveform.
        recording = await _complete_recording(app, linkedid)
        desk_qa = await open_page()
        await log_in(desk_qa, BASE, "/qa", qa)
        page = desk_qa.page
        await page.fill('#search-form input[name="linkedid"]', linkedid)
        await page.click("#search-button")
        row = page.locator(f'#results-table tr[data-recording="{recording.id}"]')
        await row.wait_for()
        assert "complete" in await row.inner_text()
        assert number in await row.inner_text()
        await row.click()
        await page.wait_for_function(
            "() => { const a = document.getElementById('player'); return a.readyState >= 1 && a.duration > 1; }"
        )
        duration = await page.evaluate("document.getElementById('player').duration")
        assert abs(duration - (recording.duration or 0)) < 1.5
        await page.locator("#waveform[data-points]").wait_for()
        await page.evaluate("document.getElementById('player').play()")
        await page.wait_for_function("() => document.getElementById('player').currentTime > 0.5")
        await page.evaluate("document.getElementById('player').pause()")
        await page.fill("#edit-description", "F-200 question, good greeting")
        await page.click('#edit-form button[type="submit"]')
        await page.locator("#notice.ok").filter(has_text="Description saved").wait_for()
        await screenshot(desk_qa, "qa")
        saved = await app[RECORDINGS].index.get(recording.id)
        assert saved.description == "F-200 question, good greeting"
