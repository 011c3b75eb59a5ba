"""Call evaluations on SQLite and PostgreSQL: QA scores a call from a recording on the active call evaluation items,
a second save replaces the first (which stays in the history), bad scores are refused naming the field, only those
who may play the recording evaluate it, and the per-agent summary (JSON and CSV) counts the current evaluations of
its period."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from callcenter.auth.directory import UserDirectory
from callcenter.auth.middleware import auth_middleware
from callcenter.auth.permissions import Permission, Role
from callcenter.auth.services import AuthService, Principal
from callcenter.config import RecordingsConfig
from callcenter.db import Base, Database, include_name
from callcenter.keys import AUTH
from callcenter.web.errors import error_middleware
from crm_bridge.models import ServiceRecord
from crm_bridge.reads import CrmEvaluationItems, CrmRepairVisits
from crm_bridge.visit_models import AppliesTo, VisitResult, VisitScore
from crm_bridge.visit_schemas import EvaluationItemIn, EvaluationItemPatch
from crm_bridge.visits import EvaluationItems
from outlets.models import Outlet, OutletEvaluation, WorkOrder
from outlets.quality_reads import OutletQualityReads
from recordings.evaluation_http import evaluation_routes
from recordings.evaluation_schemas import EvaluationIn, ScoreIn
from recordings.evaluations import CallEvaluations
from recordings.exceptions import RecordingForbidden
from recordings.infos import CallFacts
from recordings.keys import EVALUATIONS, OUTLET_QUALITY, RECORDINGS
from recordings.outlet_quality import OutletQualitySummary
from recordings.services import RecordingService
from recordings.storage import RecordingStore
from tests.db.test_recordings_http import write_wav

PASSWORD = "correct horse battery"
Client = TestClient[web.Request, web.Application]
TABLES = {"call_evaluations", "call_evaluation_scores"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    client: Client
    database: Database
    evaluations: CallEvaluations
    items: EvaluationItems
    clock: Clock
    tokens: dict[str, str]
    users: dict[str, int]
    recordings: dict[str, str]
    item_ids: dict[str, int]

    def as_(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def scores(self, **by_name: int) -> list[dict[str, int]]:
        return [{"item_id": self.item_ids[name], "score": score} for name, score in by_name.items()]

    async def evaluate(self, user: str, recording: str, body: dict[str, Any]) -> Any:
        return await self.client.post(
            f"/api/v1/recordings/{self.recordings[recording]}/evaluation", json=body, headers=self.as_(user)
        )


@pytest.fixture
async def world(database: Database, service: AuthService, tmp_path: Path) -> AsyncIterator[World]:
    root = tmp_path / "recordings"
    root.mkdir()
    recs = RecordingService(
        database, RecordingsConfig(), RecordingStore(root), transcode_dir=tmp_path / "transcode", auditor=service
    )
    people = {
        "quinn": (["qa"], None, "Quinn"),
        "sam": (["supervisor"], None, "Sam"),
        "alice": (["agent"], "1001", "Alice"),
        "bob": (["agent"], "1002", '=HYPERLINK("x")'),
        "root": (["admin"], None, "Root"),
    }
    users = {}
    for name, (roles, extension, shown) in people.items():
        users[name] = (
            await service.create_user(name, PASSWORD, roles=roles, extension=extension, display_name=shown)
        ).id
    tokens = {name: (await service.login(name, PASSWORD))[0] for name in people}

    items = EvaluationItems(database)
    item_ids = {}
    for name, applies_to in (
        ("greeting", AppliesTo.CALL),
        ("solution", AppliesTo.CALL),
        ("courtesy", AppliesTo.VISIT),
    ):
        item_ids[name] = (await items.create(EvaluationItemIn(name=name, applies_to=applies_to)))["id"]

    recordings = {}
    started = datetime.now(UTC) - timedelta(hours=1)
    for name, facts, kind in (
        ("alices", CallFacts(linkedid="1700.1", agent_interface="PJSIP/1001", agent_user_id=users["alice"]), "full"),
        # A second recording of Alice's call: the same call.
        (
            "alices_part",
            CallFacts(linkedid="1700.1", agent_interface="PJSIP/1001", agent_user_id=users["alice"]),
            "on_demand",
        ),
        ("bobs", CallFacts(linkedid="1700.2", agent_interface="PJSIP/1002", agent_user_id=users["bob"]), "full"),
        # A recording that knows no call and no agent user.
        ("unknown", CallFacts(agent_interface="PJSIP/1003"), "full"),
    ):
        info, allocation = await recs.lifecycle.start(kind, facts, started_at=started)
        write_wav(allocation.path, [0.3, 0.5])
        await recs.lifecycle.finish(info.id)
        recordings[name] = info.id

    clock = Clock()
    evaluations = CallEvaluations(
        database, recs.index, CrmEvaluationItems(database), UserDirectory(database), clock=clock
    )
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[RECORDINGS] = recs
    app[EVALUATIONS] = evaluations
    app[OUTLET_QUALITY] = OutletQualitySummary(
        OutletQualityReads(database), CrmRepairVisits(database), CrmEvaluationItems(database)
    )
    app.add_routes(evaluation_routes)
    async with TestClient(TestServer(app)) as client:
        yield World(client, database, evaluations, items, clock, tokens, users, recordings, item_ids)


async def error_of(response: Any) -> tuple[int, str, dict[str, Any]]:
    body = await response.json()
    return response.status, body["error"]["id"], body["error"]["details"]


def period(world: World, days: int = 1) -> dict[str, str]:
    return {
        "start": (world.clock.now - timedelta(days=days)).isoformat(),
        "end": (world.clock.now + timedelta(days=days)).isoformat(),
    }


# -- schema ---------------------------------------------------------------------------------------------


def _table_of(diff: Any) -> str | None:
    if isinstance(diff, list):
        return str(diff[0][2])
    subject = diff[1]
    if diff[0] in ("add_column", "remove_column"):
        return str(diff[2])
    table = getattr(subject, "table", subject)
    return getattr(table, "name", None)


async def test_migration_creates_the_evaluation_tables_of_the_models(database: Database) -> None:
    def check(connection: Connection) -> tuple[set[str], list[Any], dict[str, Any]]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
        ours = [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in TABLES]
        indexes = {index["name"]: index for index in inspect(connection).get_indexes("call_evaluations")}
        return set(inspect(connection).get_table_names()), ours, indexes

    async with database.engine.connect() as connection:
        names, differences, indexes = await connection.run_sync(check)
    assert names >= TABLES
    assert differences == []
    assert indexes["ix_call_evaluations_current"]["unique"]


# -- evaluating -------------------------------------------------------------------------------------------


async def test_qa_scores_a_recording_on_the_active_call_items_and_reads_it_back(world: World) -> None:
    response = await world.client.get(
        f"/api/v1/recordings/{world.recordings['alices']}/evaluation", headers=world.as_("quinn")
    )
    assert response.status == 200
    before = await response.json()
    assert [item["name"] for item in before["items"]] == ["greeting", "solution"]
    assert before["mine"] is None
    assert before["evaluations"] == []
    assert before["agent_user_id"] == world.users["alice"]
    assert before["call_id"] == "1700.1"

    response = await world.evaluate(
        "quinn", "alices", {"scores": world.scores(greeting=4, solution=2), "comment": "slow"}
    )
    assert response.status == 201
    saved = await response.json()
    assert saved["agent_user_id"] == world.users["alice"]
    assert saved["evaluator"] == "quinn"
    assert saved["overall"] == 3.0
    assert [(s["name"], s["score"]) for s in saved["scores"]] == [("greeting", 4), ("solution", 2)]

    # The call's other recording reaches the same evaluation.
    response = await world.client.get(
        f"/api/v1/recordings/{world.recordings['alices_part']}/evaluation", headers=world.as_("quinn")
    )
    after = await response.json()
    assert after["mine"]["id"] == saved["id"]
    assert after["mine"]["comment"] == "slow"
    assert [one["id"] for one in after["evaluations"]] == [saved["id"]]


async def test_a_second_save_replaces_the_evaluators_own_and_keeps_the_first_in_the_history(world: World) -> None:
    first = await (await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=2, solution=2)})).json()
    world.clock.now += timedelta(minutes=5)
    second_response = await world.evaluate(
        "quinn", "alices_part", {"scores": world.scores(greeting=5, solution=4), "comment": "listened again"}
    )
    assert second_response.status == 201
    second = await second_response.json()
    # Another evaluator's evaluation of the same call is their own.
    sams = await (await world.evaluate("sam", "alices", {"scores": world.scores(greeting=3, solution=3)})).json()

    view = await (
        await world.client.get(
            f"/api/v1/recordings/{world.recordings['alices']}/evaluation", headers=world.as_("quinn")
        )
    ).json()
    assert view["mine"]["id"] == second["id"]
    assert view["mine"]["overall"] == 4.5
    assert sorted(one["id"] for one in view["evaluations"]) == sorted([second["id"], sams["id"]])

    history = await world.evaluations.history("1700.1", world.users["quinn"])
    assert [one["id"] for one in history] == [first["id"], second["id"]]
    assert history[0]["replaced_at"] == world.clock.now.replace(minute=5).isoformat()
    assert [s["score"] for s in history[0]["scores"]] == [2, 2]
    assert history[1]["replaced_at"] is None


async def test_a_recording_without_a_call_is_evaluated_as_its_own_call_without_an_agent(world: World) -> None:
    response = await world.evaluate("quinn", "unknown", {"scores": world.scores(greeting=1, solution=1)})
    assert response.status == 201
    saved = await response.json()
    assert saved["call_id"] == world.recordings["unknown"]
    assert saved["agent_user_id"] is None


async def test_unknown_retired_missing_repeated_and_out_of_range_scores_are_refused_naming_the_field(
    world: World,
) -> None:
    cases = [
        {"scores": [*world.scores(greeting=3, solution=3), {"item_id": 99999, "score": 3}]},
        # A visit item is not a call item.
        {"scores": world.scores(greeting=3, solution=3, courtesy=3)},
        {"scores": world.scores(greeting=3)},
        {"scores": [*world.scores(greeting=3, solution=3), {"item_id": world.item_ids["greeting"], "score": 4}]},
    ]
    for body in cases:
        status, error_id, details = await error_of(await world.evaluate("quinn", "alices", body))
        assert (status, error_id) == (400, "invalid_input"), body
        assert "scores" in str(details["fields"]), (body, details)

    for score in (0, 6):
        response = await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=score, solution=3)})
        status, _, details = await error_of(response)
        assert status == 400
        assert "scores.0.score" in details["fields"], details

    status, _, details = await error_of(
        await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=3, solution=3), "extra": 1})
    )
    assert status == 400
    assert "extra" in details["fields"]

    # A retired item is refused by name; the remaining active one is all that is needed.
    await world.items.update(world.item_ids["solution"], EvaluationItemPatch(active=False))
    status, _, details = await error_of(
        await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=3, solution=3)})
    )
    assert status == 400
    assert "retired" in details["fields"]["scores"]
    response = await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=3)})
    assert response.status == 201
    # Nothing refused was kept.
    assert len(await world.evaluations.history("1700.1", world.users["quinn"])) == 1


async def test_unknown_recording_404_and_unsafe_id_400(world: World) -> None:
    body = {"scores": world.scores(greeting=3, solution=3)}
    response = await world.client.post(
        f"/api/v1/recordings/rec-{'0' * 32}/evaluation", json=body, headers=world.as_("quinn")
    )
    assert (await error_of(response))[:2] == (404, "recording_not_found")
    response = await world.client.get(f"/api/v1/recordings/rec-{'0' * 32}/evaluation", headers=world.as_("quinn"))
    assert response.status == 404
    response = await world.client.post(
        "/api/v1/recordings/..%2f..%2fx/evaluation", json=body, headers=world.as_("quinn")
    )
    assert response.status in (400, 404)


async def test_only_evaluators_write_and_only_evaluators_or_statistics_readers_read(world: World) -> None:
    body = {"scores": world.scores(greeting=3, solution=3)}
    # An agent may play her own call but not evaluate it, nor read the evaluations.
    assert (await world.evaluate("alice", "alices", body)).status == 403
    response = await world.client.get(
        f"/api/v1/recordings/{world.recordings['alices']}/evaluation", headers=world.as_("alice")
    )
    assert (await error_of(response))[:2] == (403, "quality_forbidden")
    response = await world.client.get("/api/v1/quality/agents", params=period(world), headers=world.as_("alice"))
    assert (await error_of(response))[:2] == (403, "quality_forbidden")
    # An admin reads statistics, so the summary; but may not evaluate.
    assert (await world.evaluate("root", "alices", body)).status == 403
    response = await world.client.get("/api/v1/quality/agents", params=period(world), headers=world.as_("root"))
    assert response.status == 200
    response = await world.client.get("/api/v1/quality/agents", params=period(world))
    assert response.status == 401


async def test_an_evaluator_who_may_not_play_the_recording_is_refused(world: World) -> None:
    # No role both evaluates and plays only its own calls today; the rule is the recordings' access rule all the
    # same, so a principal is made by hand.
    who = Principal(
        user_id=world.users["bob"],
        username="bob",
        display_name="Bob",
        roles=frozenset({Role.AGENT}),
        permissions=frozenset({Permission.QUALITY_EVALUATE, Permission.RECORDINGS_PLAY_OWN}),
        teams=(),
        extension="1002",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    data = EvaluationIn(
        scores=[
            ScoreIn(item_id=world.item_ids["greeting"], score=3),
            ScoreIn(item_id=world.item_ids["solution"], score=3),
        ]
    )
    with pytest.raises(RecordingForbidden):
        await world.evaluations.evaluate(world.recordings["alices"], who, data)
    with pytest.raises(RecordingForbidden):
        await world.evaluations.of_recording(world.recordings["alices"], who)
    saved = await world.evaluations.evaluate(world.recordings["bobs"], who, data)
    assert saved["agent_user_id"] == world.users["bob"]


# -- the summary per agent ---------------------------------------------------------------------------------


async def test_the_agent_summary_counts_current_evaluations_of_the_period_per_item_and_overall(world: World) -> None:
    await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=1, solution=1)})
    # Replaced: not counted.
    await world.evaluate("quinn", "alices", {"scores": world.scores(greeting=4, solution=2)})
    await world.evaluate("sam", "alices", {"scores": world.scores(greeting=5, solution=5)})
    await world.evaluate("quinn", "bobs", {"scores": world.scores(greeting=2, solution=3)})
    await world.evaluate("quinn", "unknown", {"scores": world.scores(greeting=3, solution=3)})
    # Outside the period.
    world.clock.now -= timedelta(days=10)
    await world.evaluate("sam", "bobs", {"scores": world.scores(greeting=1, solution=1)})
    world.clock.now += timedelta(days=10)

    response = await world.client.get("/api/v1/quality/agents", params=period(world), headers=world.as_("sam"))
    assert response.status == 200
    summary = await response.json()
    assert [item["name"] for item in summary["items"]] == ["greeting", "solution"]
    by_agent = {agent["agent_user_id"]: agent for agent in summary["agents"]}
    alice = by_agent[world.users["alice"]]
    assert alice["display_name"] == "Alice"
    assert alice["evaluations"] == 2
    assert alice["overall"] == 4.0  # (3 + 5) / 2
    assert {i["item_id"]: (i["count"], i["average"]) for i in alice["items"]} == {
        world.item_ids["greeting"]: (2, 4.5),
        world.item_ids["solution"]: (2, 3.5),
    }
    bob = by_agent[world.users["bob"]]
    assert (bob["evaluations"], bob["overall"]) == (1, 2.5)
    assert by_agent[None]["evaluations"] == 1
    # The evaluations of no known agent come last.
    assert summary["agents"][-1]["agent_user_id"] is None

    # A retired item that was scored in the period is still shown.
    await world.items.update(world.item_ids["solution"], EvaluationItemPatch(active=False))
    summary = await (
        await world.client.get("/api/v1/quality/agents", params=period(world), headers=world.as_("quinn"))
    ).json()
    assert [(item["name"], item["active"]) for item in summary["items"]] == [("greeting", True), ("solution", False)]

    response = await world.client.get(
        "/api/v1/quality/agents", params={**period(world), "format": "csv"}, headers=world.as_("quinn")
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][:5] == ["agent_user_id", "username", "display_name", "evaluations", "overall"]
    assert rows[0][5:] == [
        f"item {world.item_ids['greeting']}: greeting",
        f"item {world.item_ids['solution']}: solution",
    ]
    bobs_row = next(row for row in rows[1:] if row[1] == "bob")
    # The display name a spreadsheet would run as a formula is written as text.
    assert bobs_row[2] == '\'=HYPERLINK("x")'
    assert bobs_row[3:] == ["1", "2.5", "2.0", "3.0"]


async def test_a_summary_needs_a_period_with_zones_and_its_end_after_its_start(world: World) -> None:
    now = world.clock.now
    bad = [
        ({}, "start"),
        ({"start": now.isoformat()}, "end"),
        ({"start": "2030-01-01T00:00:00", "end": now.isoformat()}, "start"),
        ({"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()}, "end"),
        ({"start": now.isoformat(), "end": (now + timedelta(days=400)).isoformat()}, "end"),
        ({**period(world), "format": "xml"}, "format"),
    ]
    for params, field in bad:
        response = await world.client.get("/api/v1/quality/agents", params=params, headers=world.as_("quinn"))
        status, _, details = await error_of(response)
        assert status == 400, params
        assert field in details["fields"], (params, details)
    empty = await (
        await world.client.get("/api/v1/quality/agents", params=period(world), headers=world.as_("quinn"))
    ).json()
    assert empty["agents"] == []


async def test_saves_of_one_evaluator_at_the_same_moment_leave_one_current_evaluation(world: World) -> None:
    bodies = [{"scores": world.scores(greeting=score, solution=score)} for score in (1, 2, 3, 4)]
    responses = await asyncio.gather(*(world.evaluate("quinn", "alices", body) for body in bodies))
    assert {response.status for response in responses} <= {201, 409}
    assert any(response.status == 201 for response in responses)
    history = await world.evaluations.history("1700.1", world.users["quinn"])
    current = [one for one in history if one["replaced_at"] is None]
    assert len(current) == 1
    view = await (
        await world.client.get(
            f"/api/v1/recordings/{world.recordings['alices']}/evaluation", headers=world.as_("quinn")
        )
    ).json()
    assert view["mine"]["id"] == current[0]["id"]


# -- the summary per outlet ----------------------------------------------------------------------------------


async def _outlet_data(world: World) -> dict[str, int]:
    """Two outlets with evaluations and repair visits, a third with nothing; a complaint's visit that is no
    outlet's. Written as rows: the outlets' and the desk's own tests drive the services that make them."""
    now = world.clock.now
    ids: dict[str, int] = {}
    async with world.database.session() as session:
        outlets = {
            "alpha": Outlet(name="Alpha Repairs", region="Haidian", created_at=now, updated_at=now),
            "beta": Outlet(name="=Beta", region="Chaoyang", created_at=now, updated_at=now),
            "idle": Outlet(name="Idle", region="Haidian", created_at=now, updated_at=now, retired_at=now),
        }
        session.add_all(outlets.values())
        await session.flush()
        ids.update({name: outlet.id for name, outlet in outlets.items()})

        def record(kind: str, status: str, key: str | None = None) -> ServiceRecord:
            return ServiceRecord(
                type=kind,
                status=status,
                content="",
                created_by="test",
                idempotency_key=key,
                created_at=now,
                updated_at=now,
            )

        orders = {}
        for name, outlet in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta")):
            booking = record("repair_booking", "resolved")
            session.add(booking)
            await session.flush()
            order = WorkOrder(
                service_record_id=booking.id,
                outlet_id=ids[outlet],
                kind="repair",
                status="done",
                chosen="auto",
                dispatched_by="test",
                created_at=now,
                updated_at=now,
                closed_at=now,
            )
            session.add(order)
            await session.flush()
            orders[name] = order.id
        ids.update(orders)

        async def visit(key: str, outcome: str, satisfaction: int | None, scores: dict[int, int], at: datetime) -> None:
            visit_record = record("callback_visit", "feedback_recorded", key)
            session.add(visit_record)
            await session.flush()
            result = VisitResult(
                record_id=visit_record.id,
                outcome=outcome,
                satisfaction=satisfaction,
                recorded_by="desk",
                recorded_at=at,
            )
            session.add(result)
            await session.flush()
            session.add_all(
                VisitScore(result_id=result.id, item_id=item, score=score) for item, score in scores.items()
            )

        courtesy = world.item_ids["courtesy"]
        await visit(f"visit:repair:{orders['a1']}", "reached", 4, {courtesy: 5}, now)
        await visit(f"visit:repair:{orders['a2']}", "reached", 2, {courtesy: 2}, now)
        await visit(f"visit:repair:{orders['b1']}", "not_reached", None, {}, now)
        # A complaint's visit is no outlet's; a repair visit outside the period is not counted.
        await visit("visit:complaint:999", "reached", 1, {courtesy: 1}, now)
        session.add_all(
            [
                OutletEvaluation(outlet_id=ids["alpha"], score=5, evaluated_by="quinn", evaluated_at=now),
                OutletEvaluation(outlet_id=ids["alpha"], score=3, evaluated_by="desk", evaluated_at=now),
                OutletEvaluation(
                    outlet_id=ids["beta"], score=1, evaluated_by="quinn", evaluated_at=now - timedelta(days=30)
                ),
            ]
        )
    return ids


async def test_the_outlet_summary_counts_evaluations_and_the_visits_after_the_outlets_repairs(world: World) -> None:
    ids = await _outlet_data(world)
    response = await world.client.get("/api/v1/quality/outlets", params=period(world), headers=world.as_("quinn"))
    assert response.status == 200
    summary = await response.json()
    assert [item["name"] for item in summary["items"]] == ["courtesy"]
    # By name: "=Beta" sorts before "Alpha Repairs"; the idle outlet has nothing in the period.
    assert [outlet["outlet_id"] for outlet in summary["outlets"]] == [ids["beta"], ids["alpha"]]
    alpha, beta = summary["outlets"][1], summary["outlets"][0]
    assert alpha["name"] == "Alpha Repairs"
    assert (alpha["evaluations"], alpha["evaluation_average"]) == (2, 4.0)
    assert (alpha["visits"], alpha["satisfied_visits"], alpha["satisfaction_average"]) == (2, 2, 3.0)
    assert alpha["items"] == [{"item_id": world.item_ids["courtesy"], "count": 2, "average": 3.5}]
    assert (beta["evaluations"], beta["evaluation_average"]) == (0, None)
    assert (beta["visits"], beta["satisfied_visits"], beta["satisfaction_average"]) == (1, 0, None)

    response = await world.client.get(
        "/api/v1/quality/outlets", params={**period(world), "format": "csv"}, headers=world.as_("root")
    )
    assert response.status == 200
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][-1] == f"item {world.item_ids['courtesy']}: courtesy"
    assert rows[1][:2] == [str(ids["beta"]), "'=Beta"]
    assert rows[2][4:] == ["2", "4.0", "2", "2", "3.0", "3.5"]

    # The older evaluation of Beta is in a wider period.
    wide = await (
        await world.client.get("/api/v1/quality/outlets", params=period(world, days=40), headers=world.as_("sam"))
    ).json()
    assert next(o for o in wide["outlets"] if o["outlet_id"] == ids["beta"])["evaluations"] == 1

    response = await world.client.get("/api/v1/quality/outlets", params=period(world), headers=world.as_("alice"))
    assert (await error_of(response))[:2] == (403, "quality_forbidden")
    response = await world.client.get("/api/v1/quality/outlets", params={"start": "x"}, headers=world.as_("quinn"))
    assert response.status == 400
