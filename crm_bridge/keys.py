"""The CRM's keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from crm_bridge.desk import Desk, ReminderJob
from crm_bridge.from_calls import CallServiceRecords
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.record_queue import RecordQueue
from crm_bridge.screenpop import ScreenPop
from crm_bridge.services import CrmService
from crm_bridge.visits import EvaluationItems, Visits

CRM = web.AppKey("crm", CrmService)
CRM_OUTBOX = web.AppKey("crm_outbox", ServiceRecordOutbox)
SCREEN_POP = web.AppKey("screen_pop", ScreenPop)
CALL_SERVICE_RECORDS = web.AppKey("call_service_records", CallServiceRecords)
DESK = web.AppKey("desk", Desk)
DESK_REMINDERS = web.AppKey("desk_reminders", ReminderJob)
VISITS = web.AppKey("visits", Visits)
EVALUATION_ITEMS = web.AppKey("evaluation_items", EvaluationItems)
RECORD_QUEUE = web.AppKey("record_queue", RecordQueue)
