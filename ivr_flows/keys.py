"""The flows' keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from ivr_flows.services import FlowsService

FLOWS = web.AppKey("ivr_flows", FlowsService)
