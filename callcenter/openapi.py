"""Serves the OpenAPI description of the HTTP API, kept true to the routes by a test.

``callcenter/openapi.json`` holds the document and the core's paths; each feature package that serves HTTP keeps
its own paths (and schemas) in an ``openapi.json`` beside its ``http.py``. They are merged here by package name,
so the core never imports a feature package; two packages describing the same path or schema is an error.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from callcenter.auth.permissions import public

openapi_routes = web.RouteTableDef()


# The packages whose openapi.json fragments complete the core's document, in the order they are merged.
FRAGMENT_PACKAGES = ("ivr_flows", "crm_bridge", "outlets", "recordings", "supervisor")


def _read(package: str) -> dict[str, Any] | None:
    try:
        source = resources.files(package).joinpath("openapi.json")
    except ModuleNotFoundError:
        return None
    if not source.is_file():
        return None
    document: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    return document


def merge_fragment(document: dict[str, Any], fragment: dict[str, Any], package: str) -> None:
    """Adds a package's paths and component schemas to ``document``; a name defined twice is refused."""
    for path, item in fragment.get("paths", {}).items():
        if path in document["paths"]:
            raise ValueError(f"{package}/openapi.json describes {path}, already described elsewhere")
        document["paths"][path] = item
    for section, entries in fragment.get("components", {}).items():
        target = document.setdefault("components", {}).setdefault(section, {})
        for name, value in entries.items():
            if name in target:
                raise ValueError(f"{package}/openapi.json defines components.{section}.{name} twice")
            target[name] = value


@cache
def load_openapi() -> dict[str, Any]:
    document = _read("callcenter")
    if document is None:
        raise RuntimeError("callcenter/openapi.json is missing from the installation")
    for package in FRAGMENT_PACKAGES:
        fragment = _read(package)
        if fragment is not None:
            merge_fragment(document, fragment, package)
    return document


@openapi_routes.get("/api/v1/openapi.json")
@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(load_openapi())
