"""The CRM's read interfaces (:mod:`crm_bridge.ports`) over its own tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from callcenter.db import Database
from crm_bridge.models import ServiceRecord
from crm_bridge.ports import RecordCount


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
