"""HTTP handlers of the calls API: live calls, the expert handoff, and finished call records."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.keys import DATABASE, LIVE
from callcenter.web.errors import NotFound, read_json
from calls.handoff import NOTES_MAX
from calls.keys import CALLBACKS, HANDOFF
from calls.models import CallRecord

call_routes = web.RouteTableDef()


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: str = Field(min_length=1, max_length=40)
    service_record_id: int | None = Field(None, ge=1, le=2**31 - 1)
    customer_id: int | None = Field(None, ge=1, le=2**31 - 1)


class HandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notes: str = Field(min_length=1, max_length=NOTES_MAX)


def _linkedid(request: web.Request) -> str:
    value = request.match_info["linkedid"]
    if not 1 <= len(value) <= 64:
        raise NotFound("no such call", {"linkedid": value[:64]})
    return value


@call_routes.get("/api/v1/calls")
@requires(Permission.CALLS_READ)
async def live_calls(request: web.Request) -> web.Response:
    model = request.config_dict[LIVE].model
    return web.json_response({"items": [asdict(call) for call in model.calls.values()]})


@call_routes.post("/api/v1/calls/{linkedid}/transfer-to-expert")
@requires(Permission.CALLS_TRANSFER_EXPERT)
async def transfer_to_expert(request: web.Request) -> web.Response:
    body = HandoffIn.model_validate(await read_json(request))
    result = await request.config_dict[HANDOFF].transfer_to_expert(
        principal(request), _linkedid(request), body.notes, remote=request.remote
    )
    return web.json_response(result, status=202)


def ivr_path_json(stored: str) -> list[Any]:
    """The stored IVR path for a reader: the engine keeps each step's time as seconds since the epoch (it makes
    one per step of every call); the API shows it as ISO text, as records written before did."""
    steps = json.loads(stored)
    for step in steps:
        if isinstance(step, dict) and isinstance(step.get("at"), int | float):
            step["at"] = datetime.fromtimestamp(step["at"], UTC).isoformat()
    return list(steps)


def record_json(row: CallRecord) -> dict[str, Any]:
    return {
        "linkedid": row.linkedid,
        "direction": row.direction,
        "caller_number": row.caller_number,
        "caller_name": row.caller_name,
        "did": row.did,
        "started_at": row.started_at.isoformat(),
        "ended_at": row.ended_at.isoformat(),
        "outcome": row.outcome,
        "ivr": {
            "flow": row.ivr_flow,
            "outcome": row.ivr_outcome,
            "choice": row.ivr_choice,
            "path": ivr_path_json(row.ivr_path),
        },
        "queues": json.loads(row.queues),
        "segments": json.loads(row.segments),
        "wait_time": row.wait_time,
        "talk_time": row.talk_time,
        "agent": row.agent,
        "expert": row.expert,
        "handoff_notes": row.handoff_notes,
        "recording_ids": json.loads(row.recording_ids),
        "service_record_id": row.service_record_id,
        "source": row.source,
    }


@call_routes.post("/api/v1/callbacks")
@requires(Permission.SERVICE_RECORDS_WRITE)
async def callback(request: web.Request) -> web.Response:
    body = CallbackIn.model_validate(await read_json(request))
    result = await request.config_dict[CALLBACKS].start(
        principal(request),
        body.number,
        service_record_id=body.service_record_id,
        customer_id=body.customer_id,
        remote=request.remote,
    )
    return web.json_response(result, status=202)


@call_routes.get("/api/v1/call-records/{linkedid}")
@requires(Permission.CALLS_READ)
async def call_record(request: web.Request) -> web.Response:
    linkedid = _linkedid(request)
    async with request.config_dict[DATABASE].session() as session:
        row = await session.scalar(select(CallRecord).where(CallRecord.linkedid == linkedid))
        if row is None:
            raise NotFound("no record of that call (yet)", {"linkedid": linkedid})
        return web.json_response(record_json(row))
