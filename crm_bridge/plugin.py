"""The CRM as a plugin (:class:`callcenter.plugin.Plugin`): customer files, service records (through a durable
outbox), the screen-pop, the service records calls leave behind, and the service desk's follow-up reminders and
callback visits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from callcenter.config import Config
from callcenter.db import DatabaseError
from callcenter.plugin import Core
from calls.ports import Callbacks, CallHistory, CallRecords
from crm_bridge.desk import Desk, DeskRules, ReminderJob
from crm_bridge.from_calls import CallServiceRecords
from crm_bridge.http import crm_routes
from crm_bridge.keys import (
    CALL_SERVICE_RECORDS,
    CRM,
    CRM_OUTBOX,
    DESK,
    DESK_REMINDERS,
    EVALUATION_ITEMS,
    RECORD_QUEUE,
    SCREEN_POP,
    VISITS,
)
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.phones import PhoneRules
from crm_bridge.record_queue import RecordQueue
from crm_bridge.screenpop import ScreenPop
from crm_bridge.services import CrmService
from crm_bridge.visit_notifier import RepairVisits
from crm_bridge.visits import EvaluationItems, Visits
from seats.ports import SeatDirectory

log = logging.getLogger("crm_bridge.plugin")

# Seconds between refreshes of the customer tiers held for a database outage.
TIER_REFRESH_SECONDS = 300.0


def phone_rules(config: Config) -> PhoneRules:
    """How the numbers of ``[crm]`` are written, for matching a caller ID with a customer's numbers."""
    crm = config.crm
    return PhoneRules(
        country_code=crm.country_code,
        trunk_prefix=crm.trunk_prefix,
        international_prefix=crm.international_prefix,
        area_code=crm.area_code,
        local_max_digits=crm.local_max_digits,
        national_max_digits=crm.national_max_digits,
    )


class CrmPlugin:
    name = "crm"

    def __init__(
        self,
        core: Core,
        *,
        calls: CallRecords,
        history: CallHistory,
        seats: SeatDirectory,
        callbacks: Callbacks | None = None,
    ) -> None:
        """The other features' ports, given by the composition root: the record of a finished call (``calls``, for
        the service records calls leave), a caller's earlier calls (``history``, for the screen-pop), who is on
        which phone (``seats``, whom the screen-pop goes to) and the callbacks the desk places for its visits
        (``callbacks``; without it a visit cannot be placed)."""
        config, live = core.config, core.live
        self.crm = CrmService(core.database, rules=phone_rules(config), audit=core.auth)
        self.outbox = ServiceRecordOutbox(
            self.crm.records, config.data_dir / "outbox", retry_max=config.crm.outbox_retry_max
        )
        self.screen_pop = ScreenPop(
            self.crm,
            core.database,
            core.bus,
            core.hub,
            lambda: live.model,
            history=history,
            seats=seats,
            expert_queue=config.queues.expert,
        )
        self.from_calls = CallServiceRecords(self.crm, self.outbox, calls, core.bus, lambda: live.model)
        desk = config.desk
        zone = ZoneInfo(config.flows.timezone)
        self.desk = Desk(
            core.database,
            DeskRules(
                zone,
                appointment_lead=timedelta(minutes=desk.appointment_lead_minutes),
                appointment_grace=timedelta(minutes=desk.appointment_grace_minutes),
            ),
        )
        self.record_queue = RecordQueue(core.database, self.desk.rules)
        self.visits = Visits(core.database, self.crm.records, callbacks, zone=zone)
        self.evaluation_items = EvaluationItems(core.database)
        self.repair_visits = RepairVisits(self.visits, self.outbox, core.bus)
        self.reminders = ReminderJob(
            core.database,
            self.desk,
            core.hub,
            self.visits,
            interval=desk.reminder_interval,
            complaint_visit_window=timedelta(days=desk.complaint_visit_days),
        )
        self._tiers: asyncio.Task[None] | None = None

    def install(self, app: web.Application) -> None:
        app[CRM] = self.crm
        app[CRM_OUTBOX] = self.outbox
        app[SCREEN_POP] = self.screen_pop
        app[CALL_SERVICE_RECORDS] = self.from_calls
        app[DESK] = self.desk
        app[DESK_REMINDERS] = self.reminders
        app[VISITS] = self.visits
        app[EVALUATION_ITEMS] = self.evaluation_items
        app[RECORD_QUEUE] = self.record_queue
        app.add_routes(crm_routes)

    async def start(self) -> None:
        # The outbox first: it replays what an earlier run left, then writes what waits whenever it can.
        self.outbox.start()
        self.screen_pop.start()
        self.from_calls.start()
        self._tiers = asyncio.get_running_loop().create_task(self._remember_tiers(), name="crm-tiers")
        self.repair_visits.start()
        self.reminders.start()

    async def _remember_tiers(self) -> None:
        """Keeps the priority tiers in memory, so that a caller is queued with the right priority while the
        database is down."""
        while True:
            try:
                count = await self.crm.customers.remember_tiers()
                log.debug("%d numbers of priority customers held for an outage", count)
            except DatabaseError as exc:
                log.debug("customer tiers not refreshed: %s", exc)
            await asyncio.sleep(TIER_REFRESH_SECONDS)

    async def stop(self) -> None:
        await self.reminders.close()
        self.repair_visits.close()
        if self._tiers is not None:
            self._tiers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tiers
        self.from_calls.close()
        self.screen_pop.close()
        await self.outbox.close()
