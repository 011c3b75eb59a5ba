"""The supervisor as a plugin (:class:`callcenter.plugin.Plugin`): the live board, listening in and statistics.

Nothing of the board depends on having seen the first events: it is built from the live model whenever it is
asked for, and today's figures are read back from the call records when the plugin starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from callcenter.auth.directory import UserDirectory
from callcenter.db import DatabaseError
from callcenter.plugin import Core
from calls.ports import CallRecords
from crm_bridge.ports import BusinessVolume
from seats.ports import SeatDirectory, SeatHistory
from supervisor.board import BoardCollector, BoardService
from supervisor.http import supervisor_routes
from supervisor.keys import BOARD, BOARD_NOTIFIER, SPY, STATS
from supervisor.notifier import BoardNotifier
from supervisor.spy import SpyService
from supervisor.stats import StatsService

log = logging.getLogger("callcenter.supervisor")


class SupervisorPlugin:
    name = "supervisor"

    def __init__(
        self,
        core: Core,
        *,
        calls: CallRecords,
        seats: SeatDirectory,
        seat_history: SeatHistory,
        users: UserDirectory,
        business: BusinessVolume | None = None,
        outbox_pending: Callable[[], int] | None = None,
    ) -> None:
        """The ports of the other packages, given by the composition root: the call records (``calls``), who sits
        where and every login and pause (``seats``, ``seat_history``), the CRM's business volume (``business``;
        none without a CRM) and how many service records wait in its outbox (``outbox_pending``, shown on the
        board's engine panel and in /metrics); ``users`` is the core's user directory."""
        config, live, agi = core.config, core.live, core.agi
        settings = config.supervisor
        zone = ZoneInfo(config.flows.timezone)
        self._metrics = core.metrics

        def engine() -> Mapping[str, Any]:
            connection = live.connection
            return {
                "ami_connected": connection.connected,
                "ami_reconnects": connection.stats.reconnects,
                "resyncs": live.resyncs,
                "agi_sessions": agi.active_sessions,
                "outbox_pending": outbox_pending() if outbox_pending is not None else None,
                "spy_sessions": self.spy.active,
            }

        self.board = BoardService(
            calls,
            seats,
            users,
            lambda: live.model,
            zone=zone,
            service_level=float(settings.service_level_seconds),
            engine=engine,
        )
        self.spy = SpyService(
            seats,
            users,
            core.auth,
            core.bus,
            lambda: live.connection,
            lambda: live.model,
            phones=[phone.extension for phone in config.sip.phones],
            ring_timeout=settings.spy_ring_timeout,
        )
        self.stats = StatsService(
            calls,
            seat_history,
            business=business,
            zone=zone,
            service_level=float(settings.service_level_seconds),
            wrapup_for=lambda queue: float(config.queues.wrapup_for(queue)),
            max_days=settings.stats_max_days,
        )
        self.notifier = BoardNotifier(
            self.board, core.hub, core.bus, interval=settings.board_interval, refresh=settings.board_refresh
        )

        def extra() -> dict[str, float]:
            values = {"callcenter_spy_sessions_active": float(self.spy.active)}
            if outbox_pending is not None:
                values["callcenter_crm_outbox_pending"] = float(outbox_pending())
            return values

        self._collector = BoardCollector(self.board, extra)

    def install(self, app: web.Application) -> None:
        app[BOARD] = self.board
        app[SPY] = self.spy
        app[STATS] = self.stats
        app[BOARD_NOTIFIER] = self.notifier
        self._metrics.registry.register(self._collector)
        app.add_routes(supervisor_routes)

    async def start(self) -> None:
        self.notifier.start()
        self.spy.start()
        try:
            await self.board.load_directory()
            counted = await self.board.load_today()
        except DatabaseError as exc:
            # The board still shows the live model; today's figures fill in as calls are recorded.
            log.warning("board: today's call records could not be read: %s", exc)
            return
        log.info("board: %d seats, %d of today's calls", len(self.board.directory), counted)

    async def stop(self) -> None:
        await self.notifier.close()
        await self.spy.close()
        await self.board.close()
