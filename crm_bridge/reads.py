"""The CRM's ports (:mod:`crm_bridge.ports`) over its own tables and its service records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from callcenter.db import Database
from crm_bridge.exceptions import InvalidTransition, ServiceRecordNotFound
from crm_bridge.models import Customer, Product, ServiceRecord
from crm_bridge.ports import (
    EvaluationItemInfo,
    LifecycleRefused,
    RecordCount,
    RepairVisitResult,
    ServiceRecordFacts,
)
from crm_bridge.records import TRANSITIONS, ServiceRecords
from crm_bridge.schemas import TransitionIn
from crm_bridge.visit_models import EvaluationItem, VisitResult, VisitScore
from crm_bridge.visits import REPAIR_KEY


class CrmReads:
    """:class:`crm_bridge.ports.BusinessVolume` over ``service_records``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record_counts(self, start: datetime, end: datetime) -> list[RecordCount]:
        query = (
            select(ServiceRecord.type, ServiceRecord.status, func.count())
            .where(ServiceRecord.created_at >= start, ServiceRecord.created_at < end)
            .group_by(ServiceRecord.type, ServiceRecord.status)
        )
        async with self._database.session() as session:
            rows = await session.execute(query)
            counts = [RecordCount(str(kind), str(status), int(count)) for kind, status, count in rows]
        # Sorted here rather than in SQL: the same order on every backend, whatever its collation.
        return sorted(counts, key=lambda count: (count.type, count.status))


class CrmServiceDesk:
    """:class:`crm_bridge.ports.ServiceRecordDesk`: a record's facts read in one statement, its moves made by the
    CRM's own service records (their lifecycle and history)."""

    def __init__(self, database: Database, records: ServiceRecords) -> None:
        self._database = database
        self._records = records

    async def record_facts(self, record_id: int) -> ServiceRecordFacts | None:
        query = (
            select(
                ServiceRecord.id,
                ServiceRecord.type,
                ServiceRecord.status,
                ServiceRecord.customer_id,
                Customer.region,
                ServiceRecord.product_id,
                Product.category,
                ServiceRecord.fault_type,
                ServiceRecord.appointment_at,
            )
            .outerjoin(Customer, Customer.id == ServiceRecord.customer_id)
            .outerjoin(Product, Product.id == ServiceRecord.product_id)
            .where(ServiceRecord.id == record_id)
        )
        async with self._database.session() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        return ServiceRecordFacts(
            id=row[0],
            type=row[1],
            status=row[2],
            customer_id=row[3],
            region=row[4],
            product_id=row[5],
            product_category=row[6],
            fault_type=row[7],
            appointment_at=row[8],
        )

    async def move(
        self, record_id: int, action: str, *, actor: str, assignee: int | None = None, note: str | None = None
    ) -> str:
        if action not in TRANSITIONS:
            raise ValueError(f"no such lifecycle action: {action}")
        data = TransitionIn.model_validate({"action": action, "assigned_to": assignee, "note": note})
        try:
            moved = await self._records.transition(record_id, data, actor=actor)
        except InvalidTransition as exc:
            raise LifecycleRefused(record_id, action, exc.details["status"], exc.details["allowed_from"]) from exc
        except ServiceRecordNotFound as exc:
            raise LifecycleRefused(record_id, action, None, sorted(TRANSITIONS[action][0])) from exc
        return moved.status


class CrmEvaluationItems:
    """:class:`crm_bridge.ports.EvaluationItemCatalog` over ``evaluation_items``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def evaluation_items(self, applies_to: str) -> list[EvaluationItemInfo]:
        query = (
            select(
                EvaluationItem.id,
                EvaluationItem.name,
                EvaluationItem.applies_to,
                EvaluationItem.active,
                EvaluationItem.position,
            )
            .where(EvaluationItem.applies_to == applies_to)
            .order_by(EvaluationItem.position, EvaluationItem.id)
        )
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [EvaluationItemInfo(row[0], row[1], row[2], bool(row[3]), row[4]) for row in rows]


class CrmRepairVisits:
    """:class:`crm_bridge.ports.RepairVisits` over ``visit_results`` and ``visit_scores``: the visits whose
    idempotency key names a work order (``visit:repair:<order id>``, crm_bridge.visits)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def repair_visit_results(self, start: datetime, end: datetime) -> list[RepairVisitResult]:
        period = (
            ServiceRecord.idempotency_key.startswith(REPAIR_KEY, autoescape=True),
            VisitResult.recorded_at >= start,
            VisitResult.recorded_at < end,
        )
        async with self._database.session() as session:
            results = (
                await session.execute(
                    select(VisitResult.id, ServiceRecord.idempotency_key, VisitResult.outcome, VisitResult.satisfaction)
                    .join(ServiceRecord, ServiceRecord.id == VisitResult.record_id)
                    .where(*period)
                    .order_by(VisitResult.id)
                )
            ).all()
            scores: dict[int, list[tuple[int, int]]] = {}
            found = await session.execute(
                select(VisitScore.result_id, VisitScore.item_id, VisitScore.score)
                .join(VisitResult, VisitResult.id == VisitScore.result_id)
                .join(ServiceRecord, ServiceRecord.id == VisitResult.record_id)
                .where(*period)
                .order_by(VisitScore.id)
            )
            for result_id, item_id, score in found:
                scores.setdefault(result_id, []).append((item_id, score))
        visits = []
        for result_id, key, outcome, satisfaction in results:
            reference = str(key)[len(REPAIR_KEY) :]
            if not reference.isdigit():
                continue
            visits.append(RepairVisitResult(int(reference), outcome, satisfaction, tuple(scores.get(result_id, ()))))
        return visits
