"""Callback visits other packages' events call for: after an outlet's work order is done (``WorkOrderDone``), the
desk calls the customer to ask how the repair went.

The visit is written through the CRM's outbox with an idempotency key made from the order, so it is written once
even when the event comes twice or the database is down for a while (the outbox keeps it until it is back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from callcenter.bus import Bus
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.visits import SYSTEM_ACTOR, Visits
from outlets.events import WorkOrderDone

log = logging.getLogger("crm_bridge.visit_notifier")


class RepairVisits:
    def __init__(self, visits: Visits, outbox: ServiceRecordOutbox, bus: Bus) -> None:
        self._visits = visits
        self._outbox = outbox
        self._bus = bus
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self._bus.subscribe(WorkOrderDone, self._on_done)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _on_done(self, event: WorkOrderDone) -> None:
        data = await self._visits.repair_visit(event.order_id, event.service_record_id, event.customer_id)
        result = await self._outbox.submit(data, actor=SYSTEM_ACTOR)
        if result.created:
            log.info("callback visit filed after work order %s", event.order_id)
