"""Roles, permissions and the access declarations on handlers (pure: no database, no server)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from callcenter.auth.middleware import UndeclaredRoutes, check_routes_declared, check_same_origin
from callcenter.auth.permissions import (
    ROLE_PERMISSIONS,
    AccessRule,
    Permission,
    Role,
    permissions_for,
    public,
    required_permissions,
    requires,
    route_rule,
)
from callcenter.config import Config, WebConfig
from callcenter.keys import CONFIG
from callcenter.web.errors import Forbidden


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


def test_public_returns_the_same_function_so_it_can_sit_under_a_route_decorator() -> None:
    routes = web.RouteTableDef()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response()

    registered = routes.get("/healthz")(public(healthz))
    assert registered is healthz
    assert required_permissions(healthz) == AccessRule(public=True)
    (route,) = list(routes)
    assert isinstance(route, web.RouteDef)
    assert required_permissions(route.handler) == AccessRule(public=True)


def test_requires_records_every_listed_permission() -> None:
    async def board(request: web.Request) -> web.Response:
        return web.Response()

    decorated = requires(Permission.SEATS_READ, Permission.QUEUES_READ)(board)
    assert decorated is board
    rule = required_permissions(board)
    assert rule == AccessRule(public=False, permissions=frozenset({Permission.SEATS_READ, Permission.QUEUES_READ}))


def test_requires_with_no_permission_means_any_logged_in_user() -> None:
    async def me(request: web.Request) -> web.Response:
        return web.Response()

    assert required_permissions(requires()(me)) == AccessRule(public=False, permissions=frozenset())


def test_requires_refuses_plain_strings() -> None:
    with pytest.raises(TypeError):
        requires("users.read")  # type: ignore[arg-type]


def test_conflicting_declarations_are_an_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    requires(Permission.SPY)(handler)
    requires(Permission.SPY)(handler)  # the same twice is harmless
    with pytest.raises(TypeError):
        public(handler)


def test_undeclared_handler_has_no_rule() -> None:
    async def forgotten(request: web.Request) -> web.Response:
        return web.Response()

    assert required_permissions(forgotten) is None


def test_class_based_views_are_declared_per_method() -> None:
    class Recordings(web.View):
        @requires(Permission.RECORDINGS_SEARCH)
        async def get(self) -> web.Response:
            return web.Response()

        @requires(Permission.RECORDINGS_CONTROL)
        async def post(self) -> web.Response:
            return web.Response()

    assert required_permissions(Recordings, "GET") == AccessRule(False, frozenset({Permission.RECORDINGS_SEARCH}))
    assert required_permissions(Recordings, "POST") == AccessRule(False, frozenset({Permission.RECORDINGS_CONTROL}))
    app = web.Application()
    app.router.add_view("/recordings", Recordings)
    check_routes_declared(app)


def test_static_directories_are_declared_on_the_resource(tmp_path: object) -> None:
    app = web.Application()
    resource = app.router.add_static("/assets", str(tmp_path))
    with pytest.raises(UndeclaredRoutes, match="/assets"):
        check_routes_declared(app)
    public(resource)
    check_routes_declared(app)
    assert all(route_rule(route) == AccessRule(public=True) for route in app.router.routes())


def test_check_routes_declared_names_every_offender_including_sub_applications() -> None:
    app = web.Application()
    app.router.add_get("/declared", public(_handler))

    async def loose(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/loose", loose)
    sub = web.Application()

    async def nested(request: web.Request) -> web.Response:
        return web.Response()

    sub.router.add_get("/nested", nested)
    app.add_subapp("/sub", sub)
    with pytest.raises(UndeclaredRoutes) as raised:
        check_routes_declared(app)
    assert "POST /loose" in str(raised.value)
    assert "GET /sub/nested" in str(raised.value)
    assert "/declared" not in str(raised.value)


def test_every_role_has_permissions_and_every_permission_a_role() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    granted = set().union(*ROLE_PERMISSIONS.values())
    assert granted == set(Permission)


@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        (Role.AGENT, {Permission.SEATS_OWN, Permission.CALLS_TRANSFER_EXPERT}, {Permission.SPY, Permission.USERS_READ}),
        (Role.EXPERT, {Permission.SEATS_OWN, Permission.CUSTOMERS_READ}, {Permission.CALLS_TRANSFER_EXPERT}),
        (Role.SUPERVISOR, {Permission.SPY, Permission.SEATS_READ, Permission.STATS_READ}, {Permission.USERS_MANAGE}),
        (Role.QA, {Permission.RECORDINGS_SEARCH, Permission.RECORDINGS_PLAY_ALL}, {Permission.SPY}),
        (
            Role.ADMIN,
            {Permission.USERS_MANAGE, Permission.AUDIT_READ},
            {Permission.SPY, Permission.RECORDINGS_PLAY_ALL},
        ),
        (
            Role.BACKOFFICE,
            {Permission.DESK_WORK, Permission.OUTLETS_MANAGE, Permission.FEES_REVIEW},
            {Permission.SPY, Permission.RECORDINGS_PLAY_ALL, Permission.SEATS_OWN, Permission.USERS_MANAGE},
        ),
    ],
)
def test_role_permissions_follow_the_design(role: Role, allowed: set[Permission], denied: set[Permission]) -> None:
    assert allowed <= ROLE_PERMISSIONS[role]
    assert not denied & ROLE_PERMISSIONS[role]


def test_permissions_for_several_roles_is_the_union_and_ignores_unknown_names() -> None:
    combined = permissions_for([Role.AGENT, "qa", "no-such-role"])
    assert combined == ROLE_PERMISSIONS[Role.AGENT] | ROLE_PERMISSIONS[Role.QA]
    assert permissions_for([]) == frozenset()


def test_permission_values_are_stable_strings() -> None:
    assert Permission.USERS_READ == "users.read"
    assert Permission.RECORDINGS_PLAY_OWN == "recordings.play_own"
    assert Permission.FLOWS_MANAGE == "flows.manage"
    assert [role.value for role in Role] == ["agent", "expert", "supervisor", "qa", "admin", "backoffice"]


def _post(headers: dict[str, str], *, secure_cookies: bool = False) -> web.Request:
    app = web.Application()
    app[CONFIG] = Config(web=WebConfig(secure_cookies=secure_cookies))
    return make_mocked_request("POST", "/api/v1/logout", headers=headers, app=app)


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "cc.example.org", "Origin": "http://cc.example.org"},
        {"Host": "cc.example.org:80", "Origin": "http://cc.example.org"},  # the default port, spelled or not
        {"Host": "CC.Example.Org", "Origin": "http://cc.example.ORG:80"},
        {"Host": "[::1]:8080", "Origin": "http://[::1]:8080"},
        {"Host": "cc.example.org", "Sec-Fetch-Site": "same-origin"},
        {"Host": "cc.example.org", "Sec-Fetch-Site": "none"},
        {"Host": "cc.example.org"},
        {},
    ],
)
def test_requests_from_our_own_origin_pass_the_origin_check(headers: dict[str, str]) -> None:
    check_same_origin(_post(headers))


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "cc.example.org", "Origin": "http://admin.example.org"},  # a sibling subdomain
        {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8081"},  # another port
        {"Host": "127.0.0.1:8080", "Origin": "http://localhost:8080"},
        {"Host": "cc.example.org", "Origin": "https://cc.example.org"},  # https only behind a declared TLS proxy
        {"Host": "cc.example.org", "Origin": "null"},
        {"Host": "cc.example.org", "Origin": "http://cc.example.org:0x50"},
        {"Origin": "http://cc.example.org"},  # no Host: nothing the Origin could match
        {"Host": "cc.example.org", "Origin": "http://cc.example.org", "Sec-Fetch-Site": "same-site"},
        {"Host": "cc.example.org", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_requests_from_another_origin_are_forbidden(headers: dict[str, str]) -> None:
    with pytest.raises(Forbidden, match="cross-origin request refused"):
        check_same_origin(_post(headers))


def test_behind_a_tls_proxy_both_schemes_of_our_host_are_ours() -> None:
    for origin in ("https://cc.example.org", "http://cc.example.org"):
        check_same_origin(_post({"Host": "cc.example.org", "Origin": origin}, secure_cookies=True))
    with pytest.raises(Forbidden):
        check_same_origin(_post({"Host": "cc.example.org", "Origin": "https://evil.example.org"}, secure_cookies=True))
