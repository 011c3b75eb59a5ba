"""The seats as a plugin (:class:`callcenter.plugin.Plugin`): agents log in to queues, pause and resume.

After every resync of the live model the seats the database says are logged in are put back into Asterisk's
queues (an Asterisk restart forgets dynamic members).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from callcenter.db import DatabaseUnavailable
from callcenter.events import LiveResynced
from callcenter.plugin import Core
from seats.http import seat_routes
from seats.keys import SEATS
from seats.services import SeatService

log = logging.getLogger("callcenter.seats")


class SeatsPlugin:
    name = "seats"

    def __init__(self, core: Core) -> None:
        live = core.live
        self._bus = core.bus
        self.seats = SeatService(core.database, core.auth, core.config, lambda: live.connection, lambda: live.model)
        self._unsubscribe: Callable[[], None] | None = None

    def install(self, app: web.Application) -> None:
        app[SEATS] = self.seats
        app.add_routes(seat_routes)

    async def start(self) -> None:
        self._unsubscribe = self._bus.subscribe(LiveResynced, self._restore)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    async def _restore(self, _event: LiveResynced) -> None:
        try:
            await self.seats.restore()
        except DatabaseUnavailable as exc:
            # Said once per outage by the database; Asterisk keeps the members it has (persistentmembers).
            log.info("seats not restored after the resync: %s", exc)
        except Exception:
            log.exception("restoring seats failed")
