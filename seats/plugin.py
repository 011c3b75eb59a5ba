"""The seats as a plugin (:class:`callcenter.plugin.Plugin`): agents log in to queues, pause and resume.

After every resync of the live model the seats the database says are logged in are put back into Asterisk's
queues (an Asterisk restart forgets dynamic members). A seat's changes of state go to the pages of the person on
it (:meth:`seats.reads.SeatReads.person_at`), never to whoever has its extension.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from callcenter.db import DatabaseError, DatabaseUnavailable
from callcenter.events import AgentStateChanged, LiveResynced
from callcenter.plugin import Core
from seats.http import seat_routes
from seats.keys import SEATS
from seats.reads import SeatReads
from seats.services import SeatService

log = logging.getLogger("callcenter.seats")


class SeatsPlugin:
    name = "seats"

    def __init__(self, core: Core, *, reads: SeatReads) -> None:
        """``reads``: the seats' read side, shared with the other features (its last listing serves an outage)."""
        live = core.live
        self._bus = core.bus
        self._hub = core.hub
        self._reads = reads
        self.seats = SeatService(
            core.database, core.auth, core.config, lambda: live.connection, lambda: live.model, changed=reads.forget
        )
        self._unsubscribe: list[Callable[[], None]] = []
        # The state frames of one seat must reach its page in the order they happened: each notice waits for the
        # one before (asyncio.Lock wakes its waiters first come, first served).
        self._in_order = asyncio.Lock()

    def install(self, app: web.Application) -> None:
        app[SEATS] = self.seats
        app.add_routes(seat_routes)

    async def start(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(LiveResynced, self._restore),
            self._bus.subscribe(AgentStateChanged, self._notify),
        ]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    async def _notify(self, event: AgentStateChanged) -> None:
        """Tells the person on the seat when it changes state."""
        interface = event.agent
        if not interface.startswith("PJSIP/"):
            return
        async with self._in_order:
            try:
                person = await self._reads.person_at(interface)
            except DatabaseError as exc:
                log.info("seat state of %s not sent: who is on it cannot be read: %s", interface, exc)
                return
            if person is not None:
                frame = {"agent": interface, "state": str(event.new), "since": event.since, "reason": event.reason}
                self._hub.send("agent_state", frame, user_id=person)

    async def _restore(self, _event: LiveResynced) -> None:
        try:
            await self.seats.restore()
        except DatabaseUnavailable as exc:
            # Said once per outage by the database; Asterisk keeps the members it has (persistentmembers).
            log.info("seats not restored after the resync: %s", exc)
        except Exception:
            log.exception("restoring seats failed")
