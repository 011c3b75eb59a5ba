"""The CRM's and the outlets' routes and their OpenAPI fragments agree: every route documented with the permission
it declares."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from aiohttp import web

from callcenter.auth.permissions import required_permissions
from crm_bridge.http import crm_routes
from outlets.http import outlet_routes

_METHODS = {"get", "post", "put", "patch", "delete"}
_PACKAGES = {"crm_bridge": crm_routes, "outlets": outlet_routes}


def _fragment(package: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(resources.files(package).joinpath("openapi.json").read_text("utf-8"))
    return loaded


def _routes(routes: web.RouteTableDef) -> dict[tuple[str, str], web.RouteDef]:
    app = web.Application()
    app.add_routes(routes)
    found = {}
    for route in app.router.routes():
        method = route.method.lower()
        if method in _METHODS and route.resource is not None:
            found[(method, route.resource.canonical)] = route
    return found  # type: ignore[return-value]


@pytest.mark.parametrize("package", sorted(_PACKAGES))
def test_every_route_is_documented_with_its_permission(package: str) -> None:
    paths = _fragment(package)["paths"]
    assert isinstance(paths, dict)
    documented = {(method, path) for path, item in paths.items() for method in item if method in _METHODS}
    routes = _routes(_PACKAGES[package])
    assert set(routes) == documented
    for (method, path), route in routes.items():
        rule = required_permissions(route.handler)
        assert rule is not None
        assert not rule.public
        documented_permission = paths[path][method]["x-permission"]
        if documented_permission == "authenticated":
            # Any logged-in user reaches the handler, which checks what the description says.
            assert not rule.permissions, path
        else:
            assert {str(p) for p in rule.permissions} == {documented_permission}, path


@pytest.mark.parametrize("package", sorted(_PACKAGES))
def test_every_schema_reference_resolves(package: str) -> None:
    fragment = _fragment(package)
    schemas = fragment["components"]["schemas"]  # type: ignore[index]
    text = json.dumps(fragment)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        if ref.startswith("#/components/schemas/"):
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
        else:
            assert ref == "#/components/responses/Error", ref
