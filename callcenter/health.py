"""/healthz and /metrics: what an operator's monitoring reads."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from callcenter.auth.permissions import public
from callcenter.keys import AGI_SERVER, DATABASE, LIVE, METRICS

routes = web.RouteTableDef()


@routes.get("/healthz")
@public
async def healthz(request: web.Request) -> web.Response:
    database_ok = await request.app[DATABASE].ping()
    connection = request.app[LIVE].connection
    problem = connection.last_error or "connecting"
    ami_detail = "connected" if connection.connected else f"not connected: {problem}"
    checks: dict[str, dict[str, Any]] = {
        "fastagi": {
            "ok": request.app[AGI_SERVER].listening,
            "active_sessions": request.app[AGI_SERVER].active_sessions,
        },
        "database": {"ok": database_ok},
        "ami": {"ok": connection.connected, "detail": ami_detail, "reconnects": connection.stats.reconnects},
    }
    healthy = all(check["ok"] for check in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503
    )


@routes.get("/metrics")
@public
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
