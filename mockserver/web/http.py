"""Reading requests and writing answers in the provider's format."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.responses import Response

from ..core import jsonio, submission
from ..core.errors import NOT_FOUND, SERVER, ApiError, bad_request, error_body
from ..core.jsonio import dumps
from ..service import Accepted, Facts

JOURNAL_FACTS = "mock_journal"  # the key of a request's journal facts in its ASGI scope's state

JSON_TYPES = ("application/json",)


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


def facts_of(request: Request) -> Facts:
    """What this request's journal entry will say (read by ``edge.Edge``): routes and the service add to it."""
    found: Facts = request.scope.setdefault("state", {}).setdefault(JOURNAL_FACTS, {})
    return found


def media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower()


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body's bytes as a JSON object, or the provider's 400 naming what is wrong."""
    if not raw.strip():
        raise bad_request("request body is empty; a JSON object is required")
    try:
        body = jsonio.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    return submission.refuse_non_object(body)


def submitted(accepted: Accepted) -> JSONResponse:
    headers = {"idempotency-replayed": "true"} if accepted.replayed else None
    return JSONResponse({"code": 200, "data": [{"status": "submitted", "task_id": accepted.task_id}]}, headers=headers)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes", param=None)


# -- error handlers -----------------------------------------------------------------------


async def api_error(request: Request, exc: Exception) -> Response:
    """A refusal on the provider's routes: ``param`` names the request field (docs/evidence.md, "error bodies")."""
    return _refusal(request, exc, field_only=True)


async def control_error(request: Request, exc: Exception) -> Response:
    """A refusal on the control plane: ``param`` keeps the whole path into the document."""
    return _refusal(request, exc, field_only=False)


def _refusal(request: Request, exc: Exception, *, field_only: bool) -> Response:
    assert isinstance(exc, ApiError)
    body = exc.body(field_only=field_only)
    facts_of(request)["error"] = body["error"]  # the journal says why a request was refused
    return JSONResponse(body, exc.status, headers=exc.headers or None)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    kind = NOT_FOUND if status == 404 else "invalid_request_error"
    body = error_body(status, message, kind)
    facts_of(request)["error"] = body["error"]
    return JSONResponse(body, status, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}", SERVER), 500)


EXCEPTION_HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
CONTROL_EXCEPTION_HANDLERS = {**EXCEPTION_HANDLERS, ApiError: control_error}
