"""The outlets' port :class:`outlets.ports.OutletQuality` over ``outlet_evaluations``, ``work_orders`` and
``service_outlets``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select

from callcenter.db import Database
from outlets.models import Outlet, OutletEvaluation, WorkOrder
from outlets.ports import OutletEvaluationCount, OutletInfo

# Ids asked for in one statement at most (a parameter each).
_IDS_PER_QUERY = 500


class OutletQualityReads:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def evaluation_counts(self, start: datetime, end: datetime) -> list[OutletEvaluationCount]:
        query = (
            select(OutletEvaluation.outlet_id, func.count(), func.avg(OutletEvaluation.score))
            .where(OutletEvaluation.evaluated_at >= start, OutletEvaluation.evaluated_at < end)
            .group_by(OutletEvaluation.outlet_id)
            .order_by(OutletEvaluation.outlet_id)
        )
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [OutletEvaluationCount(int(outlet), int(count), float(average)) for outlet, count, average in rows]

    async def outlets_of_orders(self, order_ids: Iterable[int]) -> dict[int, int]:
        wanted = sorted(set(order_ids))
        found: dict[int, int] = {}
        async with self._database.session() as session:
            for first in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[first : first + _IDS_PER_QUERY]
                rows = await session.execute(select(WorkOrder.id, WorkOrder.outlet_id).where(WorkOrder.id.in_(chunk)))
                found.update((int(order), int(outlet)) for order, outlet in rows)
        return found

    async def outlets(self, outlet_ids: Iterable[int]) -> dict[int, OutletInfo]:
        wanted = sorted(set(outlet_ids))
        found: dict[int, OutletInfo] = {}
        async with self._database.session() as session:
            for first in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[first : first + _IDS_PER_QUERY]
                rows = await session.execute(
                    select(Outlet.id, Outlet.name, Outlet.region, Outlet.retired_at).where(Outlet.id.in_(chunk))
                )
                found.update((int(row[0]), OutletInfo(int(row[0]), row[1], row[2], row[3] is not None)) for row in rows)
        return found
