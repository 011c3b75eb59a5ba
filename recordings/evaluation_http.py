"""HTTP handlers of the call evaluations and the quality summaries (per agent, per outlet): validate, call
CallEvaluations or OutletQualitySummary, serialise.

Writing an evaluation needs ``quality.evaluate`` at the route, and the recording's access rule (recordings.access,
applied by the index: an evaluator must be allowed to play it). Reading one, or the summary, needs
``quality.evaluate`` or ``stats.read``: either is enough, so it is checked here rather than declared.
"""

from __future__ import annotations

from aiohttp import web

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.web.csvexport import csv_response
from callcenter.web.errors import Forbidden, read_json
from recordings.evaluation_schemas import EvaluationIn, SummaryQuery
from recordings.evaluations import CallEvaluations
from recordings.keys import EVALUATIONS, OUTLET_QUALITY
from recordings.outlet_quality import OutletQualitySummary
from recordings.storage import check_recording_id

evaluation_routes = web.RouteTableDef()


class QualityForbidden(Forbidden):
    error_id = "quality_forbidden"

    def __init__(self) -> None:
        super().__init__("quality evaluations are for QA, supervisors and statistics readers")


def _reader(request: web.Request) -> None:
    who = principal(request)
    if not (who.has(Permission.QUALITY_EVALUATE) or who.has(Permission.STATS_READ)):
        raise QualityForbidden()


@evaluation_routes.get("/api/v1/recordings/{recording_id}/evaluation")
@requires()
async def get_evaluation(request: web.Request) -> web.Response:
    recording_id = check_recording_id(request.match_info["recording_id"])
    _reader(request)
    found = await request.config_dict[EVALUATIONS].of_recording(recording_id, principal(request), remote=request.remote)
    return web.json_response(found)


@evaluation_routes.post("/api/v1/recordings/{recording_id}/evaluation")
@requires(Permission.QUALITY_EVALUATE)
async def evaluate(request: web.Request) -> web.Response:
    recording_id = check_recording_id(request.match_info["recording_id"])
    body = EvaluationIn.model_validate(await read_json(request))
    saved = await request.config_dict[EVALUATIONS].evaluate(
        recording_id, principal(request), body, remote=request.remote
    )
    return web.json_response(saved, status=201)


@evaluation_routes.get("/api/v1/quality/agents")
@requires()
async def agents(request: web.Request) -> web.Response:
    _reader(request)
    query = SummaryQuery.model_validate(dict(request.query))
    summary = await request.config_dict[EVALUATIONS].agents(query.start, query.end)
    if query.format == "csv":
        columns, rows = CallEvaluations.agents_csv(summary)
        return csv_response("quality-agents", columns, rows)
    return web.json_response(summary)


@evaluation_routes.get("/api/v1/quality/outlets")
@requires()
async def outlets(request: web.Request) -> web.Response:
    _reader(request)
    query = SummaryQuery.model_validate(dict(request.query))
    summary = await request.config_dict[OUTLET_QUALITY].outlets(query.start, query.end)
    if query.format == "csv":
        columns, rows = OutletQualitySummary.outlets_csv(summary)
        return csv_response("quality-outlets", columns, rows)
    return web.json_response(summary)
