"""The seats' keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from seats.services import SeatService

SEATS = web.AppKey("seats", SeatService)
