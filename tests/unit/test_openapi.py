"""The OpenAPI file and the routes agree, and every route declares the permission it needs."""

from __future__ import annotations

from pathlib import Path

from callcenter.app import build_app
from callcenter.auth.permissions import required_permissions
from callcenter.config import load_config
from callcenter.openapi import load_openapi

_METHODS = {"get", "post", "put", "patch", "delete"}


def _routes(tmp_path: Path) -> set[tuple[str, str]]:
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    app = build_app(config)
    found = set()
    for route in app.router.routes():
        method = route.method.lower()
        if method not in _METHODS:
            continue
        found.add((method, route.resource.canonical if route.resource else ""))
    return found


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    documented = {
        (method, path) for path, item in load_openapi()["paths"].items() for method in item if method in _METHODS
    }
    assert _routes(tmp_path) == documented


def test_every_handler_declares_its_permission(tmp_path: Path) -> None:
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    app = build_app(config)
    undeclared = [
        route.resource.canonical
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None and required_permissions(route.handler) is None
    ]
    assert undeclared == []


def test_documented_permission_matches_the_handler(tmp_path: Path) -> None:
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    app = build_app(config)
    paths = load_openapi()["paths"]
    for route in app.router.routes():
        method = route.method.lower()
        if method not in _METHODS or route.resource is None:
            continue
        declared = required_permissions(route.handler)
        documented = paths[route.resource.canonical][method]["x-permission"]
        assert declared is not None
        if documented == "public":
            assert declared.public, route.resource.canonical
        elif documented == "authenticated":
            assert not declared.public, route.resource.canonical
            assert not declared.permissions, route.resource.canonical
        else:
            assert documented in {str(p) for p in declared.permissions}, route.resource.canonical
