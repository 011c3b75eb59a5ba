"""API errors: a status, a stable id and details, rendered as {"error": {"id", "message", "details"}}.

Messages are public text: they never carry secrets, stack traces or SQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from pydantic import ValidationError

from callcenter.db import DatabaseUnavailable

log = logging.getLogger("callcenter.web")


class ApiError(Exception):
    status = 400
    error_id = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


class InvalidInput(ApiError):
    status = 400
    error_id = "invalid_input"


class Unauthenticated(ApiError):
    status = 401
    error_id = "unauthenticated"


class Forbidden(ApiError):
    status = 403
    error_id = "forbidden"


class NotFound(ApiError):
    status = 404
    error_id = "not_found"


class Conflict(ApiError):
    status = 409
    error_id = "conflict"


class UnsupportedMediaType(ApiError):
    status = 415
    error_id = "unsupported_media_type"


class TooManyAttempts(ApiError):
    status = 429
    error_id = "too_many_attempts"


class Unavailable(ApiError):
    status = 503
    error_id = "unavailable"


def error_response(status: int, error_id: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    body = {"error": {"id": error_id, "message": message, "details": details or {}}}
    return web.json_response(body, status=status)


def validation_details(exc: ValidationError) -> dict[str, Any]:
    fields = {}
    for item in exc.errors():
        key = ".".join(str(part) for part in item["loc"]) or "body"
        fields[key] = item["msg"]
    return {"fields": fields}


JSON_CONTENT_TYPE = "application/json"


def require_json_body(request: web.Request) -> None:
    """UnsupportedMediaType unless the body is declared as application/json.

    A cross-site page can POST text/plain, form or multipart bodies without a CORS preflight, and SameSite
    cookies still ride along from sibling subdomains and other ports of the same host; application/json it
    cannot send without the preflight, which this server never grants.
    """
    # aiohttp lower-cases the type and drops its parameters (charset); it reports application/octet-stream for
    # a missing or unparsable header, so the message names the header as sent.
    if request.content_type != JSON_CONTENT_TYPE:
        shown = request.headers.get(hdrs.CONTENT_TYPE, "no content type")[:100]
        raise UnsupportedMediaType(
            f"the request body must be {JSON_CONTENT_TYPE} (got: {shown})",
            {"content_type": shown, "expected": JSON_CONTENT_TYPE},
        )


async def read_json(request: web.Request) -> Any:
    """The JSON body of a request: UnsupportedMediaType for another content type, InvalidInput if malformed."""
    require_json_body(request)
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("the request body is not valid JSON") from exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.error_id, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response
    except DatabaseUnavailable:
        log.warning("database unavailable during %s %s", request.method, request.path)
        return error_response(503, "database_unavailable", "the database is unavailable; try again shortly")
    except ValidationError as exc:
        return error_response(400, "invalid_input", "the request is not valid", validation_details(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_id = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        return error_response(exc.status, error_id, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the server log has the details")
