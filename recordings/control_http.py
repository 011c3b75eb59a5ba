"""HTTP handler of recording control on a live call: the agent on the call starts, stops, pauses, resumes."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.keys import LIVE
from callcenter.web.errors import Conflict, Forbidden, NotFound, read_json
from recordings.control import RecordingControlError
from recordings.keys import RECORDING_CONTROL

recording_control_routes = web.RouteTableDef()


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["start", "stop", "pause", "resume"]
    description: str = Field("", max_length=500)


@recording_control_routes.post("/api/v1/calls/{linkedid}/recording")
@requires(Permission.RECORDINGS_CONTROL)
async def control(request: web.Request) -> web.Response:
    body = ControlIn.model_validate(await read_json(request))
    who = principal(request)
    linkedid = request.match_info["linkedid"][:64]
    if linkedid not in request.config_dict[LIVE].model.calls:
        raise NotFound("no such live call", {"linkedid": linkedid})
    recorder = request.config_dict[RECORDING_CONTROL]
    if not await recorder.on_call(who.user_id, linkedid):
        raise Forbidden("only the agent on the call controls its recording", {"linkedid": linkedid})
    try:
        if body.action == "start":
            rows = [await recorder.record(linkedid, actor=who.username, description=body.description)]
        elif body.action == "stop":
            rows = [await recorder.stop(linkedid, actor=who.username)]
        else:
            rows = await recorder.set_paused(linkedid, body.action == "pause", actor=who.username)
    except RecordingControlError as exc:
        raise Conflict(str(exc), {"linkedid": linkedid, "action": body.action}) from exc
    return web.json_response(
        {"linkedid": linkedid, "action": body.action, "recordings": [row.as_json() for row in rows]}
    )
