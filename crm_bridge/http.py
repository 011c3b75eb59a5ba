"""HTTP handlers of the CRM API and the service desk's: validate, call a part of the CRM, the outbox or the desk,
serialise. Nothing else happens."""

from __future__ import annotations

from aiohttp import web

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.web.csvexport import csv_response
from callcenter.web.errors import read_json
from crm_bridge.desk import owner_of
from crm_bridge.exceptions import CustomerNotFound, ProductNotFound, ServiceRecordNotFound
from crm_bridge.keys import CRM, CRM_OUTBOX, DESK, EVALUATION_ITEMS, RECORD_QUEUE, VISITS
from crm_bridge.schemas import (
    CustomerIn,
    CustomerPatch,
    CustomerQuery,
    KbQuery,
    ServiceRecordIn,
    ServiceRecordPatch,
    ServiceRecordQuery,
    TransitionIn,
)
from crm_bridge.visit_errors import EvaluationItemNotFound, OwnerForbidden, VisitNotFound
from crm_bridge.visit_schemas import (
    DueQuery,
    EvaluationItemIn,
    EvaluationItemPatch,
    EvaluationItemQuery,
    OverdueQuery,
    VisitQuery,
    VisitResultIn,
)
from crm_bridge.visits import CSV_COLUMNS, Placer

crm_routes = web.RouteTableDef()

# Ids are 32-bit in the tables; a longer number in a path names nothing rather than failing in the database.
_ID_MAX = 2**31 - 1


def _path_id(request: web.Request, name: str) -> int | None:
    value = int(request.match_info[name])
    return value if 1 <= value <= _ID_MAX else None


def _customer_id(request: web.Request) -> int:
    found = _path_id(request, "customer_id")
    if found is None:
        raise CustomerNotFound(0)
    return found


def _record_id(request: web.Request) -> int:
    found = _path_id(request, "record_id")
    if found is None:
        raise ServiceRecordNotFound(0)
    return found


@crm_routes.get("/api/v1/customers")
@requires(Permission.CUSTOMERS_READ)
async def find_customers(request: web.Request) -> web.Response:
    query = CustomerQuery.model_validate(dict(request.query))
    customers = request.config_dict[CRM].customers
    if query.number is not None:
        files = await customers.files_by_number(query.number, limit=query.limit)
        normalized = customers.phone_key(query.number)
        return web.json_response({"items": [item.as_json() for item in files], "normalized": normalized})
    assert query.name is not None
    files = await customers.files_by_name(query.name, match=query.match, limit=query.limit)
    return web.json_response({"items": [item.as_json() for item in files]})


@crm_routes.post("/api/v1/customers")
@requires(Permission.CUSTOMERS_CREATE)
async def create_customer(request: web.Request) -> web.Response:
    body = CustomerIn.model_validate(await read_json(request))
    created = await request.config_dict[CRM].customers.create(
        body, actor=principal(request).username, remote=request.remote
    )
    return web.json_response(created.as_json(), status=201)


@crm_routes.get(r"/api/v1/customers/{customer_id:\d{1,12}}")
@requires(Permission.CUSTOMERS_READ)
async def customer_file(request: web.Request) -> web.Response:
    found = await request.config_dict[CRM].customers.file(_customer_id(request))
    return web.json_response(found.as_json())


@crm_routes.patch(r"/api/v1/customers/{customer_id:\d{1,12}}")
@requires(Permission.CUSTOMERS_MAINTAIN)
async def update_customer(request: web.Request) -> web.Response:
    customer_id = _customer_id(request)
    patch = CustomerPatch.model_validate(await read_json(request))
    updated = await request.config_dict[CRM].customers.update(
        customer_id, patch, actor=principal(request).username, remote=request.remote
    )
    return web.json_response(updated.as_json())


@crm_routes.get("/api/v1/kb")
@requires(Permission.KNOWLEDGE_READ)
async def search_kb(request: web.Request) -> web.Response:
    query = KbQuery.model_validate(dict(request.query))
    found = await request.config_dict[CRM].knowledge.search(query.q, limit=query.limit)
    return web.json_response({"items": [article.as_json() for article in found]})


@crm_routes.get("/api/v1/products/{code}")
@requires(Permission.KNOWLEDGE_READ)
async def product(request: web.Request) -> web.Response:
    found = await request.config_dict[CRM].knowledge.product(request.match_info["code"])
    if found is None:
        raise ProductNotFound()
    return web.json_response(found.as_json())


@crm_routes.post("/api/v1/service-records")
@requires(Permission.SERVICE_RECORDS_WRITE)
async def create_service_record(request: web.Request) -> web.Response:
    body = ServiceRecordIn.model_validate(await read_json(request))
    result = await request.config_dict[CRM_OUTBOX].submit(body, actor=principal(request).username)
    if result.record is None:
        # Journalled, not yet in the database: written (once) when it is back.
        return web.json_response({"queued": True, "idempotency_key": result.key}, status=202)
    return web.json_response(
        {**result.record.as_json(), "created": result.created}, status=201 if result.created else 200
    )


@crm_routes.get("/api/v1/service-records")
@requires(Permission.CUSTOMERS_READ)
async def list_service_records(request: web.Request) -> web.Response:
    params: dict[str, object] = dict(request.query)
    for several in ("type", "status"):
        if several in request.query:
            params[several] = request.query.getall(several)
    query = ServiceRecordQuery.model_validate(params)
    items = await request.config_dict[RECORD_QUEUE].find(query, me=principal(request).user_id)
    return web.json_response({"items": items, "limit": query.limit, "offset": query.offset})


@crm_routes.get(r"/api/v1/service-records/{record_id:\d{1,12}}")
@requires(Permission.CUSTOMERS_READ)
async def service_record(request: web.Request) -> web.Response:
    record, history = await request.config_dict[CRM].records.get(_record_id(request))
    return web.json_response({**record.as_json(), "history": [entry.as_json() for entry in history]})


@crm_routes.patch(r"/api/v1/service-records/{record_id:\d{1,12}}")
@requires(Permission.SERVICE_RECORDS_WRITE)
async def update_service_record(request: web.Request) -> web.Response:
    record_id = _record_id(request)
    patch = ServiceRecordPatch.model_validate(await read_json(request))
    record = await request.config_dict[CRM].records.update(record_id, patch, actor=principal(request).username)
    return web.json_response(record.as_json())


@crm_routes.post(r"/api/v1/service-records/{record_id:\d{1,12}}/transition")
@requires(Permission.SERVICE_RECORDS_WRITE)
async def transition(request: web.Request) -> web.Response:
    record_id = _record_id(request)
    body = TransitionIn.model_validate(await read_json(request))
    record = await request.config_dict[CRM].records.transition(record_id, body, actor=principal(request).username)
    return web.json_response(record.as_json())


# -- the service desk: follow-ups, callback visits, evaluation items ----------------------------------------


def _visit_id(request: web.Request) -> int:
    found = _path_id(request, "visit_id")
    if found is None:
        raise VisitNotFound(0)
    return found


@crm_routes.get("/api/v1/desk/due")
@requires()
async def desk_due(request: web.Request) -> web.Response:
    query = DueQuery.model_validate(dict(request.query))
    who = principal(request)
    if query.owner not in ("me", str(who.user_id)) and not who.has(Permission.DESK_WORK):
        raise OwnerForbidden()
    found = await request.config_dict[DESK].due(owner_of(query.owner, who.user_id), limit=query.limit)
    return web.json_response(found)


@crm_routes.get("/api/v1/desk/overdue")
@requires(Permission.DESK_WORK)
async def desk_overdue(request: web.Request) -> web.Response:
    query = OverdueQuery.model_validate(dict(request.query))
    found = await request.config_dict[DESK].overdue(owner_of(query.owner, 0), limit=query.limit)
    return web.json_response(found)


@crm_routes.get("/api/v1/visits")
@requires(Permission.DESK_WORK)
async def list_visits(request: web.Request) -> web.Response:
    query = VisitQuery.model_validate(dict(request.query))
    visits = request.config_dict[VISITS]
    items, total = await visits.find(query)
    if query.format == "csv":
        return csv_response("visits", CSV_COLUMNS, visits.csv_rows(items))
    return web.json_response({"items": items, "total": total, "limit": query.limit, "offset": query.offset})


@crm_routes.get(r"/api/v1/visits/{visit_id:\d{1,12}}")
@requires(Permission.DESK_WORK)
async def visit(request: web.Request) -> web.Response:
    return web.json_response(await request.config_dict[VISITS].get(_visit_id(request)))


@crm_routes.post(r"/api/v1/visits/{visit_id:\d{1,12}}/place")
@requires(Permission.DESK_WORK)
async def place_visit(request: web.Request) -> web.Response:
    visit_id = _visit_id(request)
    who = principal(request)
    placed = await request.config_dict[VISITS].place(
        visit_id, Placer(who.user_id, who.username, who.extension), remote=request.remote
    )
    return web.json_response(placed, status=202)


@crm_routes.post(r"/api/v1/visits/{visit_id:\d{1,12}}/result")
@requires(Permission.DESK_WORK)
async def visit_result(request: web.Request) -> web.Response:
    visit_id = _visit_id(request)
    body = VisitResultIn.model_validate(await read_json(request))
    stored = await request.config_dict[VISITS].record_result(visit_id, body, actor=principal(request).username)
    return web.json_response(stored, status=201)


@crm_routes.get("/api/v1/evaluation-items")
@requires()
async def evaluation_items(request: web.Request) -> web.Response:
    query = EvaluationItemQuery.model_validate(dict(request.query))
    return web.json_response({"items": await request.config_dict[EVALUATION_ITEMS].find(query)})


@crm_routes.post("/api/v1/evaluation-items")
@requires(Permission.DESK_WORK)
async def create_evaluation_item(request: web.Request) -> web.Response:
    body = EvaluationItemIn.model_validate(await read_json(request))
    return web.json_response(await request.config_dict[EVALUATION_ITEMS].create(body), status=201)


@crm_routes.patch(r"/api/v1/evaluation-items/{item_id:\d{1,12}}")
@requires(Permission.DESK_WORK)
async def update_evaluation_item(request: web.Request) -> web.Response:
    item_id = _path_id(request, "item_id")
    if item_id is None:
        raise EvaluationItemNotFound(0)
    patch = EvaluationItemPatch.model_validate(await read_json(request))
    return web.json_response(await request.config_dict[EVALUATION_ITEMS].update(item_id, patch))
