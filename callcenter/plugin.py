"""The one shape of every feature package: :class:`Plugin`, called by the composition root in a fixed order.

A feature package (calls, seats, crm_bridge, recordings, ivr_flows, supervisor) has one ``plugin.py`` with one
class that follows this protocol. The composition root (:mod:`callcenter.app`) builds the :class:`Core` first, then
each plugin with the core and the ports it needs of other packages (read interfaces, never their models), and then:

1. ``install(app)`` on each plugin, in the order of :data:`callcenter.app.PLUGIN_ORDER`: the plugin stores its
   services under its own ``web.AppKey``\\ s (declared in its ``keys.py``) and adds its routes. Nothing runs yet.
2. when the engine starts, after the database is open and before the AMI connection and the FastAGI server start,
   ``start()`` on each plugin in the same order: bus subscriptions and background tasks begin here, so nothing
   the first resync publishes is missed;
3. when it stops, after the FastAGI server and the AMI connection stopped, ``stop()`` on each plugin in the reverse
   order, then the database closes.

A plugin that fails to start stops the engine's start (aiohttp reports it); ``stop`` is called on the plugins
that started and on the one that failed (it stops what it did start), so it must not raise, also when
``start`` ran only in part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from callcenter.agi.server import FastAgiServer
    from callcenter.auth.services import AuthService
    from callcenter.bus import Bus
    from callcenter.config import Config
    from callcenter.db import Database
    from callcenter.live import LiveService
    from callcenter.metrics import Metrics
    from callcenter.web.ws import Hub


@dataclass(frozen=True, slots=True)
class Core:
    """What the core gives every feature package: one of each, built by the composition root before any plugin."""

    config: Config
    bus: Bus
    database: Database
    metrics: Metrics
    auth: AuthService
    live: LiveService  # the live model (``live.model``) and the AMI connection (``live.connection``)
    hub: Hub  # the websocket frames to the pages
    agi: FastAgiServer


class Plugin(Protocol):
    """A feature package as the composition root sees it."""

    name: str

    def install(self, app: web.Application) -> None:
        """Stores the package's services under its keys and adds its routes; starts nothing."""

    async def start(self) -> None:
        """Subscribes to the bus and starts the package's background tasks."""

    async def stop(self) -> None:
        """Undoes :meth:`start`: unsubscribes, stops the tasks, flushes what must be kept. Never raises."""
