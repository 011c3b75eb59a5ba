"""The pages in Chromium against an engine without Asterisk: logging in, hostile text rendered as text, admin."""

from __future__ import annotations

import json

from callcenter.auth.permissions import Permission, Role
from callcenter.keys import HUB
from crm_bridge.keys import CRM
from tests.browser.conftest import Engine, OpenPage, add_user, log_in, screenshot

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"


async def _no_injected_elements(page: object) -> None:
    # The only <script> is the page's own module; no <img> anywhere (the pages show no pictures).
    assert await page.locator("img").count() == 0  # type: ignore[attr-defined]
    sources = await page.eval_on_selector_all("script", "nodes => nodes.map(n => n.getAttribute('src'))")  # type: ignore[attr-defined]
    assert all(source and source.startswith("/static/") for source in sources), sources


async def test_a_visitor_logs_in_lands_on_the_page_asked_for_and_logs_out(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    agent = await add_user(quiet_engine.app, Role.AGENT, extension="1001", display_name="Ada Agent")
    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/agent", agent)
    assert await page.locator(".topbar .who").inner_text() == "Ada Agent · ext 1001"
    # An agent's header offers only the agent's page.
    assert await page.locator(".topbar nav a").all_inner_texts() == ["Agent"]
    await page.locator("#seat-state").filter(has_text="logged out").wait_for()
    await page.click(".topbar button")
    await page.wait_for_url("**/login")
    # Logged out for real: the API refuses the cookie now, so the page sends the browser back to log in.
    await page.goto(quiet_engine.base + "/qa")
    await page.wait_for_url("**/login?next=%2Fqa")


async def test_a_page_outside_the_users_roles_says_so_and_shows_no_data(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    qa = await add_user(quiet_engine.app, Role.QA)
    watched = await open_page()
    await log_in(watched, quiet_engine.base, "/qa", qa)
    await watched.page.goto(quiet_engine.base + "/supervisor")
    await watched.page.get_by_text("Not for your roles").wait_for()
    assert await watched.page.locator("#board-seats").count() == 0


async def test_hostile_caller_text_in_a_screen_pop_and_on_the_board_is_shown_as_text(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    app = quiet_engine.app
    agent = await add_user(app, Role.AGENT, extension="1001")
    boss = await add_user(app, Role.SUPERVISOR, extension="3001")
    agent_page = await open_page()
    await log_in(agent_page, quiet_engine.base, "/agent", agent)
    await agent_page.page.locator("#live.live").wait_for()
    pop = {
        "linkedid": "1700000000.42",
        "queue": "support",
        "expert_call": True,
        "agent": "PJSIP/1001",
        "caller": {"number": "5550100", "name": HOSTILE, "did": "4000"},
        "customers": [
            {
                "customer": {
                    "id": 7,
                    "name": HOSTILE,
                    "company": SCRIPT,
                    "tier": "vip",
                    "notes": f"{HOSTILE} notes",
                    "address": None,
                    "account_manager": None,
                    "churn_risk": True,
                    "phones": [{"number": "5550100", "normalized": "5550100", "kind": "mobile"}],
                },
                "contacts": [{"id": 1, "name": SCRIPT, "role": HOSTILE, "phone": None, "email": None}],
                "open_records": [
                    {"id": 3, "type": "complaint", "status": "new", "content": HOSTILE, "created_at": "2026-01-01"}
                ],
                "recent_records": [],
            }
        ],
        "unknown_caller": False,
        "new_customer": None,
        "history": [
            {
                "linkedid": "1699999999.1",
                "started_at": "2026-01-01T10:00:00+00:00",
                "caller_number": HOSTILE,
                "outcome": "answered",
                "choice": SCRIPT,
                "agent": "PJSIP/1002",
                "expert": None,
                "talk_time": 61.0,
                "notes": HOSTILE,
            }
        ],
        "ivr": {"flow": "main", "choice": HOSTILE, "language": "en", "path": [{"node": SCRIPT, "digits": "1"}]},
        "waited": 12.5,
        "handoff": {"from_user": HOSTILE, "notes": SCRIPT, "requested_at": "2026-01-01T10:00:00+00:00"},
    }
    assert app[HUB].send("screen_pop", pop, extension="1001") == 1
    page = agent_page.page
    await page.locator("#pop-caller-name").filter(has_text=HOSTILE).wait_for()
    assert await page.locator("#pop-caller-name").inner_text() == HOSTILE
    assert await page.locator(".customer-name").inner_text() == HOSTILE
    assert SCRIPT in await page.locator("#handoff-notes").inner_text()
    assert HOSTILE in await page.locator("#pop-body").inner_text()
    await _no_injected_elements(page)
    # The forms are bound to the popped call.
    assert await page.locator("#record-call").inner_text() == "For call 1700000000.42"
    assert await page.locator("#callback-number").input_value() == "5550100"

    # The knowledge base: found articles are text too.
    await app[CRM].knowledge.add_article(
        f"Router reset {HOSTILE}", f"Hold the button for ten seconds. {SCRIPT}", ["router"]
    )
    await page.fill("#kb-query", "router reset")
    await page.click('#kb-form button[type="submit"]')
    await page.locator("#kb-results .kb-item").filter(has_text="Hold the button").wait_for()
    assert HOSTILE in await page.locator("#kb-results").inner_text()
    await _no_injected_elements(page)

    # An unknown hostile caller gets the create-customer form, with the name as a field's value.
    unknown = {**pop, "linkedid": "1700000000.43", "customers": [], "unknown_caller": True, "handoff": None}
    unknown["new_customer"] = {"number": "5550101", "name": HOSTILE}
    app[HUB].send("screen_pop", unknown, extension="1001")
    await page.locator("#new-customer-form").wait_for()
    assert await page.locator("#new-customer-name").input_value() == HOSTILE
    await _no_injected_elements(page)

    board_page = await open_page()
    await log_in(board_page, quiet_engine.base, "/supervisor", boss)
    await board_page.page.locator("#live.live").wait_for()
    await board_page.page.locator('body[data-board="loaded"]').wait_for()
    board = {
        "version": 99,
        "day": "2026-01-01",
        "timezone": "UTC",
        "service_level_seconds": 20,
        "seats": [
            {
                "interface": "PJSIP/1001",
                "user": HOSTILE,
                "display_name": SCRIPT,
                "teams": [HOSTILE],
                "state": "on_call",
                "since": "2026-01-01T10:00:00+00:00",
                "state_seconds": 5.0,
                "pause_reason": None,
                "queues": ["support"],
                "call": {
                    "linkedid": "1700000000.42",
                    "queue": "support",
                    "caller_number": "5550100",
                    "caller_name": HOSTILE,
                    "did": "4000",
                    "started_at": "2026-01-01T10:00:00+00:00",
                    "answered_at": "2026-01-01T10:00:03+00:00",
                    "duration": 5.0,
                },
                "handled_this_hour": 1,
                "handled_today": 2,
            }
        ],
        "queues": [
            {
                "queue": "support",
                "waiting": 2,
                "longest_wait": 40.0,
                "agents": {"available": 0, "busy": 1, "paused": 0},
                "offered": 10,
                "answered": 7,
                "abandoned": 3,
                "abandon_rate": 0.3,
                "answered_within_sl": 5,
                "service_level": 0.5,
                "avg_wait": 12.0,
                "avg_talk": 90.0,
            }
        ],
        "totals": {"seats": {"on_call": 1}, "waiting": 2, "handled_today": 2},
        "engine": {"ami_connected": True},
    }
    assert app[HUB].send("board", board, permission=Permission.SEATS_READ) == 1
    wall = board_page.page
    card = wall.locator('article[data-interface="PJSIP/1001"]')
    await card.locator(".caller").filter(has_text=HOSTILE).wait_for()
    assert await card.locator(".name").inner_text() == SCRIPT
    await _no_injected_elements(wall)
    # Figures coloured by thresholds: 50% answered in time and 30% abandoned are both bad.
    tile = wall.locator('section[data-queue="support"]')
    assert "bad" in (await tile.locator('[data-figure="service-level"]').get_attribute("class") or "")
    assert "bad" in (await tile.locator('[data-figure="abandon-rate"]').get_attribute("class") or "")
    # The call's duration ticks in the browser from its answer time.
    timer = card.locator(".call-duration")
    first = await timer.inner_text()
    await wall.wait_for_function(
        "([selector, before]) => document.querySelector(selector).textContent !== before",
        arg=['article[data-interface="PJSIP/1001"] .call-duration', first],
    )


async def test_the_admin_page_lists_users_filters_the_audit_log_and_draws_the_flows(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    app = quiet_engine.app
    admin = await add_user(app, Role.ADMIN, display_name="Ada Admin")
    await add_user(app, Role.AGENT, extension="1001", display_name=HOSTILE, teams=["blue"])
    await add_user(app, Role.SUPERVISOR, extension="3001", lead_of=["blue"])
    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/admin", admin)
    users = page.locator("#users-table tbody tr")
    await users.first.wait_for()
    assert await users.count() == 3
    assert HOSTILE in await page.locator("#users-table").inner_text()
    assert "blue" in await page.locator("#teams").inner_text()
    await _no_injected_elements(page)

    await page.click("#tab-audit")
    await page.locator("#audit-table").wait_for()
    await page.fill('#audit-form input[name="actor"]', admin)
    await page.fill('#audit-form input[name="action"]', "login")
    await page.click('#audit-form button[type="submit"]')
    await page.locator("#audit-info").filter(has_text="of 1").wait_for()
    row = await page.locator("#audit-table tbody tr").all_inner_texts()
    assert len(row) == 1
    assert admin in row[0]
    assert "login" in row[0]

    await page.click("#tab-flows")
    await page.locator("#flows-table").wait_for()
    entry = quiet_engine.config.flows.entry
    assert "valid" in await page.locator(f'#flows-table tr[data-flow="{entry}"]').inner_text()
    diagram = page.locator(f'#flow-diagram[data-flow="{entry}"] svg')
    await diagram.wait_for()
    assert await diagram.locator("g[data-node]").count() >= 3
    text = json.dumps(await page.locator("#flow-text").text_content())
    assert "flowchart" in text
    await screenshot(watched, "admin")
