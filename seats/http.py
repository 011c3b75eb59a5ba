"""HTTP handlers of the seats API: the caller's own seat (``/api/v1/agents/me``) and, for supervisors, all."""

from __future__ import annotations

from aiohttp import web

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.keys import CONFIG
from callcenter.web.errors import read_json
from seats.keys import SEATS
from seats.schemas import PauseIn, SeatLoginIn
from seats.services import MAX_PENALTY, QueueLogin

seat_routes = web.RouteTableDef()


@seat_routes.get("/api/v1/agents")
@requires(Permission.SEATS_READ)
async def list_seats(request: web.Request) -> web.Response:
    seats = await request.config_dict[SEATS].seats()
    return web.json_response({"items": [seat.as_json() for seat in seats]})


@seat_routes.get("/api/v1/agents/pause-reasons")
@requires(Permission.SEATS_OWN)
async def pause_reasons(request: web.Request) -> web.Response:
    """What the seat form offers: the configured pause reasons and the queues this user may log in to."""
    seats = request.config_dict[SEATS]
    return web.json_response(
        {
            "reasons": list(request.config_dict[CONFIG].queues.pause_reasons),
            "queues": sorted(seats.allowed_queues(principal(request))),
            "max_penalty": MAX_PENALTY,
        }
    )


@seat_routes.get("/api/v1/agents/me")
@requires(Permission.SEATS_OWN)
async def my_seat(request: web.Request) -> web.Response:
    seat = await request.config_dict[SEATS].seat(principal(request))
    return web.json_response(seat.as_json())


@seat_routes.post("/api/v1/agents/me/login")
@requires(Permission.SEATS_OWN)
async def login(request: web.Request) -> web.Response:
    body = SeatLoginIn.model_validate(await read_json(request))
    queues = [QueueLogin(item.queue, item.penalty) for item in body.queues]
    seat = await request.config_dict[SEATS].login(principal(request), queues, remote=request.remote)
    return web.json_response(seat.as_json())


@seat_routes.post("/api/v1/agents/me/pause")
@requires(Permission.SEATS_OWN)
async def pause(request: web.Request) -> web.Response:
    body = PauseIn.model_validate(await read_json(request))
    seat = await request.config_dict[SEATS].pause(principal(request), body.reason, remote=request.remote)
    return web.json_response(seat.as_json())


@seat_routes.post("/api/v1/agents/me/unpause")
@requires(Permission.SEATS_OWN)
async def unpause(request: web.Request) -> web.Response:
    seat = await request.config_dict[SEATS].unpause(principal(request), remote=request.remote)
    return web.json_response(seat.as_json())


@seat_routes.post("/api/v1/agents/me/logout")
@requires(Permission.SEATS_OWN)
async def logout(request: web.Request) -> web.Response:
    seat = await request.config_dict[SEATS].logout(principal(request), remote=request.remote)
    return web.json_response(seat.as_json())
