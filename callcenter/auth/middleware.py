"""Who is calling, and may they: the middleware that enforces every route's ``@requires`` / ``@public``.

A session token comes in the ``Authorization: Bearer`` header (API clients) or the HttpOnly ``cc_session``
cookie (the pages; SameSite=Strict keeps other sites from riding on it).
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web

from callcenter.auth.exceptions import NotLoggedIn, RouteAccessUndeclared
from callcenter.auth.permissions import AccessRule, required_permissions, route_rule
from callcenter.auth.services import Principal
from callcenter.db import DatabaseUnavailable
from callcenter.keys import AUTH
from callcenter.web.errors import Forbidden, Handler, Unavailable

log = logging.getLogger("callcenter.auth")

COOKIE_NAME = "cc_session"
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("callcenter_principal")
SESSION_TOKEN: web.RequestKey[str] = web.RequestKey("callcenter_session_token")


class UndeclaredRoutes(RuntimeError):
    """Raised at start-up when a route has neither ``@requires`` nor ``@public``."""


def token_from(request: web.Request) -> str | None:
    """The session token of a request: the bearer header first, then the cookie."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    cookie = request.cookies.get(COOKIE_NAME, "").strip()
    return cookie or None


def principal(request: web.Request) -> Principal:
    """The logged-in user of a request that passed a ``@requires`` route."""
    if PRINCIPAL not in request:
        raise NotLoggedIn()
    return request[PRINCIPAL]


def optional_principal(request: web.Request) -> Principal | None:
    """The logged-in user, if any (always None on ``@public`` routes: they do not look at tokens)."""
    found: Principal | None = request.get(PRINCIPAL, None)
    return found


def _describe(route: web.AbstractRoute) -> str:
    resource = route.resource
    where = resource.canonical if resource is not None else "?"
    return f"{route.method} {where}"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match_info = request.match_info
    if match_info.http_exception is not None:
        # No such route or method: let the router answer 404/405; there is nothing to protect.
        return await handler(request)
    route = match_info.route
    rule = route_rule(route, request.method)
    if rule is None:
        log.error("refusing %s: the route declares neither @requires nor @public", _describe(route))
        raise RouteAccessUndeclared()
    if not rule.public:
        await _admit(request, rule)
    try:
        return await handler(request)
    except DatabaseUnavailable as exc:
        raise Unavailable("the database is unavailable; try again shortly") from exc


async def _admit(request: web.Request, rule: AccessRule) -> None:
    token = token_from(request)
    if token is None:
        raise NotLoggedIn()
    try:
        found = await request.config_dict[AUTH].authenticate(token)
    except DatabaseUnavailable as exc:
        raise Unavailable("the user database is unavailable; try again shortly") from exc
    if found is None:
        raise NotLoggedIn("the session has expired or was revoked; log in again")
    missing = rule.permissions - found.permissions
    if missing:
        raise Forbidden("you lack the permission this needs", {"missing": sorted(missing)})
    request[PRINCIPAL] = found
    request[SESSION_TOKEN] = token


def _view_declared(view: type[web.View]) -> bool:
    if required_permissions(view) is not None:
        return True
    methods = [name for name in hdrs.METH_ALL if callable(getattr(view, name.lower(), None))]
    return bool(methods) and all(required_permissions(view, name) is not None for name in methods)


def check_routes_declared(app: web.Application) -> None:
    """Raises UndeclaredRoutes naming every route (sub-applications included) that lacks an access rule.

    Call it once all routes are added, e.g. at the end of the composition root or in ``on_startup``.
    """
    missing: list[str] = []
    for route in app.router.routes():
        handler = route.handler
        if isinstance(handler, type) and issubclass(handler, web.View):
            declared = _view_declared(handler) or route_rule(route) is not None
        else:
            declared = route_rule(route) is not None
        if not declared:
            missing.append(_describe(route))
    if missing:
        raise UndeclaredRoutes("routes without @requires(...) or @public: " + ", ".join(sorted(set(missing))))
