"""The composition root: every long-lived object is built here from the config and handed to whoever needs it.

No other module creates engines, servers or registries of its own; feature packages are wired here and only here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from callcenter import adapters, health
from callcenter.agi.server import FastAgiServer, Handler, ServerLimits
from callcenter.ami.connection import AmiConnection
from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import auth_middleware, check_routes_declared
from callcenter.auth.services import AuthService
from callcenter.bus import Bus, Event
from callcenter.calls.callbacks import CallbackService
from callcenter.calls.handoff import HandoffService
from callcenter.calls.http import call_routes
from callcenter.calls.service import CallRecorder
from callcenter.config import Config
from callcenter.db import Database
from callcenter.dialplan import ROUTE_IVR
from callcenter.keys import (
    AGI_SERVER,
    AUTH,
    BUS,
    CALL_SERVICE_RECORDS,
    CALLBACKS,
    CALLS,
    CONFIG,
    CRM,
    CRM_OUTBOX,
    DATABASE,
    HANDOFF,
    HUB,
    LIVE,
    METRICS,
    RECORDING_CONTROL,
    RECORDINGS,
    SCREEN_POP,
    SEATS,
)
from callcenter.live import LiveService
from callcenter.metrics import Metrics
from callcenter.openapi import openapi_routes
from callcenter.seats.http import seat_routes
from callcenter.seats.services import SeatService
from callcenter.secrets import ami_secret
from callcenter.web.errors import error_middleware
from callcenter.web.pages import page_routes
from callcenter.web.ws import Hub, seat_notifier, ws_routes
from crm_bridge.from_calls import CallServiceRecords
from crm_bridge.http import crm_routes
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.phones import PhoneRules
from crm_bridge.screenpop import ScreenPop
from crm_bridge.services import CrmService
from recordings.control import RecordingControl, RecordingRules
from recordings.control_http import recording_control_routes
from recordings.http import recordings_routes
from recordings.plugin import build_recordings, recordings_ctx

if TYPE_CHECKING:
    from ivr_flows.ports import Clock, FlowPorts
    from ivr_flows.services import FlowsService

log = logging.getLogger("callcenter.app")

# Seconds the engine waits at shutdown for event subscribers still running before it closes the database.
SHUTDOWN_DRAIN_SECONDS = 5.0


def build_flows(config: Config, bus: Bus, ports: FlowPorts, *, clock: Clock | None = None) -> FlowsService:
    """The IVR flows from ``[flows]``, checked now: an engine whose flows are broken does not start."""
    from ivr_flows.route import build_ivr_route
    from ivr_flows.services import FlowsService

    route = build_ivr_route(config, bus=bus, ports=ports, clock=clock)
    return FlowsService(route, bus=bus, prepare_prompts=config.flows.prepare_prompts)


def default_routes(flows: FlowsService) -> dict[str, Handler]:
    """The FastAGI routes of the engine. Feature packages are imported here, in the composition root."""
    return {ROUTE_IVR: flows.route}


def build_app(
    config: Config,
    *,
    agi_routes: Mapping[str, Handler] | None = None,
    bus: Bus | None = None,
    clock: Clock | None = None,
    flow_ports: FlowPorts | None = None,
) -> web.Application:
    """The engine. ``clock`` is the flows' clock (tests set the time of day); ``flow_ports`` replaces the
    adapters the flows get by default (callcenter.adapters)."""
    from ivr_flows import plugin as flows_plugin
    from supervisor import plugin as supervisor_plugin

    bus = bus or Bus()
    metrics = Metrics()
    database = Database(config.database_url, echo=config.database.echo)
    agi = FastAgiServer(
        agi_routes if agi_routes is not None else {},
        config.agi.host,
        config.agi.port,
        ServerLimits(
            read_timeout=config.agi.read_timeout,
            command_timeout=config.agi.command_timeout,
            max_sessions=config.agi.max_sessions,
            max_header_lines=config.agi.max_header_lines,
        ),
        observer=metrics,
    )
    auth = AuthService(database, config.auth, metrics=metrics)

    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=1024**2)
    app[CONFIG] = config
    app[BUS] = bus
    app[METRICS] = metrics
    app[DATABASE] = database
    app[AGI_SERVER] = agi
    app[AUTH] = auth
    crm = CrmService(database, rules=_phone_rules(config), audit=auth)
    app[CRM] = crm
    app[CRM_OUTBOX] = ServiceRecordOutbox(crm, config.data_dir / "outbox", retry_max=config.crm.outbox_retry_max)
    secret = ami_secret(config)
    wrapup = {
        config.queues.general: float(config.queues.wrapup_for(config.queues.general)),
        config.queues.expert: float(config.queues.wrapup_for(config.queues.expert)),
    }
    live = LiveService(lambda **handlers: AmiConnection.from_config(config.ami, secret, **handlers), bus, wrapup=wrapup)
    app[LIVE] = live
    metrics.watch_ami(live)
    app[HUB] = hub = Hub()
    bus.subscribe("agent.state_changed", seat_notifier(hub))
    app[SEATS] = SeatService(database, auth, config, lambda: live.connection, lambda: live.model)
    app[CALLS] = CallRecorder(
        database,
        bus,
        lambda: live.model,
        cel_log=config.cel_log,
        expert_queue=config.queues.expert,
        horizon_file=config.data_dir / "cel-horizon",
        reconcile_interval=config.calls.reconcile_interval,
    )
    app[HANDOFF] = HandoffService(database, bus, auth, config, lambda: live.connection, lambda: live.model)
    app[CALLBACKS] = CallbackService(config, bus, auth, app[CALLS], lambda: live.connection, lambda: live.model)
    app[RECORDINGS] = build_recordings(config, database, auth)
    app[RECORDING_CONTROL] = RecordingControl(
        app[RECORDINGS],
        database,
        bus,
        lambda: live.connection,
        lambda: live.model,
        rules=RecordingRules(config.recordings.record_tiers, config.recordings.record_queues),
        tier=crm.best_tier,
    )
    ports = flow_ports or adapters.flow_ports(
        crm=crm, outbox=app[CRM_OUTBOX], recordings=app[RECORDINGS], recording=app[RECORDING_CONTROL]
    )
    flows = build_flows(config, bus, ports, clock=clock)
    if agi_routes is None:
        for name, handler in default_routes(flows).items():
            agi.add_route(name, handler)
    app[SCREEN_POP] = ScreenPop(crm, database, bus, hub, lambda: live.model, expert_queue=config.queues.expert)
    app[CALL_SERVICE_RECORDS] = CallServiceRecords(crm, app[CRM_OUTBOX], database, bus, lambda: live.model)

    app.add_routes(health.routes)
    app.add_routes(openapi_routes)
    app.add_routes(auth_routes)
    app.add_routes(seat_routes)
    app.add_routes(ws_routes)
    app.add_routes(call_routes)
    app.add_routes(crm_routes)
    app.add_routes(recordings_routes)
    app.add_routes(page_routes)
    app.add_routes(recording_control_routes)
    flows_plugin.install(app, flows)
    supervisor_plugin.install(
        app,
        config=config,
        database=database,
        bus=bus,
        live=live,
        hub=hub,
        auth=auth,
        metrics=metrics,
        agi=agi,
        outbox=app[CRM_OUTBOX],
    )
    # A route that forgot to declare its permission stops the engine here, not in production.
    check_routes_declared(app)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_crm_ctx)
    app.cleanup_ctx.append(_calls_ctx)
    app.cleanup_ctx.append(recordings_ctx)
    app.cleanup_ctx.append(_live_ctx)
    app.cleanup_ctx.append(_agi_ctx)
    return app


def request_reload(app: web.Application) -> None:
    """What SIGHUP does: reload what may change without a restart (the IVR flows; broken new files are refused
    and the running ones stay)."""
    from ivr_flows.plugin import request_reload as reload_flows

    reload_flows(app, "sighup")


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    database = app[DATABASE]
    config = app[CONFIG]
    await asyncio.to_thread(Path(config.data_dir).mkdir, parents=True, exist_ok=True)
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


def _phone_rules(config: Config) -> PhoneRules:
    crm = config.crm
    return PhoneRules(
        country_code=crm.country_code,
        trunk_prefix=crm.trunk_prefix,
        international_prefix=crm.international_prefix,
        area_code=crm.area_code,
        local_max_digits=crm.local_max_digits,
        national_max_digits=crm.national_max_digits,
    )


async def _crm_ctx(app: web.Application) -> AsyncIterator[None]:
    """The service-record outbox: replays what an earlier run left, then writes what waits whenever it can."""
    outbox = app[CRM_OUTBOX]
    outbox.start()
    yield
    await outbox.close()


async def _calls_ctx(app: web.Application) -> AsyncIterator[None]:
    """Call records, the handoff and seat restoring: started before the AMI connection so that nothing the
    first resync publishes is missed, stopped after it."""
    recorder, handoff, seats, bus = app[CALLS], app[HANDOFF], app[SEATS], app[BUS]
    await recorder.start()
    handoff.start()
    app[SCREEN_POP].start()
    app[RECORDING_CONTROL].start()
    app[CALL_SERVICE_RECORDS].start()
    first = asyncio.Event()

    async def after_resync(_event: Event) -> None:
        try:
            await seats.restore()
        except Exception:
            log.exception("restoring seats failed")
        if not first.is_set():
            first.set()
            await recorder.reconcile()
            await app[RECORDING_CONTROL].recover()

    unsubscribe = bus.subscribe("live.resynced", after_resync)
    yield
    unsubscribe()
    await app[HUB].close()
    app[CALL_SERVICE_RECORDS].close()
    app[SCREEN_POP].close()
    await app[RECORDING_CONTROL].close()
    handoff.close()
    await recorder.close()


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
