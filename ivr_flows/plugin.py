"""The voice menus as a plugin (:class:`callcenter.plugin.Plugin`): the flows' FastAGI route, their API and
their start-up (prompts made before the first call), and SIGHUP's reload.

What the flows need of the CRM and the recordings comes in as :class:`ivr_flows.ports.FlowPorts`, filled in by
the composition root (:mod:`callcenter.adapters`).
"""

from __future__ import annotations

from aiohttp import web

from callcenter.dialplan import ROUTE_IVR
from callcenter.plugin import Core
from ivr_flows.http import flow_routes
from ivr_flows.keys import FLOWS
from ivr_flows.ports import Clock, FlowPorts
from ivr_flows.route import build_ivr_route
from ivr_flows.services import FlowsService


class FlowsPlugin:
    name = "ivr_flows"

    def __init__(self, core: Core, ports: FlowPorts, *, clock: Clock | None = None, serve_agi: bool = True) -> None:
        """``clock`` sets the flows' time of day (tests, the demo); ``serve_agi`` False leaves the FastAGI route
        to whoever built the server with routes of their own (tests). A broken flow file stops the engine here."""
        config = core.config
        route = build_ivr_route(config, bus=core.bus, ports=ports, clock=clock)
        self.flows = FlowsService(route, bus=core.bus, prepare_prompts=config.flows.prepare_prompts)
        self._agi = core.agi if serve_agi else None

    def install(self, app: web.Application) -> None:
        app[FLOWS] = self.flows
        app.add_routes(flow_routes)
        if self._agi is not None:
            self._agi.add_route(ROUTE_IVR, self.flows.route)

    async def start(self) -> None:
        await self.flows.start()

    async def stop(self) -> None:
        await self.flows.close()


def request_reload(app: web.Application, trigger: str = "sighup") -> None:
    """What SIGHUP does to a running engine: the flows are reloaded (and kept when the new ones are broken)."""
    service = app.get(FLOWS)
    if service is not None:
        service.request_reload(trigger)
