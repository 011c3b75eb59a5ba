"""The call features' keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from calls.callbacks import CallbackService
from calls.handoff import HandoffService
from calls.service import CallRecorder

CALLS = web.AppKey("calls", CallRecorder)
HANDOFF = web.AppKey("handoff", HandoffService)
CALLBACKS = web.AppKey("callbacks", CallbackService)
