"""The pages people use: agent desktop, supervisor wallboard, QA player, admin, service desk, and the login page.

Every page is a static shell (HTML, CSS and plain JavaScript modules under ``static/``) and is public: the data
behind it comes from the ``/api/v1`` routes, each with its own permission, so a page tells a visitor nothing an
anonymous request to the API would not. Each response carries a strict Content-Security-Policy: scripts and
styles only from this server, no inline script, no plugins, no framing; every caller-controlled text is put in
the DOM as text by the scripts themselves (never as HTML), and the policy is the second wall if one slips.

The chart library is vendored into ``static/vendor/`` by ``scripts/setup.sh`` at install time (it is not in the
repository); the pages work without it, showing tables instead of charts. No request leaves the machine.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Final

from aiohttp import hdrs, web

from callcenter.auth.permissions import public
from callcenter.web.errors import NotFound

STATIC_DIR: Final = Path(__file__).parent / "static"

# The page paths and the file each one serves.
PAGES: Final = {
    "/agent": "agent.html",
    "/supervisor": "supervisor.html",
    "/qa": "qa.html",
    "/admin": "admin.html",
    "/desk": "desk.html",
    "/login": "login.html",
}

# A static asset's name: directories and a file name made of plain characters, none starting with a dot (so no
# "..", no hidden files), with one of the extensions served. Anything else is a 404 before the disk is touched.
_ASSET = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}/){0,3}[A-Za-z0-9_-][A-Za-z0-9_.-]{0,95}")
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
# A host as a browser sends it in the Host header; anything else is left out of the policy.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?")

page_routes = web.RouteTableDef()


def content_security_policy(host: str | None) -> str:
    """The policy of every page. Websockets are named by this server's own host as well as by 'self': older
    browsers do not count ws: and wss: as 'self'."""
    connect = ["'self'"]
    if host and _HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self'",
            "font-src 'self'",
            f"connect-src {' '.join(connect)}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(request: web.Request) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(request.headers.get(hdrs.HOST)),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        # Revalidated on every load (ETag / Last-Modified), so an upgrade never leaves a stale script behind.
        "Cache-Control": "no-cache",
    }


async def _file(request: web.Request, path: Path, content_type: str) -> web.FileResponse:
    if not await asyncio.to_thread(path.is_file):
        raise NotFound("no such file", {"path": request.path[:200]})
    headers = security_headers(request)
    headers[hdrs.CONTENT_TYPE] = content_type
    return web.FileResponse(path, headers=headers)


async def _page(request: web.Request) -> web.FileResponse:
    return await _file(request, STATIC_DIR / PAGES[request.path], "text/html; charset=utf-8")


@page_routes.get("/")
@public
async def index(request: web.Request) -> web.Response:
    # The login page sends a logged-in user on to the page their roles are for.
    raise web.HTTPFound("/login")


@page_routes.get("/login")
@public
async def login_page(request: web.Request) -> web.FileResponse:
    return await _page(request)


@page_routes.get("/agent")
@public
async def agent_page(request: web.Request) -> web.FileResponse:
    return await _page(request)


@page_routes.get("/supervisor")
@public
async def supervisor_page(request: web.Request) -> web.FileResponse:
    return await _page(request)


@page_routes.get("/qa")
@public
async def qa_page(request: web.Request) -> web.FileResponse:
    return await _page(request)


@page_routes.get("/admin")
@public
async def admin_page(request: web.Request) -> web.FileResponse:
    return await _page(request)


@page_routes.get("/desk")
@public
async def desk_page(request: web.Request) -> web.FileResponse:
    return await _page(request)


@page_routes.get("/static/{name:.+}")
@public
async def static_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    suffix = Path(name).suffix.lower()
    if _ASSET.fullmatch(name) is None or suffix not in _TYPES:
        raise NotFound("no such file", {"path": request.path[:200]})
    return await _file(request, STATIC_DIR.joinpath(*name.split("/")), _TYPES[suffix])
