"""The QA page's evaluation in Chromium against an engine without Asterisk (no sandbox, no lock): a QA user picks
a recording, scores its call on the call evaluation items with a comment, saves, sees the evaluation when the
recording is picked again, and finds the agent in the quality summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callcenter.auth.permissions import Role
from callcenter.keys import AUTH
from crm_bridge.keys import EVALUATION_ITEMS
from crm_bridge.visit_models import AppliesTo
from crm_bridge.visit_schemas import EvaluationItemIn
from recordings.infos import CallFacts
from recordings.keys import EVALUATIONS, RECORDINGS
from tests.browser.conftest import Engine, OpenPage, add_user, log_in
from tests.db.test_recordings_http import write_wav


async def test_a_qa_user_scores_a_recordings_call_from_the_qa_page(quiet_engine: Engine, open_page: OpenPage) -> None:
    app = quiet_engine.app
    qa = await add_user(app, Role.QA, display_name="Quinn QA")
    agent = await add_user(app, Role.AGENT, extension="1001", display_name="Ada Agent")
    agent_id = next(user.id for user in await app[AUTH].list_users() if user.username == agent)
    items = app[EVALUATION_ITEMS]
    greeting = (await items.create(EvaluationItemIn(name="Greeting", applies_to=AppliesTo.CALL)))["id"]
    solution = (await items.create(EvaluationItemIn(name="Solution", applies_to=AppliesTo.CALL)))["id"]
    await items.create(EvaluationItemIn(name="Punctuality", applies_to=AppliesTo.VISIT))
    recs = app[RECORDINGS]
    info, allocation = await recs.lifecycle.start(
        "full",
        CallFacts(
            linkedid="1700000000.7", agent_interface="PJSIP/1001", agent_user_id=agent_id, caller_number="5550107"
        ),
        started_at=datetime.now(UTC) - timedelta(minutes=10),
    )
    write_wav(allocation.path, [0.4, 0.7, 0.2])
    await recs.lifecycle.finish(info.id)

    watched = await open_page()
    page = watched.page
    await log_in(watched, quiet_engine.base, "/qa", qa)
    # The quality view shows the (still empty) summary for the last 30 days.
    await page.locator("#quality-results").get_by_text("No call was evaluated in this period.").wait_for()
    await page.locator(f'#results tr[data-recording="{info.id}"]').click()
    panel = page.locator("#evaluate-panel")
    await panel.get_by_text("You have not evaluated this call yet.").wait_for()
    # Only the call items, in their order.
    assert await panel.locator("#evaluate-items .score-item span").all_inner_texts() == ["Greeting", "Solution"]

    # Saving with an item unscored is stopped on the page.
    await page.select_option(f'select[name="score-{greeting}"]', "4")
    await page.click("#evaluate-save")
    await page.locator("#notice.error").get_by_text("Score every item").wait_for()
    assert (
        await app[EVALUATIONS].history(
            "1700000000.7", next(u.id for u in await app[AUTH].list_users() if u.username == qa)
        )
        == []
    )

    await page.select_option(f'select[name="score-{solution}"]', "2")
    await page.fill("#evaluate-comment", "Polite, but the fix was wrong.")
    await page.click("#evaluate-save")
    await page.locator("#evaluate-mine").get_by_text("overall 3").wait_for()

    qa_id = next(user.id for user in await app[AUTH].list_users() if user.username == qa)
    history = await app[EVALUATIONS].history("1700000000.7", qa_id)
    assert len(history) == 1
    assert history[0]["agent_user_id"] == agent_id
    assert history[0]["comment"] == "Polite, but the fix was wrong."
    assert [(score["item_id"], score["score"]) for score in history[0]["scores"]] == [(greeting, 4), (solution, 2)]

    # Picked again (after a reload), the evaluation is shown in the form.
    await page.reload()
    await page.locator(f'#results tr[data-recording="{info.id}"]').click()
    await page.locator("#evaluate-mine").get_by_text("Your evaluation of").wait_for()
    assert await page.input_value(f'select[name="score-{greeting}"]') == "4"
    assert await page.input_value(f'select[name="score-{solution}"]') == "2"
    assert await page.input_value("#evaluate-comment") == "Polite, but the fix was wrong."

    # Changed and saved again: it replaces the first, which stays in the history.
    await page.select_option(f'select[name="score-{solution}"]', "3")
    await page.click("#evaluate-save")
    await page.locator("#evaluate-mine").get_by_text("overall 3.5").wait_for()
    assert len(await app[EVALUATIONS].history("1700000000.7", qa_id)) == 2

    # The quality view counts the current evaluation for the agent.
    await page.click("#quality-button")
    row = page.locator("#quality-table tbody tr").filter(has_text="Ada Agent")
    await row.wait_for()
    assert await row.locator("td").all_inner_texts() == ["Ada Agent", "1", "3.50", "4.00", "3.00"]
    assert await page.locator("#quality-table thead th").all_inner_texts() == [
        "Agent",
        "Evaluations",
        "Overall",
        "Greeting",
        "Solution",
    ]
