"""Typed keys under which the composition root stores long-lived objects on the aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from callcenter.agi.server import FastAgiServer
    from callcenter.auth.services import AuthService
    from callcenter.bus import Bus
    from callcenter.calls.callbacks import CallbackService
    from callcenter.calls.handoff import HandoffService
    from callcenter.calls.service import CallRecorder
    from callcenter.config import Config
    from callcenter.db import Database
    from callcenter.live import LiveService
    from callcenter.metrics import Metrics
    from callcenter.seats.services import SeatService
    from callcenter.web.ws import Hub
    from crm_bridge.from_calls import CallServiceRecords
    from crm_bridge.outbox import ServiceRecordOutbox
    from crm_bridge.screenpop import ScreenPop
    from crm_bridge.services import CrmService
    from recordings.control import RecordingControl
    from recordings.services import RecordingService

CONFIG: web.AppKey[Config] = web.AppKey("config")
BUS: web.AppKey[Bus] = web.AppKey("bus")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
DATABASE: web.AppKey[Database] = web.AppKey("database")
AGI_SERVER: web.AppKey[FastAgiServer] = web.AppKey("agi_server")
AUTH: web.AppKey[AuthService] = web.AppKey("auth")
LIVE: web.AppKey[LiveService] = web.AppKey("live")
SEATS: web.AppKey[SeatService] = web.AppKey("seats")
CALLS: web.AppKey[CallRecorder] = web.AppKey("calls")
HANDOFF: web.AppKey[HandoffService] = web.AppKey("handoff")
CRM: web.AppKey[CrmService] = web.AppKey("crm")
CRM_OUTBOX: web.AppKey[ServiceRecordOutbox] = web.AppKey("crm_outbox")
HUB: web.AppKey[Hub] = web.AppKey("hub")
RECORDINGS: web.AppKey[RecordingService] = web.AppKey("recordings")
SCREEN_POP: web.AppKey[ScreenPop] = web.AppKey("screen_pop")
CALL_SERVICE_RECORDS: web.AppKey[CallServiceRecords] = web.AppKey("call_service_records")
CALLBACKS: web.AppKey[CallbackService] = web.AppKey("callbacks")
RECORDING_CONTROL: web.AppKey[RecordingControl] = web.AppKey("recording_control")
