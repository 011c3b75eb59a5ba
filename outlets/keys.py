"""The outlets' keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from outlets.services import OutletService

OUTLETS = web.AppKey("outlets", OutletService)
