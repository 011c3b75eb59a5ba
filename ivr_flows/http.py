"""HTTP handlers of the flows API: call FlowsService, serialise. Managing flows is an admin's job."""

from __future__ import annotations

import re

from aiohttp import web

from callcenter.auth.permissions import Permission, requires
from callcenter.web.errors import ApiError, NotFound
from ivr_flows.keys import FLOWS
from ivr_flows.services import UnknownFlow

flow_routes = web.RouteTableDef()

_FLOW_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")


class FlowsInvalid(ApiError):
    status = 422
    error_id = "flows_invalid"


@flow_routes.get("/api/v1/flows")
@requires(Permission.FLOWS_MANAGE)
async def list_flows(request: web.Request) -> web.Response:
    listing = await request.config_dict[FLOWS].listing()
    return web.json_response(listing.as_json())


@flow_routes.post("/api/v1/flows/reload")
@requires(Permission.FLOWS_MANAGE)
async def reload_flows(request: web.Request) -> web.Response:
    result = await request.config_dict[FLOWS].reload("api")
    if not result.ok:
        raise FlowsInvalid(
            f"the flow files have {len(result.issues)} problem(s); the running flows stay",
            result.as_json(),
        )
    return web.json_response(result.as_json())


@flow_routes.get("/api/v1/flows/{name}/graph")
@requires(Permission.FLOWS_MANAGE)
async def flow_graph(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if _FLOW_NAME.fullmatch(name) is None:
        raise NotFound("no such flow", {"name": name[:64]})
    try:
        mermaid = request.config_dict[FLOWS].graph(name)
    except UnknownFlow as exc:
        raise NotFound("no such flow", {"name": name}) from exc
    return web.Response(text=mermaid, content_type="text/vnd.mermaid", charset="utf-8")
