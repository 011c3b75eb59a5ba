"""The recordings' keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from recordings.control import RecordingControl
from recordings.evaluations import CallEvaluations
from recordings.outlet_quality import OutletQualitySummary
from recordings.services import RecordingService

RECORDINGS = web.AppKey("recordings", RecordingService)
RECORDING_CONTROL = web.AppKey("recording_control", RecordingControl)
EVALUATIONS = web.AppKey("call_evaluations", CallEvaluations)
OUTLET_QUALITY = web.AppKey("outlet_quality", OutletQualitySummary)
