"""Serves the OpenAPI description of the HTTP API (callcenter/openapi.json, kept true to the routes by a test)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from callcenter.auth.permissions import public

openapi_routes = web.RouteTableDef()


@cache
def load_openapi() -> dict[str, Any]:
    text = resources.files("callcenter").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@openapi_routes.get("/api/v1/openapi.json")
@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(load_openapi())
