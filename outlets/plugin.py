"""The service outlets as a plugin (:class:`callcenter.plugin.Plugin`): outlets, the work orders dispatched to them
from repair and installation bookings, the outlets' feedback, fee settlements and evaluations.

It subscribes to nothing and runs no task: its work is the API's. What it needs of a service record comes through
the CRM's port (:class:`crm_bridge.ports.ServiceRecordDesk`), handed over by the composition root.
"""

from __future__ import annotations

from aiohttp import web

from callcenter.plugin import Core
from crm_bridge.ports import ServiceRecordDesk
from outlets.http import outlet_routes
from outlets.keys import OUTLETS
from outlets.services import OutletService


class OutletsPlugin:
    name = "outlets"

    def __init__(self, core: Core, *, records: ServiceRecordDesk) -> None:
        """``records``: the CRM's service records as the orders need them (their facts, their lifecycle)."""
        self.outlets = OutletService(core.database, records, core.bus)

    def install(self, app: web.Application) -> None:
        app[OUTLETS] = self.outlets
        app.add_routes(outlet_routes)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
