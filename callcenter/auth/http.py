"""HTTP handlers of the auth API: validate, call AuthService, serialise. Nothing else happens here."""

from __future__ import annotations

from aiohttp import web

from callcenter.auth.middleware import COOKIE_NAME, SESSION_TOKEN, principal
from callcenter.auth.permissions import Permission, public, requires
from callcenter.auth.schemas import AuditQuery, LoginIn, UserCreateIn, UserUpdateIn
from callcenter.keys import AUTH, CONFIG
from callcenter.web.errors import read_json

auth_routes = web.RouteTableDef()

# The token is a secret: no proxy or browser cache may keep a response that carries it.
_NO_STORE = {"Cache-Control": "no-store"}


def _secure_cookies(request: web.Request) -> bool:
    config = request.config_dict.get(CONFIG)
    return bool(config is not None and config.web.secure_cookies)


@auth_routes.post("/api/v1/login")
@public
async def login(request: web.Request) -> web.Response:
    body = LoginIn.model_validate(await read_json(request))
    service = request.config_dict[AUTH]
    token, who = await service.login(body.username, body.password, remote=request.remote)
    response = web.json_response(
        {"token": token, "user": who.as_json(), "expires_at": who.expires_at.isoformat()}, headers=_NO_STORE
    )
    response.set_cookie(
        COOKIE_NAME,
        token,
        httponly=True,
        samesite="Strict",
        secure=_secure_cookies(request),
        path="/",
        max_age=int(service.config.token_ttl_hours * 3600),
    )
    return response


@auth_routes.post("/api/v1/logout")
@requires()
async def logout(request: web.Request) -> web.Response:
    await request.config_dict[AUTH].logout(request[SESSION_TOKEN], remote=request.remote)
    response = web.json_response({"logged_out": True}, headers=_NO_STORE)
    response.del_cookie(COOKIE_NAME, path="/", samesite="Strict", secure=_secure_cookies(request))
    return response


@auth_routes.get("/api/v1/me")
@requires()
async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response({**who.as_json(), "expires_at": who.expires_at.isoformat()})


@auth_routes.get("/api/v1/users")
@requires(Permission.USERS_READ)
async def list_users(request: web.Request) -> web.Response:
    users = await request.config_dict[AUTH].list_users()
    return web.json_response({"items": [user.as_json() for user in users]})


@auth_routes.post("/api/v1/users")
@requires(Permission.USERS_MANAGE)
async def create_user(request: web.Request) -> web.Response:
    body = UserCreateIn.model_validate(await read_json(request))
    user = await request.config_dict[AUTH].create_user(
        body.username,
        body.password,
        display_name=body.display_name,
        roles=body.roles,
        extension=body.extension,
        teams=body.teams,
        lead_of=body.lead_of,
        is_active=body.is_active,
        actor=principal(request).username,
        remote=request.remote,
    )
    return web.json_response(user.as_json(), status=201)


@auth_routes.patch("/api/v1/users/{username}")
@requires(Permission.USERS_MANAGE)
async def update_user(request: web.Request) -> web.Response:
    body = UserUpdateIn.model_validate(await read_json(request))
    user = await request.config_dict[AUTH].update_user(
        request.match_info["username"],
        is_active=body.is_active,
        roles=body.roles,
        extension=body.extension,
        actor=principal(request).username,
        remote=request.remote,
    )
    return web.json_response(user.as_json())


@auth_routes.get("/api/v1/audit")
@requires(Permission.AUDIT_READ)
async def audit_log(request: web.Request) -> web.Response:
    query = AuditQuery.model_validate(dict(request.query))
    items, total = await request.config_dict[AUTH].list_audit(
        actor=query.actor,
        action=query.action,
        target=query.target,
        since=query.since,
        until=query.until,
        limit=query.limit,
        offset=query.offset,
    )
    return web.json_response(
        {
            "items": [item.as_json() for item in items],
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
        }
    )
