"""The CRM's routes and its OpenAPI fragment agree: every route documented with the permission it declares."""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from callcenter.auth.permissions import required_permissions
from crm_bridge.http import crm_routes

_METHODS = {"get", "post", "put", "patch", "delete"}


def _fragment() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(resources.files("crm_bridge").joinpath("openapi.json").read_text("utf-8"))
    return loaded


def _routes() -> dict[tuple[str, str], web.RouteDef]:
    app = web.Application()
    app.add_routes(crm_routes)
    found = {}
    for route in app.router.routes():
        method = route.method.lower()
        if method in _METHODS and route.resource is not None:
            found[(method, route.resource.canonical)] = route
    return found  # type: ignore[return-value]


def test_every_crm_route_is_documented_with_its_permission() -> None:
    paths = _fragment()["paths"]
    assert isinstance(paths, dict)
    documented = {(method, path) for path, item in paths.items() for method in item if method in _METHODS}
    routes = _routes()
    assert set(routes) == documented
    for (method, path), route in routes.items():
        rule = required_permissions(route.handler)
        assert rule is not None
        assert not rule.public
        documented = paths[path][method]["x-permission"]
        # "authenticated": any logged-in user (the desk's due list, the evaluation items' list).
        assert {str(p) for p in rule.permissions} == (set() if documented == "authenticated" else {documented}), path


def test_every_schema_reference_resolves() -> None:
    fragment = _fragment()
    schemas = fragment["components"]["schemas"]  # type: ignore[index]
    text = json.dumps(fragment)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        if ref.startswith("#/components/schemas/"):
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
        else:
            assert ref == "#/components/responses/Error", ref
