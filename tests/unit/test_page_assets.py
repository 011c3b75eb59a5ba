"""The page shells and their assets: public, with a strict Content-Security-Policy, and nothing else served."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callcenter.auth.middleware import auth_middleware
from callcenter.web.errors import error_middleware
from callcenter.web.pages import PAGES, STATIC_DIR, content_security_policy, page_routes

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app.add_routes(page_routes)
    async with TestClient(TestServer(app)) as started:
        yield started


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_each_page_is_public_html_under_a_strict_policy(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    directives = dict(item.strip().split(" ", 1) for item in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.text()
    # No inline script anywhere: every <script> names a file of this server.
    assert body.count("<script") == body.count('<script type="module" src="/static/js/')


async def test_every_page_script_is_served_as_javascript(client: Client) -> None:
    for script in sorted((STATIC_DIR / "js").glob("*.js")):
        response = await client.get(f"/static/js/{script.name}")
        assert response.status == 200, script.name
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    css = await client.get("/static/css/app.css")
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pages.py",
        "/static/%2e%2e/pages.py",
        "/static/js/%2e%2e/%2e%2e/pages.py",
        "/static/.hidden.js",
        "/static/vendor/.gitignore",
        "/static/agent.html",
        "/static/js/missing.js",
        "/static/js\\..\\x.js",
    ],
)
async def test_nothing_outside_the_assets_is_served(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert (await response.json())["error"]["id"] == "not_found"


async def test_the_root_sends_the_browser_to_the_login_page(client: Client) -> None:
    response = await client.get("/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login"


def test_the_policy_names_this_host_for_websockets_and_leaves_odd_hosts_out() -> None:
    assert "connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;" in content_security_policy("127.0.0.1:8080")
    assert "connect-src 'self';" in content_security_policy("evil.example; script-src *")
    assert "connect-src 'self';" in content_security_policy(None)


def test_no_page_script_writes_html() -> None:
    # Caller-controlled text reaches the DOM as text only; these are the ways a script could parse it as HTML.
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")
    for script in sorted((STATIC_DIR / "js").glob("*.js")):
        text = script.read_text(encoding="utf-8")
        assert [sink for sink in sinks if sink in text] == [], script.name
