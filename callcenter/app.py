"""The composition root: every long-lived object is built here from the config and handed to whoever needs it.

It sits above the core and the feature packages (the import contracts in ``.importlinter`` check it): it builds
the :class:`~callcenter.plugin.Core` (database, bus, metrics, auth, live model, websocket hub, FastAGI server),
then each feature's plugin with the core and the ports it needs of the others (:mod:`callcenter.adapters`), and
calls them in the fixed order of :data:`PLUGIN_ORDER` (see :mod:`callcenter.plugin` for what each call does).
No other module creates engines, servers or registries of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from callcenter import adapters, health
from callcenter.agi.server import AccessPolicy, FastAgiServer, Handler, ServerLimits, parse_peers
from callcenter.ami.connection import AmiConnection
from callcenter.auth.directory import UserDirectory
from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.services import AuthService
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import Database, private_directory
from callcenter.keys import AGI_SERVER, AUTH, BUS, CONFIG, CORE, DATABASE, HUB, LIVE, METRICS
from callcenter.live import LiveService
from callcenter.metrics import Metrics
from callcenter.openapi import openapi_routes
from callcenter.plugin import Core, Plugin
from callcenter.secrets import agi_secret, ami_secret
from callcenter.web.errors import error_middleware
from callcenter.web.pages import page_routes
from callcenter.web.ws import Hub, ws_routes
from calls.callback_port import CallbackPort
from calls.plugin import CallsPlugin
from calls.reads import CallReads
from crm_bridge.plugin import CrmPlugin
from crm_bridge.reads import CrmEvaluationItems, CrmReads, CrmRepairVisits, CrmServiceDesk
from ivr_flows.plugin import FlowsPlugin
from ivr_flows.plugin import request_reload as reload_flows
from ivr_flows.ports import Clock, FlowPorts
from outlets.plugin import OutletsPlugin
from outlets.quality_reads import OutletQualityReads
from recordings.plugin import RecordingsPlugin
from seats.plugin import SeatsPlugin
from seats.reads import SeatReads
from supervisor.plugin import SupervisorPlugin

log = logging.getLogger("callcenter.app")

# Seconds the engine waits at shutdown for event subscribers still running before it closes the database.
SHUTDOWN_DRAIN_SECONDS = 5.0

# The order plugins are installed and started in (and stopped in reverse): the owners of data before the
# packages that read it (calls before the CRM, whose service records follow the call records; the outlets after
# the CRM, whose records their work orders are made of; the recordings before the flows, which file voicemails in
# them; the supervisor, which reads all of them, last). After each
# resync every plugin checks its own state beside Asterisk on its own (seats put back into the queues, calls
# reconciled, running recordings found); none of these depends on another's.
PLUGIN_ORDER = ("seats", "calls", "crm", "outlets", "recordings", "ivr_flows", "supervisor")

PLUGINS: web.AppKey[tuple[Plugin, ...]] = web.AppKey("plugins")


def build_core(config: Config, *, bus: Bus | None = None, agi_routes: Mapping[str, Handler] | None = None) -> Core:
    """The core's parts, one of each; nothing is opened or started yet."""
    bus = bus or Bus()
    metrics = Metrics()
    database = Database(config.database_url, echo=config.database.echo)
    agi = FastAgiServer(
        dict(agi_routes or {}),
        config.agi.host,
        config.agi.port,
        ServerLimits(
            read_timeout=config.agi.read_timeout,
            command_timeout=config.agi.command_timeout,
            max_sessions=config.agi.max_sessions,
            max_header_lines=config.agi.max_header_lines,
            header_timeout=config.agi.header_timeout,
            max_pending_per_peer=config.agi.pending_per_peer,
        ),
        observer=metrics,
        access=AccessPolicy(parse_peers(config.agi.allowed_peers), agi_secret(config)),
    )
    secret = ami_secret(config)
    wrapup = {
        config.queues.general: float(config.queues.wrapup_for(config.queues.general)),
        config.queues.expert: float(config.queues.wrapup_for(config.queues.expert)),
    }
    live = LiveService(
        lambda **handlers: AmiConnection.from_config(config.ami, secret, **handlers),
        bus,
        wrapup=wrapup,
        max_channels=config.ami.max_channels,
    )
    metrics.watch_ami(live)
    return Core(
        config=config,
        bus=bus,
        database=database,
        metrics=metrics,
        auth=AuthService(database, config.auth, metrics=metrics),
        live=live,
        hub=Hub(),
        agi=agi,
    )


def build_plugins(
    core: Core, *, clock: Clock | None = None, flow_ports: FlowPorts | None = None, serve_agi: bool = True
) -> tuple[Plugin, ...]:
    """Every feature's plugin, in :data:`PLUGIN_ORDER`, each given the ports it needs of the others.

    The read ports are the owners' own implementations over their tables (``<package>.reads``): the call records
    and a caller's earlier calls (calls), who sits where and every login and pause (seats), the business volume
    and the service records work orders are made of (the CRM); the user directory is the core's."""
    call_reads = CallReads(core.database)
    seat_reads = SeatReads(core.database)
    seats = SeatsPlugin(core, reads=seat_reads)
    calls = CallsPlugin(core, seats=seat_reads)
    crm = CrmPlugin(
        core, calls=call_reads, history=call_reads, seats=seat_reads, callbacks=CallbackPort(calls.callbacks)
    )
    outlets = OutletsPlugin(core, records=CrmServiceDesk(core.database, crm.crm.records))
    recordings = RecordingsPlugin(
        core,
        seats=seat_reads,
        calls=call_reads,
        tier=crm.crm.customers.best_tier,
        items=CrmEvaluationItems(core.database),
        users=UserDirectory(core.database),
        outlets=OutletQualityReads(core.database),
        repairs=CrmRepairVisits(core.database),
    )
    ports = flow_ports or adapters.flow_ports(
        crm=crm.crm, outbox=crm.outbox, recordings=recordings.recordings, recording=recordings.control
    )
    flows = FlowsPlugin(core, ports, clock=clock, serve_agi=serve_agi)
    supervisor = SupervisorPlugin(
        core,
        calls=call_reads,
        seats=seat_reads,
        seat_history=seat_reads,
        users=UserDirectory(core.database),
        business=CrmReads(core.database),
        outbox_pending=lambda: crm.outbox.pending,
    )
    plugins: tuple[Plugin, ...] = (seats, calls, crm, outlets, recordings, flows, supervisor)
    assert tuple(plugin.name for plugin in plugins) == PLUGIN_ORDER
    return plugins


def build_app(
    config: Config,
    *,
    agi_routes: Mapping[str, Handler] | None = None,
    bus: Bus | None = None,
    clock: Clock | None = None,
    flow_ports: FlowPorts | None = None,
) -> web.Application:
    """The engine. ``agi_routes`` replaces the FastAGI routes (tests); ``clock`` is the flows' clock (tests set
    the time of day); ``flow_ports`` replaces the adapters the flows get by default (:mod:`callcenter.adapters`).
    A broken flow file or a route without a declared permission stops it here."""
    core = build_core(config, bus=bus, agi_routes=agi_routes)
    plugins = build_plugins(core, clock=clock, flow_ports=flow_ports, serve_agi=agi_routes is None)

    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=1024**2)
    app[CORE] = core
    app[CONFIG] = config
    app[BUS] = core.bus
    app[METRICS] = core.metrics
    app[DATABASE] = core.database
    app[AGI_SERVER] = core.agi
    app[AUTH] = core.auth
    app[LIVE] = core.live
    app[HUB] = core.hub
    app[PLUGINS] = plugins
    app.add_routes(health.routes)
    app.add_routes(openapi_routes)
    app.add_routes(auth_routes)
    app.add_routes(ws_routes)
    app.add_routes(page_routes)
    for plugin in plugins:
        plugin.install(app)
    # A route that forgot to declare its permission stops the engine here, not in production.
    check_routes_declared(app)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_plugins_ctx)
    app.cleanup_ctx.append(_live_ctx)
    app.cleanup_ctx.append(_agi_ctx)
    return app


def request_reload(app: web.Application) -> None:
    """What SIGHUP does: reload what may change without a restart (the IVR flows; broken new files are refused
    and the running ones stay)."""
    reload_flows(app, "sighup")


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    database = app[DATABASE]
    config = app[CONFIG]
    # The data directory holds the database, the journals and the secrets: its owner's alone (0700).
    await asyncio.to_thread(private_directory, Path(config.data_dir))
    await database.open()
    yield
    # The other parts have stopped (this context is torn down last). Subscribers still running, such as a seat
    # restore after a late resync, finish on the database they started with: closed under them, their
    # connections would be left to the garbage collector.
    try:
        await asyncio.wait_for(app[BUS].drain(), SHUTDOWN_DRAIN_SECONDS)
    except TimeoutError:
        log.warning("event subscribers still running after %s s; closing the database anyway", SHUTDOWN_DRAIN_SECONDS)
    await database.close()


async def _plugins_ctx(app: web.Application) -> AsyncIterator[None]:
    """Starts the plugins in order before the AMI connection, so that nothing the first resync publishes is
    missed, and stops them in reverse after it."""
    started: list[Plugin] = []
    try:
        for plugin in app[PLUGINS]:
            # Stopped too if its start fails half-way: what it did start (a task, a subscription) ends.
            started.append(plugin)
            await plugin.start()
        yield
    finally:
        await app[HUB].close()
        await _stop(started)


async def _stop(plugins: Sequence[Plugin]) -> None:
    for plugin in reversed(plugins):
        try:
            await plugin.stop()
        except Exception:
            log.exception("stopping %s failed", plugin.name)


async def _live_ctx(app: web.Application) -> AsyncIterator[None]:
    live = app[LIVE]
    await live.start()
    yield
    await live.close()


async def _agi_ctx(app: web.Application) -> AsyncIterator[None]:
    server = app[AGI_SERVER]
    await server.start()
    yield
    await server.stop()


async def serve(config: Config, *, stop: asyncio.Event | None = None, app: web.Application | None = None) -> None:
    """Runs the engine (web server, FastAGI and everything wired to them) until ``stop`` is set."""
    app = app or build_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.web.host, config.web.port, reuse_address=True)
    await site.start()
    log.info("web server on http://%s:%s", config.web.host, config.web.port)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
