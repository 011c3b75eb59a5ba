"""The plugin contract: every feature package is installed, started and stopped the same way, in one order."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from callcenter.app import PLUGIN_ORDER, PLUGINS, _plugins_ctx, build_app
from callcenter.config import load_config
from callcenter.plugin import Plugin


def _app(tmp_path: Path) -> web.Application:
    return build_app(load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)}))


def test_every_feature_is_a_plugin_in_the_fixed_order(tmp_path: Path) -> None:
    plugins = _app(tmp_path)[PLUGINS]
    assert tuple(plugin.name for plugin in plugins) == PLUGIN_ORDER
    for plugin in plugins:
        assert isinstance(plugin.name, str)
        for method in ("install", "start", "stop"):
            assert callable(getattr(plugin, method)), (plugin.name, method)


def test_each_plugin_adds_its_own_routes(tmp_path: Path) -> None:
    paths = {route.resource.canonical for route in _app(tmp_path).router.routes() if route.resource is not None}
    # One route of each plugin, and of the core.
    assert {
        "/api/v1/agents/me",
        "/api/v1/calls/{linkedid}/transfer-to-expert",
        "/api/v1/service-records",
        "/api/v1/recordings",
        "/api/v1/flows",
        "/api/v1/board",
        "/healthz",
    } <= paths


class _Recording:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name = name
        self._log = log
        self._fail_start = fail_start
        self._fail_stop = fail_stop

    def install(self, app: web.Application) -> None:
        self._log.append(f"install {self.name}")

    async def start(self) -> None:
        self._log.append(f"start {self.name}")
        if self._fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self._log.append(f"stop {self.name}")
        if self._fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


async def test_plugins_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    log: list[str] = []
    app = _app(tmp_path)
    plugins: tuple[Plugin, ...] = (_Recording("a", log), _Recording("b", log, fail_stop=True), _Recording("c", log))
    app[PLUGINS] = plugins
    context = _plugins_ctx(app)
    await anext(context)
    assert log == ["start a", "start b", "start c"]
    with pytest.raises(StopAsyncIteration):
        await anext(context)
    # A plugin that fails to stop is logged; the ones before it still stop.
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_a_plugin_that_cannot_start_is_stopped_with_the_ones_started_before_it(tmp_path: Path) -> None:
    log: list[str] = []
    app = _app(tmp_path)
    app[PLUGINS] = (_Recording("a", log), _Recording("b", log, fail_start=True), _Recording("c", log))
    context = _plugins_ctx(app)
    with pytest.raises(RuntimeError, match="b cannot start"):
        await anext(context)
    # b may have started a task or a subscription before it failed: it is stopped too; c never starts.
    assert log == ["start a", "start b", "stop b", "stop a"]
