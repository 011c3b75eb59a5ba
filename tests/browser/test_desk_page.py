"""The service desk page (/desk) in Chromium against an engine without Asterisk: a back-office user works a record
through its lifecycle, dispatches a repair booking to an outlet and settles its fee, records a visit's result and
sees reminders arrive; an agent gets no desk data; hostile customer text shows as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from callcenter.auth.permissions import Permission, Role
from callcenter.keys import DATABASE, HUB
from crm_bridge.keys import CRM, EVALUATION_ITEMS
from crm_bridge.models import Product
from crm_bridge.schemas import CustomerIn, ServiceRecordIn
from crm_bridge.visit_schemas import EvaluationItemIn
from outlets.keys import OUTLETS
from outlets.schemas import OutletIn
from recordings.models import Recording
from tests.browser.conftest import Engine, OpenPage, Watched, add_user, log_in, screenshot

HOSTILE = "<img src=x onerror=alert(1)>"


async def _no_injected_elements(page: Any) -> None:
    assert await page.locator("img").count() == 0
    sources = await page.eval_on_selector_all("script", "nodes => nodes.map(n => n.getAttribute('src'))")
    assert all(source and source.startswith("/static/") for source in sources), sources


async def _record(engine: Engine, *, name: str = HOSTILE, kind: str = "complaint", **more: Any) -> tuple[int, int]:
    crm = engine.app[CRM]
    file = await crm.customers.create(
        CustomerIn.model_validate(
            {"name": name, "region": more.pop("region", None), "phones": [{"number": "13800138000"}]}
        )
    )
    body = {"type": kind, "content": f"the fridge hums {HOSTILE}", "customer_id": file.customer.id, **more}
    created, _ = await crm.records.create(ServiceRecordIn.model_validate(body), actor="agent-on-the-phone")
    return file.customer.id, created.id


def _expect_refusals(watched: Watched, status: int) -> None:
    # Chromium logs every refused request on the console; the refusals a test provokes on purpose are not faults.
    expected = f"status of {status}"
    watched.errors[:] = [error for error in watched.errors if expected not in error]


async def _open_record(watched: Watched, record_id: int) -> None:
    page = watched.page
    await page.locator('body[data-queue="loaded"]').wait_for()
    await page.click(f'#queue-table tr[data-record="{record_id}"]')
    await page.locator(f'#record-view[data-record="{record_id}"]').wait_for()


async def _status_is(watched: Watched, record_id: int, status: str) -> None:
    await watched.page.locator(f'#record-fields[data-record="{record_id}"][data-status="{status}"]').wait_for()


async def test_a_back_office_user_works_a_record_through_its_lifecycle(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    office = await add_user(quiet_engine.app, Role.BACKOFFICE, display_name="Bo Office")
    _, record_id = await _record(quiet_engine)
    yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    _, late = await _record(
        quiet_engine, name="Han Meimei", kind="repair_booking", follow_up=yesterday, caller_name="Han Meimei"
    )
    await _record(quiet_engine, name="Li Lei", kind="suggestion", caller_name="Li Lei")
    watched = await open_page()
    page = watched.page
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    await log_in(watched, quiet_engine.base, "/desk", office)
    await page.locator('body[data-queue="loaded"]').wait_for()
    assert await page.locator("#queue-table tbody tr").count() == 3
    # The names come with the list: no customer file is asked for until a record is opened.
    assert not [url for url in asked if "/api/v1/customers" in url]
    # The filters are the server's: only the record past its follow-up date is overdue, of the repair bookings.
    await page.select_option('#queue-form select[name="due"]', "overdue")
    await page.select_option('#queue-form select[name="type"]', "repair_booking")
    await page.click("#queue-button")
    await page.locator("#queue-table tbody tr").nth(1).wait_for(state="detached")
    assert await page.locator("#queue-table tbody tr").get_attribute("data-record") == str(late)
    listed = parse_qs(urlsplit([url for url in asked if "/api/v1/service-records?" in url][-1]).query)
    assert listed["due"] == ["overdue"]
    assert listed["type"] == ["repair_booking"]
    assert listed["status"] == ["new,assigned,in_progress"]
    await page.select_option('#queue-form select[name="due"]', "")
    await page.select_option('#queue-form select[name="type"]', "")
    await page.click("#queue-button")
    await page.locator("#queue-table tbody tr").nth(2).wait_for()
    # Oldest first is the server's order: the page is asked for again.
    await page.click('#queue-table th[data-sort="created_at"]')
    await page.locator(f'#queue-table tbody tr:first-child[data-record="{record_id}"]').wait_for()
    last = [url for url in asked if "/api/v1/service-records?" in url][-1]
    assert parse_qs(urlsplit(last).query)["sort"] == ["created_at"]
    # Sorted by a column's header, then the other way.
    await page.click('#queue-table th[data-sort="id"]')
    assert await page.locator("#queue-table tbody tr").first.get_attribute("data-record") == str(record_id)
    await page.click('#queue-table th[data-sort="id"]')
    assert await page.locator("#queue-table tbody tr").first.get_attribute("data-record") != str(record_id)
    await _open_record(watched, record_id)
    # The customer's hostile name is text, in the queue and in the file's summary.
    assert await page.locator("#record-customer-name").inner_text() == HOSTILE
    assert HOSTILE in await page.locator(f'#queue-table tr[data-record="{record_id}"]').inner_text()
    await _no_injected_elements(page)

    # A refusal is shown with the API's message: feedback needs the customer's words (after it is resolved).
    await page.select_option("#action-assign select", label=f"Bo Office ({office})")
    await page.click("#action-assign button")
    await _status_is(watched, record_id, "assigned")
    await page.click("#action-start button")
    await _status_is(watched, record_id, "in_progress")
    await page.locator(f'#queue-table tr[data-record="{record_id}"] [data-status="in_progress"]').wait_for()
    await screenshot(watched, "desk")
    await page.fill('#action-resolve input[name="outcome"]', "replaced the fan")
    await page.click("#action-resolve button")
    await _status_is(watched, record_id, "resolved")
    await page.click("#action-feedback button")
    await page.locator("#record-error").filter(has_text="feedback").wait_for()
    _expect_refusals(watched, 400)
    await page.fill('#action-feedback input[name="feedback"]', f"quiet now {HOSTILE}")
    await page.click("#action-feedback button")
    await _status_is(watched, record_id, "feedback_recorded")
    await page.fill("#action-note", "all done")
    await page.click("#action-archive button")
    await _status_is(watched, record_id, "archived")

    history = await page.locator("#record-history tbody tr").all_inner_texts()
    actions = [await row.get_attribute("data-action") for row in await page.locator("#record-history tbody tr").all()]
    assert actions[-5:] == ["assign", "start", "resolve", "feedback", "archive"], actions
    assert all(office in row for row in history[-5:]), history
    assert "replaced the fan" in history[-3]
    assert "all done" in history[-1]
    assert HOSTILE in await page.locator("#record-fields").inner_text()
    await _no_injected_elements(page)
    # Archived: it leaves the open queue.
    await page.locator(f'#queue-table tr[data-record="{record_id}"]').wait_for(state="detached")


async def test_an_agent_gets_no_desk_data(quiet_engine: Engine, open_page: OpenPage) -> None:
    agent = await add_user(quiet_engine.app, Role.AGENT, extension="1001")
    await _record(quiet_engine)
    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/agent", agent)
    # No link to the desk in an agent's header, and the page itself says it is not theirs and loads nothing.
    assert "Service desk" not in await page.locator(".topbar nav").inner_text()
    await page.goto(quiet_engine.base + "/desk")
    await page.get_by_text("Not for your roles").wait_for()
    assert await page.locator("#queue-table").count() == 0
    assert await page.locator("#tabs").count() == 0
    for path in ("/api/v1/desk/overdue", "/api/v1/visits", "/api/v1/work-orders", "/api/v1/outlets"):
        response = await page.request.get(quiet_engine.base + path)
        assert response.status == 403, path
        assert (await response.json())["error"]["id"] == "forbidden"


async def _product(engine: Engine, code: str, category: str) -> int:
    async with engine.app[DATABASE].session() as session:
        product = Product(
            code=code, name=f"{category} {code}", category=category, price=Decimal("100"), availability="in_stock"
        )
        session.add(product)
        await session.flush()
        return product.id


async def test_a_repair_booking_is_dispatched_its_feedback_registered_and_its_fee_approved(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    app = quiet_engine.app
    office = await add_user(app, Role.BACKOFFICE, display_name="Bo Office")
    product = await _product(quiet_engine, "AC-1", "air_conditioner")
    # Booked on the phone without the product: the back office completes it before dispatching.
    _, record_id = await _record(quiet_engine, kind="repair_booking", region="Haidian")
    # A second outlet of the region, made through the outlets' own service.
    other = await app[OUTLETS].create_outlet(
        OutletIn(name=f"Zeta repairs {HOSTILE}", region="Haidian", categories=["air_conditioner"]), actor="setup"
    )
    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/desk", office)

    # An outlet created on the page.
    await page.click("#tab-outlets")
    await page.locator('body[data-outlets="loaded"]').wait_for()
    await page.fill('#outlet-form input[name="name"]', "Alpha repairs")
    await page.fill('#outlet-form input[name="region"]', "Haidian")
    await page.fill('#outlet-form input[name="categories"]', "air_conditioner, fridge")
    await page.fill('#outlet-form input[name="phone"]', "010-1234")
    await page.click("#outlet-save")
    await page.locator("#outlets-table tr", has_text="Alpha repairs").wait_for()
    assert HOSTILE in await page.locator("#outlets-table").inner_text()

    # From the record to the dispatch form: the rule's choice is previewed (the first by name of the two).
    await page.click("#tab-records")
    await _open_record(watched, record_id)
    await page.fill('#action-complete input[name="product_id"]', str(product))
    await page.fill('#action-complete input[name="fault_type"]', "no_power")
    await page.click("#action-complete button")
    await page.locator('#record-history tr[data-action="update"]').wait_for()
    assert "no_power" in await page.locator("#record-fields").inner_text()
    await page.click("#record-dispatch")
    await page.locator("#dispatch-chosen").filter(has_text="Alpha repairs").wait_for()
    # Another outlet without a reason is refused with the API's message; with one it is dispatched there.
    await page.select_option("#dispatch-outlet", value=str(other.id))
    await page.click("#dispatch-button")
    await page.locator("#dispatch-error").filter(has_text="say why").wait_for()
    _expect_refusals(watched, 400)
    await page.fill("#dispatch-reason", "the customer asked for them")
    await page.click("#dispatch-button")
    order = page.locator('#order-fields[data-status="dispatched"]')
    await order.wait_for()
    assert "override: the customer asked for them" in await order.inner_text()
    assert HOSTILE in await order.inner_text()

    await page.fill('#feedback-form input[name="parts_used"]', "fan motor")
    await page.fill('#feedback-form input[name="fee"]', "120.50")
    await page.click('#feedback-form button[type="submit"]')
    done = page.locator('#order-fields[data-status="done"]')
    await done.wait_for()
    assert "120.50 · pending" in await done.inner_text()

    await page.click("#tab-fees")
    await page.locator('body[data-fees="loaded"]').wait_for()
    fee = page.locator('#fees-table tr[data-status="pending"]', has_text="120.50")
    await fee.locator("button.approve").click()
    await page.locator("#notice").filter(has_text="approved").wait_for()
    await page.select_option('#fees-form select[name="status"]', "approved")
    await page.click('#fees-form button[type="submit"]')
    await page.locator('#fees-table tr[data-status="approved"]', has_text="120.50").wait_for()
    assert office in await page.locator("#fees-table").inner_text()

    # The booking was resolved by the feedback, and its history names the outlet's work.
    await page.click("#tab-records")
    await page.select_option('#queue-form select[name="status"]', "resolved")
    await page.click("#queue-button")
    await _open_record(watched, record_id)
    await _status_is(watched, record_id, "resolved")
    await _no_injected_elements(page)


async def test_a_visit_result_is_recorded_and_reminders_arrive_as_notices(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    app = quiet_engine.app
    office = await add_user(app, Role.BACKOFFICE, display_name="Bo Office")
    items = app[EVALUATION_ITEMS]
    attitude = await items.create(EvaluationItemIn.model_validate({"name": "Attitude", "applies_to": "visit"}))
    await items.create(EvaluationItemIn.model_validate({"name": "Timeliness", "applies_to": "visit"}))
    await items.create(EvaluationItemIn.model_validate({"name": "Courtesy on the phone", "applies_to": "call"}))
    _, visit_id = await _record(
        quiet_engine, kind="callback_visit", caller_number="13800138000", idempotency_key="abandoned:L1"
    )
    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/desk", office)
    await page.locator("#live.live").wait_for()

    await page.click("#tab-visits")
    await page.locator('body[data-visits="loaded"]').wait_for()
    row = page.locator(f'#visits-table tr[data-visit="{visit_id}"]')
    assert "caller gave up in the queue" in await row.inner_text()
    assert HOSTILE in await row.inner_text()
    await row.click()
    await page.locator(f'#visit-fields[data-visit="{visit_id}"]').wait_for()
    # This user has no phone: placing the call is refused with the API's reason, and nothing is dialled.
    await page.click("#visit-call")
    await page.locator("#visit-call-error").filter(has_text="extension").wait_for()
    _expect_refusals(watched, 409)

    # Only the visit's items are offered; reached needs the satisfaction.
    assert await page.locator("#visit-result-form .scores span").all_inner_texts() == ["Attitude", "Timeliness"]
    await page.select_option('#visit-result-form select[name="outcome"]', "reached")
    await page.select_option('#visit-result-form select[name="satisfaction"]', "4")
    await page.select_option(f'#visit-result-form select[name="score-{attitude["id"]}"]', "5")
    await page.fill('#visit-result-form textarea[name="comment"]', f"happy {HOSTILE}")
    await page.click('#visit-result-form button[type="submit"]')
    result = page.locator("#visit-result")
    await result.wait_for()
    text = await result.inner_text()
    assert "reached" in text
    assert "4 / 5" in text
    assert "Attitude: 5" in text
    assert f"happy {HOSTILE}" in text
    await page.locator('#visit-fields[data-status="feedback_recorded"]').wait_for()

    # Frames of the reminder job, as the hub sends them: a reminder for the owner, the overdue board for the desk.
    item = {
        "id": visit_id,
        "type": "complaint",
        "status": "assigned",
        "content": HOSTILE,
        "customer": {"id": 1, "name": HOSTILE},
        "caller_number": "13800138000",
        "caller_name": HOSTILE,
        "follow_up": "2026-01-01",
        "appointment_at": None,
        "assigned_to": None,
        "due": ["follow_up"],
        "overdue": ["follow_up"],
        "created_at": "2026-01-01T10:00:00+00:00",
    }
    assert app[HUB].send("reminder", {"record": item}, permission=Permission.DESK_WORK) == 1
    assert app[HUB].send("overdue", {"records": [item], "new": 3}, permission=Permission.DESK_WORK) == 1
    await page.locator('#notices li[data-kind="overdue"]').filter(has_text="2 more").wait_for()
    notices = await page.locator("#notices li").all_inner_texts()
    assert len(notices) == 3, notices
    assert "Reminder" in notices[2]
    assert HOSTILE in notices[2]
    assert "follow up overdue" in notices[1]
    await _no_injected_elements(page)
    # A notice opens its record.
    await page.locator('#notices li[data-kind="reminder"] a').click()
    await page.locator(f'#record-view[data-record="{visit_id}"]').wait_for()


async def test_a_supervisor_plays_a_records_call_and_the_back_office_sees_the_call_without_it(
    quiet_engine: Engine, open_page: OpenPage
) -> None:
    app = quiet_engine.app
    boss = await add_user(app, Role.SUPERVISOR, extension="3001")
    office = await add_user(app, Role.BACKOFFICE)
    linkedid = "1700000000.77"
    _, record_id = await _record(quiet_engine, linkedid=linkedid, caller_number="13800138000")
    recording_id = "rec-" + "ab" * 16
    async with app[DATABASE].session() as session:
        session.add(
            Recording(
                id=recording_id,
                kind="full",
                status="complete",
                file_path="full/2026/01/01/x.wav",
                linkedid=linkedid,
                started_at=datetime(2026, 1, 1, 10, tzinfo=UTC),
                duration=61.0,
                caller_number="13800138000",
                direction="inbound",
                description="",
                tags="[]",
                search_text="",
                paused_intervals="[]",
            )
        )

    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/desk", boss)
    # Supervisors work the desk but neither manage outlets nor review fees.
    await page.locator('body[data-desk="ready"]').wait_for()
    tabs = page.locator("#tabs button:not(.hidden)")
    assert await tabs.all_inner_texts() == ["Records", "Work orders", "Visits"]
    await _open_record(watched, record_id)
    call = page.locator(f'#record-calls tr[data-linkedid="{linkedid}"]')
    audio = call.locator(f'[data-recording="{recording_id}"] audio')
    assert await audio.get_attribute("src") == f"/api/v1/recordings/{recording_id}/audio"
    assert await audio.get_attribute("preload") == "none"

    other = await open_page()
    await log_in(other, quiet_engine.base, "/desk", office)
    await _open_record(other, record_id)
    row = other.page.locator(f'#record-calls tr[data-linkedid="{linkedid}"]')
    assert "QA and supervisors play them" in await row.inner_text()
    assert await row.locator("audio").count() == 0
