"""Typed keys of the core's long-lived objects on the aiohttp application.

Only the core's: each feature package declares its own keys in its ``keys.py`` (``calls.keys.CALLS``,
``crm_bridge.keys.CRM``...), so the core names no feature class. The classes are imported for the type checker
only: the auth middleware and the websocket hub read keys from here, and this module must not import them back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from callcenter.agi.server import FastAgiServer
    from callcenter.auth.services import AuthService
    from callcenter.bus import Bus
    from callcenter.config import Config
    from callcenter.db import Database
    from callcenter.live import LiveService
    from callcenter.metrics import Metrics
    from callcenter.plugin import Core
    from callcenter.web.ws import Hub

CONFIG: web.AppKey[Config] = web.AppKey("config")
BUS: web.AppKey[Bus] = web.AppKey("bus")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
DATABASE: web.AppKey[Database] = web.AppKey("database")
AGI_SERVER: web.AppKey[FastAgiServer] = web.AppKey("agi_server")
AUTH: web.AppKey[AuthService] = web.AppKey("auth")
LIVE: web.AppKey[LiveService] = web.AppKey("live")
HUB: web.AppKey[Hub] = web.AppKey("hub")
CORE: web.AppKey[Core] = web.AppKey("core")
