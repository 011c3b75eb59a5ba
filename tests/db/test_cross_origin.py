"""Requests forged by other origins of the same site (another port on 127.0.0.1, a sibling subdomain), where
SameSite=Strict still sends the cookie: only JSON bodies, and cookie-borne state changes only from our origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import COOKIE_NAME, auth_middleware, principal
from callcenter.auth.permissions import requires
from callcenter.auth.services import AuthService
from callcenter.config import Config, WebConfig
from callcenter.keys import AUTH, CONFIG
from callcenter.web.errors import error_middleware, read_json

PASSWORD = "correct horse battery"

routes = web.RouteTableDef()


@routes.post("/api/v1/test/echo")
@requires()
async def echo(request: web.Request) -> web.Response:
    return web.json_response({"user": principal(request).username, "body": await read_json(request)})


@routes.delete("/api/v1/test/echo")
@requires()
async def delete_echo(request: web.Request) -> web.Response:
    return web.json_response({"deleted_by": principal(request).username})


@routes.get("/api/v1/test/echo")
@requires()
async def read_echo(request: web.Request) -> web.Response:
    return web.json_response({"user": principal(request).username})


def make_app(service: AuthService, config: Config | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    if config is not None:
        app[CONFIG] = config
    app.add_routes(auth_routes)
    app.add_routes(routes)
    return app


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(service: AuthService) -> AsyncIterator[Client]:
    await service.create_user("root", PASSWORD, roles=["admin"])
    async with TestClient(TestServer(make_app(service))) as test_client:
        yield test_client


def own_origin(client: Client) -> str:
    return f"http://{client.host}:{client.port}"


async def log_in(client: Client, **kwargs: Any) -> str:
    response = await client.post("/api/v1/login", json={"username": "root", "password": PASSWORD}, **kwargs)
    assert response.status == 200, await response.text()
    token: str = (await response.json())["token"]
    return token


async def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = (await response.json())["error"]
    return body


# content types


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"data": '{"username": "root", "password": "x"}', "headers": {"Content-Type": "text/plain"}}, "text/plain"),
        ({"data": {"username": "root", "password": "x"}}, "application/x-www-form-urlencoded"),
        ({"data": b'{"username": "root"}', "skip_auto_headers": ["Content-Type"]}, "no content type"),
    ],
)
async def test_a_login_body_that_is_not_declared_json_is_415(client: Client, kwargs: Any, named: str) -> None:
    response = await client.post("/api/v1/login", **kwargs)
    assert response.status == 415
    error = await error_of(response)
    assert error["id"] == "unsupported_media_type"
    assert named in error["message"]
    assert error["details"]["expected"] == "application/json"
    assert "Set-Cookie" not in response.headers


async def test_a_cookie_post_with_a_text_plain_body_is_415(client: Client) -> None:
    await log_in(client)
    forged = await client.post(
        "/api/v1/users",
        data='{"username": "mallory", "password": "correct horse battery", "roles": ["admin"]}',
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert forged.status == 415
    assert (await error_of(forged))["details"]["content_type"] == "text/plain;charset=UTF-8"
    listing = await client.get("/api/v1/users")
    assert [user["username"] for user in (await listing.json())["items"]] == ["root"]


async def test_json_with_a_charset_parameter_is_accepted(client: Client) -> None:
    await log_in(client)
    response = await client.post(
        "/api/v1/test/echo", data=b'{"a": 1}', headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert response.status == 200
    assert (await response.json())["body"] == {"a": 1}


# Origin and Sec-Fetch-Site on cookie-borne state changes


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:1"},  # another port of the same host
        {"Origin": "http://evil.127.0.0.1.nip.io"},
        {"Origin": "https://127.0.0.1"},
        {"Origin": "null"},  # sandboxed frames and data: URLs
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_a_cookie_post_from_another_origin_is_403(client: Client, headers: dict[str, str]) -> None:
    await log_in(client)
    forged = await client.post("/api/v1/test/echo", json={"a": 1}, headers=headers)
    assert forged.status == 403
    error = await error_of(forged)
    assert error["id"] == "forbidden"
    assert error["message"].startswith("cross-origin request refused")
    forged_delete = await client.delete("/api/v1/test/echo", headers=headers)
    assert forged_delete.status == 403


async def test_a_cookie_post_from_our_own_origin_is_allowed(client: Client) -> None:
    await log_in(client)
    origin = own_origin(client)
    for headers in (
        {"Origin": origin},
        {"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {},  # older browsers and non-browser clients send neither header
    ):
        response = await client.post("/api/v1/test/echo", json={"a": 1}, headers=headers)
        assert response.status == 200, headers
        assert await response.json() == {"user": "root", "body": {"a": 1}}


async def test_a_forged_logout_does_not_end_the_session(client: Client) -> None:
    await log_in(client)
    forged = await client.post("/api/v1/logout", headers={"Origin": "http://127.0.0.1:1"})
    assert forged.status == 403
    assert (await client.get("/api/v1/me")).status == 200
    assert (await client.post("/api/v1/logout", headers={"Origin": own_origin(client)})).status == 200
    assert (await client.get("/api/v1/me")).status == 401


async def test_a_bearer_request_from_another_origin_is_allowed(client: Client) -> None:
    token = await log_in(client)
    client.session.cookie_jar.clear()
    response = await client.post(
        "/api/v1/test/echo",
        json={"a": 1},
        headers={"Authorization": f"Bearer {token}", "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status == 200
    assert (await response.json())["user"] == "root"


async def test_a_safe_request_from_another_origin_is_not_refused(client: Client) -> None:
    await log_in(client)
    response = await client.get("/api/v1/test/echo", headers={"Origin": "http://127.0.0.1:1"})
    assert response.status == 200


async def test_a_login_from_another_origin_is_403_and_touches_nothing(service: AuthService, client: Client) -> None:
    forged = await client.post(
        "/api/v1/login", json={"username": "root", "password": PASSWORD}, headers={"Origin": "http://127.0.0.1:1"}
    )
    assert forged.status == 403
    assert (await error_of(forged))["id"] == "forbidden"
    assert "Set-Cookie" not in forged.headers
    items, _ = await service.list_audit(action="login")
    assert items == []
    await log_in(client, headers={"Origin": own_origin(client)})
    await log_in(client)  # no Origin: an API client


async def test_behind_a_tls_proxy_the_https_origin_of_our_host_is_ours(service: AuthService) -> None:
    await service.create_user("root", PASSWORD, roles=["admin"])
    config = Config(web=WebConfig(secure_cookies=True))
    async with TestClient(TestServer(make_app(service, config))) as client:
        token = await log_in(client)
        cookie = {"Cookie": f"{COOKIE_NAME}={token}"}  # the jar keeps a Secure cookie away from plain http
        client.session.cookie_jar.clear()
        https = f"https://{client.host}:{client.port}"
        allowed = await client.post("/api/v1/test/echo", json={}, headers={**cookie, "Origin": https})
        assert allowed.status == 200
        other = await client.post("/api/v1/test/echo", json={}, headers={**cookie, "Origin": "https://127.0.0.1:1"})
        assert other.status == 403
