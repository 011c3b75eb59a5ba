"""Call evaluations (服务质量考评 of the call center's service): QA scores a call, from a recording of it, on the
center's active ``call`` evaluation items (1-5 each) with an overall comment; the evaluations are summarised per
agent.

The call is the recording's linkedid (a recording that knows no call stands for itself), so any recording of a
call reaches the same evaluations; the agent evaluated is the recording's agent (``agent_user_id``). Whoever
evaluates must be allowed to play the recording (recordings.access, through the index).

One evaluation per evaluator per call: saving again replaces it, and the replaced one is kept with its scores and
when it was replaced (``replaced_at``). Replacing rather than refusing: QA corrects a score after listening again,
and refusing would only send them to ask an administrator; keeping the old one shows that a score was changed.
Summaries count only the current evaluations.

The items are the CRM's, read through :class:`crm_bridge.ports.EvaluationItemCatalog`; agents' names come from the
core's :class:`callcenter.auth.directory.UserDirectory`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from callcenter.auth.directory import UserDirectory
from callcenter.auth.services import Principal
from callcenter.db import ConstraintViolation, Database, utcnow
from callcenter.web.errors import Conflict
from crm_bridge.ports import EvaluationItemCatalog, EvaluationItemInfo
from recordings.evaluation_models import CallEvaluation, CallEvaluationScore
from recordings.evaluation_schemas import EvaluationIn
from recordings.exceptions import InvalidFilter
from recordings.index import RecordingIndex
from recordings.infos import RecordingInfo

CALL = "call"


class EvaluationChanged(Conflict):
    error_id = "evaluation_changed"

    def __init__(self) -> None:
        super().__init__("your evaluation of this call was saved meanwhile from elsewhere; load it and save again")


def _evaluation_json(row: CallEvaluation, scores: Sequence[tuple[int, int]], names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "call_id": row.call_id,
        "linkedid": row.linkedid,
        "recording_id": row.recording_id,
        "agent_user_id": row.agent_user_id,
        "evaluator_user_id": row.evaluator_user_id,
        "evaluator": row.evaluator,
        "comment": row.comment,
        "evaluated_at": row.evaluated_at.isoformat(),
        "scores": [{"item_id": item, "name": names.get(item, f"#{item}"), "score": score} for item, score in scores],
        "overall": round(sum(score for _, score in scores) / len(scores), 2) if scores else None,
    }


def _item_json(item: EvaluationItemInfo) -> dict[str, Any]:
    return {"id": item.id, "name": item.name, "active": item.active, "position": item.position}


class CallEvaluations:
    """Evaluating calls from their recordings, and the per-agent summary."""

    def __init__(
        self,
        database: Database,
        index: RecordingIndex,
        items: EvaluationItemCatalog,
        users: UserDirectory,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._index = index
        self._items = items
        self._users = users
        self._clock = clock

    @staticmethod
    def call_of(info: RecordingInfo) -> str:
        return info.linkedid or info.id

    async def _current(self, call_id: str) -> list[tuple[CallEvaluation, list[tuple[int, int]]]]:
        async with self._database.session() as session:
            rows = list(
                await session.scalars(
                    select(CallEvaluation)
                    .where(CallEvaluation.call_id == call_id, CallEvaluation.replaced_at.is_(None))
                    .order_by(CallEvaluation.evaluated_at, CallEvaluation.id)
                )
            )
            scores: dict[int, list[tuple[int, int]]] = defaultdict(list)
            if rows:
                found = await session.execute(
                    select(CallEvaluationScore.evaluation_id, CallEvaluationScore.item_id, CallEvaluationScore.score)
                    .where(CallEvaluationScore.evaluation_id.in_([row.id for row in rows]))
                    .order_by(CallEvaluationScore.id)
                )
                for evaluation_id, item_id, score in found:
                    scores[evaluation_id].append((item_id, score))
        return [(row, scores[row.id]) for row in rows]

    async def of_recording(self, recording_id: str, who: Principal, *, remote: str | None = None) -> dict[str, Any]:
        """The call's active items, ``who``'s own current evaluation of it (or None) and everyone's current ones."""
        info = await self._index.get(recording_id, who, remote=remote)
        items = await self._items.evaluation_items(CALL)
        names = {item.id: item.name for item in items}
        current = await self._current(self.call_of(info))
        evaluations = [_evaluation_json(row, scores, names) for row, scores in current]
        mine = next((one for one in evaluations if one["evaluator_user_id"] == who.user_id), None)
        return {
            "recording_id": info.id,
            "call_id": self.call_of(info),
            "agent_user_id": info.agent_user_id,
            "items": [_item_json(item) for item in items if item.active],
            "mine": mine,
            "evaluations": evaluations,
        }

    async def evaluate(
        self, recording_id: str, who: Principal, data: EvaluationIn, *, remote: str | None = None
    ) -> dict[str, Any]:
        """Saves ``who``'s evaluation of the recording's call, replacing their current one (kept as replaced)."""
        info = await self._index.get(recording_id, who, remote=remote)
        items = await self._items.evaluation_items(CALL)
        active = {item.id: item for item in items if item.active}
        given = {score.item_id: score.score for score in data.scores}
        unknown = sorted(set(given) - set(active))
        if unknown:
            retired = {item.id for item in items if not item.active}
            what = "retired" if set(unknown) <= retired else "unknown or retired"
            raise InvalidFilter("scores", f"{what} call evaluation items: {', '.join(map(str, unknown))}")
        missing = [item for item_id, item in active.items() if item_id not in given]
        if missing:
            raise InvalidFilter(
                "scores", "every active call item is scored; missing: " + ", ".join(i.name for i in missing)
            )
        now = self._clock()
        call_id = self.call_of(info)
        ordered = [(item_id, given[item_id]) for item_id in active]
        try:
            async with self._database.session() as session:
                await session.execute(
                    update(CallEvaluation)
                    .where(
                        CallEvaluation.call_id == call_id,
                        CallEvaluation.evaluator_user_id == who.user_id,
                        CallEvaluation.replaced_at.is_(None),
                    )
                    .values(replaced_at=now)
                )
                row = CallEvaluation(
                    call_id=call_id,
                    linkedid=info.linkedid,
                    recording_id=info.id,
                    agent_user_id=info.agent_user_id,
                    evaluator_user_id=who.user_id,
                    evaluator=who.username,
                    comment=data.comment,
                    evaluated_at=now,
                    replaced_at=None,
                )
                session.add(row)
                await session.flush()
                session.add_all(
                    CallEvaluationScore(evaluation_id=row.id, item_id=item_id, score=score)
                    for item_id, score in ordered
                )
        except ConstraintViolation:
            # Two saves of the same evaluator's evaluation at once: the other one's is now current.
            raise EvaluationChanged() from None
        return _evaluation_json(row, ordered, {item.id: item.name for item in items})

    async def history(self, call_id: str, evaluator_user_id: int) -> list[dict[str, Any]]:
        """Every evaluation ``evaluator_user_id`` made of the call, the current one last (for audits and tests)."""
        async with self._database.session() as session:
            rows = list(
                await session.scalars(
                    select(CallEvaluation)
                    .where(CallEvaluation.call_id == call_id, CallEvaluation.evaluator_user_id == evaluator_user_id)
                    .order_by(CallEvaluation.id)
                )
            )
            found = await session.execute(
                select(CallEvaluationScore.evaluation_id, CallEvaluationScore.item_id, CallEvaluationScore.score)
                .where(CallEvaluationScore.evaluation_id.in_([row.id for row in rows]))
                .order_by(CallEvaluationScore.id)
            )
            scores: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for evaluation_id, item_id, score in found:
                scores[evaluation_id].append((item_id, score))
        return [
            {
                **_evaluation_json(row, scores[row.id], {}),
                "replaced_at": row.replaced_at and row.replaced_at.isoformat(),
            }
            for row in rows
        ]

    async def agents(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Per agent, the current evaluations made in [start, end): how many, the average per item and overall
        (the mean of each evaluation's mean, so that each evaluation weighs the same)."""
        period = (
            CallEvaluation.replaced_at.is_(None),
            CallEvaluation.evaluated_at >= start,
            CallEvaluation.evaluated_at < end,
        )
        per_evaluation = (
            select(
                CallEvaluation.id.label("evaluation_id"),
                CallEvaluation.agent_user_id.label("agent_user_id"),
                func.avg(CallEvaluationScore.score).label("mean"),
            )
            .select_from(CallEvaluation)
            .outerjoin(CallEvaluationScore, CallEvaluationScore.evaluation_id == CallEvaluation.id)
            .where(*period)
            .group_by(CallEvaluation.id, CallEvaluation.agent_user_id)
            .subquery()
        )
        async with self._database.session() as session:
            totals = (
                await session.execute(
                    select(
                        per_evaluation.c.agent_user_id,
                        func.count(),
                        func.avg(per_evaluation.c.mean),
                    ).group_by(per_evaluation.c.agent_user_id)
                )
            ).all()
            by_item = (
                await session.execute(
                    select(
                        CallEvaluation.agent_user_id,
                        CallEvaluationScore.item_id,
                        func.count(),
                        func.avg(CallEvaluationScore.score),
                    )
                    .join(CallEvaluationScore, CallEvaluationScore.evaluation_id == CallEvaluation.id)
                    .where(*period)
                    .group_by(CallEvaluation.agent_user_id, CallEvaluationScore.item_id)
                )
            ).all()
        items = await self._items.evaluation_items(CALL)
        scored = {item_id for _, item_id, _, _ in by_item}
        # The active items, and the retired ones that were scored in the period, in their order.
        shown = [item for item in items if item.active or item.id in scored]
        people = await self._users.users(agent for agent, *_ in totals if agent is not None)
        averages: dict[int | None, dict[int, tuple[int, float]]] = defaultdict(dict)
        for agent, item_id, count, average in by_item:
            averages[agent][item_id] = (int(count), float(average))
        agents = []
        for agent, count, overall in totals:
            person = people.get(agent) if agent is not None else None
            agents.append(
                {
                    "agent_user_id": agent,
                    "username": person.username if person else None,
                    "display_name": person.display_name if person else None,
                    "evaluations": int(count),
                    "overall": None if overall is None else round(float(overall), 2),
                    "items": [
                        {
                            "item_id": item.id,
                            "count": averages[agent][item.id][0],
                            "average": round(averages[agent][item.id][1], 2),
                        }
                        for item in shown
                        if item.id in averages[agent]
                    ],
                }
            )
        # Sorted here rather than in SQL: the same order on every backend; the evaluations of no known agent last.
        agents.sort(
            key=lambda one: (one["agent_user_id"] is None, one["display_name"] or "", one["agent_user_id"] or 0)
        )
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "items": [_item_json(item) for item in shown],
            "agents": agents,
        }

    @staticmethod
    def agents_csv(summary: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """The summary as CSV columns and rows: an agent per row, a column per item."""
        items = summary["items"]
        columns = ["agent_user_id", "username", "display_name", "evaluations", "overall"]
        columns += [f"item {item['id']}: {item['name']}" for item in items]
        rows = []
        for agent in summary["agents"]:
            row = {name: agent[name] for name in columns[:5]}
            averages = {one["item_id"]: one["average"] for one in agent["items"]}
            for item, column in zip(items, columns[5:], strict=True):
                row[column] = averages.get(item["id"])
            rows.append(row)
        return columns, rows
