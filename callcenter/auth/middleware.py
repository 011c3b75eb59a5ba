"""Who is calling, and may they: the middleware that enforces every route's ``@requires`` / ``@public``.

A session token comes in the ``Authorization: Bearer`` header (API clients) or the HttpOnly ``cc_session``
cookie (the pages; SameSite=Strict keeps other sites from riding on it).

SameSite does not separate origins of the same site (another port on 127.0.0.1, a sibling subdomain), so a
state-changing request carried by the cookie must also come from this server's own origin: its ``Origin``
header, when sent, names this scheme://host, and ``Sec-Fetch-Site``, when sent, says ``same-origin`` or
``none``. Bearer-token requests are exempt (a browser never adds that header on its own), and public routes
(the login) get the same check whenever the browser says where the request comes from.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from yarl import URL

from callcenter.auth.exceptions import NotLoggedIn, RouteAccessUndeclared
from callcenter.auth.permissions import AccessRule, required_permissions, route_rule
from callcenter.auth.services import Principal
from callcenter.db import DatabaseUnavailable
from callcenter.keys import AUTH, CONFIG
from callcenter.web.errors import Forbidden, Handler, Unavailable

log = logging.getLogger("callcenter.auth")

COOKIE_NAME = "cc_session"
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("callcenter_principal")
SESSION_TOKEN: web.RequestKey[str] = web.RequestKey("callcenter_session_token")

UNSAFE_METHODS = frozenset({hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_PATCH, hdrs.METH_DELETE})
# "none" is a navigation the user started (typed URL, bookmark); browsers send it only on safe requests anyway.
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})


class UndeclaredRoutes(RuntimeError):
    """Raised at start-up when a route has neither ``@requires`` nor ``@public``."""


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def token_from(request: web.Request) -> str | None:
    """The session token of a request: the bearer header first, then the cookie."""
    bearer = bearer_token(request)
    if bearer is not None:
        return bearer
    cookie = request.cookies.get(COOKIE_NAME, "").strip()
    return cookie or None


def _origin_of(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def _own_origins(request: web.Request) -> set[tuple[str, str, int | None]]:
    # The Host header itself: request.host would fall back to socket.getfqdn(), a blocking lookup. Browsers
    # always send Host, so a request without one has no origin that could match.
    host = request.headers.get(hdrs.HOST, "").strip()
    if not host:
        return set()
    schemes = {request.scheme}
    config = request.config_dict.get(CONFIG)
    if config is not None and config.web.secure_cookies:
        # Served behind a TLS proxy: the browser says https while this server sees plain http.
        schemes.add("https")
    try:
        return {_origin_of(URL.build(scheme=scheme, authority=host)) for scheme in schemes}
    except ValueError:
        return set()


def check_same_origin(request: web.Request) -> None:
    """Forbidden when the browser reports that the request comes from another origin than this server's."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None:
        try:
            claimed = _origin_of(URL(origin.strip()))
        except ValueError:
            claimed = None
        if claimed is None or claimed not in _own_origins(request):
            raise Forbidden(
                "cross-origin request refused: the Origin header does not match this server",
                {"origin": origin[:200]},
            )
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in SAME_ORIGIN_FETCH_SITES:
        raise Forbidden(
            "cross-origin request refused: the browser reports it comes from another site or origin",
            {"sec_fetch_site": fetch_site[:50]},
        )


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
    elif request.method in UNSAFE_METHODS:
        # A public state change (the login) needs no cookie, but a foreign page must not make one either.
        check_same_origin(request)
    try:
        return await handler(request)
    except DatabaseUnavailable as exc:
        raise Unavailable("the database is unavailable; try again shortly") from exc


async def _admit(request: web.Request, rule: AccessRule) -> None:
    token = token_from(request)
    if token is None:
        raise NotLoggedIn()
    if request.method in UNSAFE_METHODS and bearer_token(request) is None:
        # Carried by the cookie, which the browser adds on its own: only this server's pages may use it so.
        check_same_origin(request)
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
