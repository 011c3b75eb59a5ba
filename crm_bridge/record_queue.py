"""The work queue of service records: one page of records as the desk filters them (type, status, owner, customer,
due or overdue), in the order it asks for, each with its customer's name and its due and overdue occasions.

Due and overdue are the desk's rules (:mod:`crm_bridge.desk`), in the center's calendar and at the queue's clock;
every other filter and the orders are the records' own (:func:`crm_bridge.records.listing`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from callcenter.db import Database, utcnow
from crm_bridge.desk import DeskRules, due_condition, occasions, overdue_condition
from crm_bridge.infos import record_info
from crm_bridge.models import ServiceRecord
from crm_bridge.records import listing
from crm_bridge.schemas import ServiceRecordQuery


def queue_item(record: ServiceRecord, customer_name: str | None, rules: DeskRules, now: datetime) -> dict[str, Any]:
    """A record as the list shows it: the record, its customer (id and name, verbatim) and the occasions it is due
    and overdue on (``follow_up``, ``appointment``), as the desk's due list names them."""
    due, overdue = occasions(record, rules, now)
    return {
        **record_info(record).as_json(),
        "customer": None if record.customer_id is None else {"id": record.customer_id, "name": customer_name},
        "due": sorted({occasion.split(":", 1)[0] for occasion in due}),
        "overdue": sorted({occasion.split(":", 2)[1] for occasion in overdue}),
    }


class RecordQueue:
    def __init__(self, database: Database, rules: DeskRules, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._database = database
        self._rules = rules
        self._clock = clock

    async def find(self, query: ServiceRecordQuery, *, me: int) -> list[dict[str, Any]]:
        """One page of records as ``query`` asks; ``me``: the user ``assigned_to=me`` names."""
        now = self._clock()
        also = []
        if query.due == "due":
            also.append(due_condition(self._rules, now))
        elif query.due == "overdue":
            also.append(overdue_condition(self._rules, now))
        async with self._database.session() as session:
            rows = (await session.execute(listing(query, me=me, also=also))).all()
            return [queue_item(record, name, self._rules, now) for record, name in rows]
