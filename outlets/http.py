"""HTTP handlers of the outlets' API: validate, call the outlet service, serialise (JSON, or CSV for the lists
that are reports). Nothing else happens here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.web.csvexport import csv_response
from callcenter.web.errors import Forbidden, read_json
from outlets.exceptions import OutletNotFound, SettlementNotFound, WorkOrderNotFound
from outlets.infos import ORDER_COLUMNS, OUTLET_COLUMNS, SETTLEMENT_COLUMNS
from outlets.keys import OUTLETS
from outlets.schemas import (
    CancelIn,
    DispatchIn,
    EvaluationIn,
    EvaluationQuery,
    FeedbackIn,
    OrderQuery,
    OutletIn,
    OutletPatch,
    OutletQuery,
    PreviewQuery,
    RetireIn,
    ReviewIn,
    SettlementQuery,
)
from outlets.services import Subject

outlet_routes = web.RouteTableDef()

# Outlet ids are 32-bit, order and settlement ids 64-bit; a longer number in a path names nothing.
_ID_MAX = 2**31 - 1
_BIG_ID_MAX = 2**63 - 1
# Who may score an outlet and read its scores: the desk, or quality evaluators (QA, supervisors).
EVALUATORS = (Permission.DESK_WORK, Permission.QUALITY_EVALUATE)


def _id(request: web.Request, name: str, highest: int, missing: type[Exception]) -> int:
    value = int(request.match_info[name])
    if not 1 <= value <= highest:
        raise missing(0)
    return value


def _outlet_id(request: web.Request) -> int:
    return _id(request, "outlet_id", _ID_MAX, OutletNotFound)


def _order_id(request: web.Request) -> int:
    return _id(request, "order_id", _BIG_ID_MAX, WorkOrderNotFound)


def _settlement_id(request: web.Request) -> int:
    return _id(request, "settlement_id", _BIG_ID_MAX, SettlementNotFound)


def _page(items: Sequence[Any], limit: int, offset: int) -> web.Response:
    return web.json_response({"items": [item.as_json() for item in items], "limit": limit, "offset": offset})


def _evaluator(request: web.Request) -> str:
    who = principal(request)
    if not any(who.has(permission) for permission in EVALUATORS):
        raise Forbidden(
            "you lack the permission this needs (one of them)", {"missing_one_of": sorted(str(p) for p in EVALUATORS)}
        )
    return who.username


# -- outlets --------------------------------------------------------------------------------------------


@outlet_routes.get("/api/v1/outlets")
@requires(Permission.DESK_WORK)
async def list_outlets(request: web.Request) -> web.Response:
    query = OutletQuery.model_validate(dict(request.query))
    items = await request.config_dict[OUTLETS].outlets(query)
    if query.format == "csv":
        return csv_response("outlets", OUTLET_COLUMNS, (item.as_json() for item in items))
    return _page(items, query.limit, query.offset)


@outlet_routes.post("/api/v1/outlets")
@requires(Permission.OUTLETS_MANAGE)
async def create_outlet(request: web.Request) -> web.Response:
    body = OutletIn.model_validate(await read_json(request))
    created = await request.config_dict[OUTLETS].create_outlet(body, actor=principal(request).username)
    return web.json_response(created.as_json(), status=201)


@outlet_routes.get(r"/api/v1/outlets/{outlet_id:\d{1,12}}")
@requires(Permission.DESK_WORK)
async def outlet(request: web.Request) -> web.Response:
    outlet_id = _outlet_id(request)
    service = request.config_dict[OUTLETS]
    found = await service.outlet(outlet_id)
    history = await service.history(Subject.OUTLET, outlet_id)
    return web.json_response({**found.as_json(), "history": [entry.as_json() for entry in history]})


@outlet_routes.patch(r"/api/v1/outlets/{outlet_id:\d{1,12}}")
@requires(Permission.OUTLETS_MANAGE)
async def update_outlet(request: web.Request) -> web.Response:
    outlet_id = _outlet_id(request)
    patch = OutletPatch.model_validate(await read_json(request))
    updated = await request.config_dict[OUTLETS].update_outlet(outlet_id, patch, actor=principal(request).username)
    return web.json_response(updated.as_json())


@outlet_routes.post(r"/api/v1/outlets/{outlet_id:\d{1,12}}/retire")
@requires(Permission.OUTLETS_MANAGE)
async def retire_outlet(request: web.Request) -> web.Response:
    outlet_id = _outlet_id(request)
    body = RetireIn.model_validate(await read_json(request))
    retired = await request.config_dict[OUTLETS].retire_outlet(
        outlet_id, body.reason, actor=principal(request).username
    )
    return web.json_response(retired.as_json())


@outlet_routes.get(r"/api/v1/outlets/{outlet_id:\d{1,12}}/evaluations")
@requires()
async def list_evaluations(request: web.Request) -> web.Response:
    _evaluator(request)
    outlet_id = _outlet_id(request)
    query = EvaluationQuery.model_validate(dict(request.query))
    items, average = await request.config_dict[OUTLETS].evaluations(outlet_id, query)
    return web.json_response(
        {
            "items": [item.as_json() for item in items],
            "average_score": average,
            "limit": query.limit,
            "offset": query.offset,
        }
    )


@outlet_routes.post(r"/api/v1/outlets/{outlet_id:\d{1,12}}/evaluations")
@requires()
async def evaluate_outlet(request: web.Request) -> web.Response:
    actor = _evaluator(request)
    outlet_id = _outlet_id(request)
    body = EvaluationIn.model_validate(await read_json(request))
    created = await request.config_dict[OUTLETS].evaluate(outlet_id, body, actor=actor)
    return web.json_response(created.as_json(), status=201)


# -- work orders ----------------------------------------------------------------------------------------


@outlet_routes.get("/api/v1/work-orders")
@requires(Permission.DESK_WORK)
async def list_orders(request: web.Request) -> web.Response:
    query = OrderQuery.model_validate(dict(request.query))
    items = await request.config_dict[OUTLETS].orders(query)
    if query.format == "csv":
        return csv_response("work-orders", ORDER_COLUMNS, (item.as_row() for item in items))
    return _page(items, query.limit, query.offset)


@outlet_routes.get("/api/v1/work-orders/preview")
@requires(Permission.DESK_WORK)
async def preview_dispatch(request: web.Request) -> web.Response:
    query = PreviewQuery.model_validate(dict(request.query))
    return web.json_response(await request.config_dict[OUTLETS].preview(query.service_record_id))


@outlet_routes.post("/api/v1/work-orders")
@requires(Permission.OUTLETS_MANAGE)
async def dispatch(request: web.Request) -> web.Response:
    body = DispatchIn.model_validate(await read_json(request))
    who = principal(request)
    order = await request.config_dict[OUTLETS].dispatch(body, actor=who.username, user_id=who.user_id)
    return web.json_response(order.as_json(), status=201)


@outlet_routes.get(r"/api/v1/work-orders/{order_id:\d{1,20}}")
@requires(Permission.DESK_WORK)
async def work_order(request: web.Request) -> web.Response:
    order_id = _order_id(request)
    service = request.config_dict[OUTLETS]
    found = await service.order(order_id)
    history = await service.history(Subject.WORK_ORDER, order_id)
    return web.json_response({**found.as_json(), "history": [entry.as_json() for entry in history]})


@outlet_routes.post(r"/api/v1/work-orders/{order_id:\d{1,20}}/feedback")
@requires(Permission.OUTLETS_MANAGE)
async def register_feedback(request: web.Request) -> web.Response:
    order_id = _order_id(request)
    body = FeedbackIn.model_validate(await read_json(request))
    order = await request.config_dict[OUTLETS].register_feedback(order_id, body, actor=principal(request).username)
    return web.json_response(order.as_json(), status=201)


@outlet_routes.post(r"/api/v1/work-orders/{order_id:\d{1,20}}/cancel")
@requires(Permission.OUTLETS_MANAGE)
async def cancel_order(request: web.Request) -> web.Response:
    order_id = _order_id(request)
    body = CancelIn.model_validate(await read_json(request))
    order = await request.config_dict[OUTLETS].cancel(order_id, body, actor=principal(request).username)
    return web.json_response(order.as_json())


# -- fee settlements ------------------------------------------------------------------------------------


@outlet_routes.get("/api/v1/fee-settlements")
@requires(Permission.FEES_REVIEW)
async def list_settlements(request: web.Request) -> web.Response:
    query = SettlementQuery.model_validate(dict(request.query))
    items = await request.config_dict[OUTLETS].settlements(query)
    if query.format == "csv":
        return csv_response("fee-settlements", SETTLEMENT_COLUMNS, (item.as_json() for item in items))
    return _page(items, query.limit, query.offset)


@outlet_routes.get(r"/api/v1/fee-settlements/{settlement_id:\d{1,20}}")
@requires(Permission.FEES_REVIEW)
async def settlement(request: web.Request) -> web.Response:
    settlement_id = _settlement_id(request)
    service = request.config_dict[OUTLETS]
    found = await service.settlement(settlement_id)
    history = await service.history(Subject.SETTLEMENT, settlement_id)
    return web.json_response({**found.as_json(), "history": [entry.as_json() for entry in history]})


@outlet_routes.post(r"/api/v1/fee-settlements/{settlement_id:\d{1,20}}/review")
@requires(Permission.FEES_REVIEW)
async def review_settlement(request: web.Request) -> web.Response:
    settlement_id = _settlement_id(request)
    body = ReviewIn.model_validate(await read_json(request))
    reviewed = await request.config_dict[OUTLETS].review(settlement_id, body, actor=principal(request).username)
    return web.json_response(reviewed.as_json())
