"""Wiring of the supervisor package into the engine: the board, listening in and statistics.

:func:`install` is called once by the composition root with what the package needs. Its start-up runs as an
``on_startup`` handler, which aiohttp runs after every ``cleanup_ctx`` (so the database is open and the live
model has started) and its stop as an ``on_shutdown`` handler, before those contexts close. Nothing of the board
depends on having seen the first events: it is built from the live model whenever it is asked for, and today's
figures are read back from the call records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from callcenter.auth.services import AuthService
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import Database, DatabaseError
from callcenter.live import LiveService
from callcenter.metrics import Metrics
from callcenter.web.ws import Hub
from supervisor.board import BoardCollector, BoardService
from supervisor.notifier import BoardNotifier
from supervisor.spy import SpyService
from supervisor.stats import StatsService

if TYPE_CHECKING:
    from callcenter.agi.server import FastAgiServer
    from crm_bridge.outbox import ServiceRecordOutbox

log = logging.getLogger("callcenter.supervisor")

BOARD: web.AppKey[BoardService] = web.AppKey("supervisor_board", BoardService)
BOARD_NOTIFIER: web.AppKey[BoardNotifier] = web.AppKey("supervisor_board_notifier", BoardNotifier)
SPY: web.AppKey[SpyService] = web.AppKey("supervisor_spy", SpyService)
STATS: web.AppKey[StatsService] = web.AppKey("supervisor_stats", StatsService)


def install(
    app: web.Application,
    *,
    config: Config,
    database: Database,
    bus: Bus,
    live: LiveService,
    hub: Hub,
    auth: AuthService,
    metrics: Metrics,
    agi: FastAgiServer | None = None,
    outbox: ServiceRecordOutbox | None = None,
) -> None:
    """Adds the board, spy and statistics services, their routes, their gauges and their start and stop."""
    from supervisor.http import supervisor_routes

    settings = config.supervisor
    zone = ZoneInfo(config.flows.timezone)

    def engine() -> Mapping[str, Any]:
        connection = live.connection
        return {
            "ami_connected": connection.connected,
            "ami_reconnects": connection.stats.reconnects,
            "resyncs": live.resyncs,
            "agi_sessions": agi.active_sessions if agi is not None else None,
            "outbox_pending": outbox.pending if outbox is not None else None,
            "spy_sessions": spy.active,
        }

    board = BoardService(
        database, lambda: live.model, zone=zone, service_level=float(settings.service_level_seconds), engine=engine
    )
    spy = SpyService(
        database,
        auth,
        bus,
        lambda: live.connection,
        lambda: live.model,
        phones=[phone.extension for phone in config.sip.phones],
        ring_timeout=settings.spy_ring_timeout,
    )
    app[BOARD] = board
    app[SPY] = spy
    app[STATS] = StatsService(
        database,
        zone=zone,
        service_level=float(settings.service_level_seconds),
        wrapup_for=lambda queue: float(config.queues.wrapup_for(queue)),
        max_days=settings.stats_max_days,
    )
    app[BOARD_NOTIFIER] = BoardNotifier(
        board, hub, bus, interval=settings.board_interval, refresh=settings.board_refresh
    )

    def extra() -> dict[str, float]:
        values = {"callcenter_spy_sessions_active": float(spy.active)}
        if outbox is not None:
            values["callcenter_crm_outbox_pending"] = float(outbox.pending)
        return values

    metrics.registry.register(BoardCollector(board, extra))
    app.add_routes(supervisor_routes)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)


async def _start(app: web.Application) -> None:
    board = app[BOARD]
    app[BOARD_NOTIFIER].start()
    app[SPY].start()
    try:
        await board.load_directory()
        counted = await board.load_today()
    except DatabaseError as exc:
        # The board still shows the live model; today's figures fill in as calls are recorded.
        log.warning("board: today's call records could not be read: %s", exc)
        return
    log.info("board: %d seats, %d of today's calls", len(board.directory), counted)


async def _stop(app: web.Application) -> None:
    await app[BOARD_NOTIFIER].close()
    await app[SPY].close()
    await app[BOARD].close()
