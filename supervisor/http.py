"""HTTP handlers of the supervisor API: the live board, listening in, and statistics (JSON or CSV)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.web.csvexport import csv_response
from callcenter.web.errors import read_json
from supervisor.keys import BOARD, SPY, STATS
from supervisor.schemas import SpyIn, SpyModeIn, StatsQuery, VolumeQuery
from supervisor.stats import HOURLY_COLUMNS, VOLUME_COLUMNS, WORKLOAD_COLUMNS

supervisor_routes = web.RouteTableDef()

_ALL = "(all)"
_NONE = "(none)"


@supervisor_routes.get("/api/v1/board")
@requires(Permission.SEATS_READ)
async def board(request: web.Request) -> web.Response:
    return web.json_response({"at": datetime.now(UTC).isoformat(), **request.config_dict[BOARD].snapshot()})


@supervisor_routes.post("/api/v1/spy")
@requires(Permission.SPY)
async def start_spy(request: web.Request) -> web.Response:
    body = SpyIn.model_validate(await read_json(request))
    session = await request.config_dict[SPY].begin(principal(request), body.agent, body.mode, remote=request.remote)
    return web.json_response(session.as_json(), status=201)


@supervisor_routes.get("/api/v1/spy")
@requires(Permission.SPY)
async def my_spies(request: web.Request) -> web.Response:
    sessions = request.config_dict[SPY].sessions_of(principal(request))
    return web.json_response({"items": [session.as_json() for session in sessions]})


@supervisor_routes.patch("/api/v1/spy/{session_id}")
@requires(Permission.SPY)
async def change_spy_mode(request: web.Request) -> web.Response:
    body = SpyModeIn.model_validate(await read_json(request))
    session = await request.config_dict[SPY].change_mode(
        principal(request), request.match_info["session_id"], body.mode, remote=request.remote
    )
    return web.json_response(session.as_json())


@supervisor_routes.delete("/api/v1/spy/{session_id}")
@requires(Permission.SPY)
async def stop_spy(request: web.Request) -> web.Response:
    session = await request.config_dict[SPY].stop(
        principal(request), request.match_info["session_id"], remote=request.remote
    )
    return web.json_response(session.as_json())


@supervisor_routes.get("/api/v1/stats/calls")
@requires(Permission.STATS_READ)
async def call_volume(request: web.Request) -> web.Response:
    query = VolumeQuery.model_validate(dict(request.query))
    stats = request.config_dict[STATS]
    start, end = stats.range(query.start, query.end)
    result = await stats.call_volume(start, end, query.interval)
    if query.format == "csv":
        rows = [{**row, "queue": _ALL} for row in result["totals"]]
        rows += [{**row, "queue": row["queue"] or _NONE} for row in result["queues"]]
        return csv_response("call-volume", VOLUME_COLUMNS, rows)
    return web.json_response(result)


@supervisor_routes.get("/api/v1/stats/business")
@requires(Permission.STATS_READ)
async def business_volume(request: web.Request) -> web.Response:
    query = StatsQuery.model_validate(dict(request.query))
    stats = request.config_dict[STATS]
    start, end = stats.range(query.start, query.end)
    result = await stats.business_volume(start, end)
    if query.format == "csv":
        return csv_response("business-volume", ("type", "status", "count"), result["items"])
    return web.json_response(result)


@supervisor_routes.get("/api/v1/stats/agents")
@requires(Permission.STATS_READ)
async def workload(request: web.Request) -> web.Response:
    query = StatsQuery.model_validate(dict(request.query))
    stats = request.config_dict[STATS]
    start, end = stats.range(query.start, query.end)
    result, _ = await stats.workload(start, end)
    if query.format == "csv":
        reasons = sorted({reason for row in result["agents"] for reason in row["pause_by_reason"]})
        columns = [*WORKLOAD_COLUMNS, *(f"pause_{reason}" for reason in reasons)]
        rows = [
            {**row, **{f"pause_{reason}": row["pause_by_reason"].get(reason, 0.0) for reason in reasons}}
            for row in result["agents"]
        ]
        return csv_response("agent-workload", columns, rows)
    return web.json_response(result)


@supervisor_routes.get("/api/v1/stats/agents/hourly")
@requires(Permission.STATS_READ)
async def workload_by_hour(request: web.Request) -> web.Response:
    query = StatsQuery.model_validate(dict(request.query))
    stats = request.config_dict[STATS]
    start, end = stats.range(query.start, query.end)
    header, hours = await stats.workload(start, end)
    if query.format == "csv":
        return csv_response("agent-workload-by-hour", HOURLY_COLUMNS, hours)
    return web.json_response({key: value for key, value in header.items() if key != "agents"} | {"items": hours})
