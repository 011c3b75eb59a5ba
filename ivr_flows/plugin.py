"""Wiring of the flows into the engine's web application: the service under its key, its routes, its lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ivr_flows.services import FlowsService

FLOWS: web.AppKey[FlowsService] = web.AppKey("ivr_flows", FlowsService)


def install(app: web.Application, service: FlowsService) -> None:
    """Adds the flows service, the ``/api/v1/flows`` routes and the start-up prompt making to ``app``."""
    from ivr_flows.http import flow_routes

    app[FLOWS] = service
    app.add_routes(flow_routes)
    app.cleanup_ctx.append(_flows_ctx)


async def _flows_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[FLOWS]
    await service.start()
    yield
    await service.close()


def request_reload(app: web.Application, trigger: str = "sighup") -> None:
    """What SIGHUP does to a running engine: the flows are reloaded (and kept when the new ones are broken)."""
    service = app.get(FLOWS)
    if service is not None:
        service.request_reload(trigger)
