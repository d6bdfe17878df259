"""Reading requests and writing answers in the provider's format."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import rules
from .errors import AUTHENTICATION, NOT_FOUND, SERVER, ApiError, bad_request, error_body
from .jsonio import JSONResponse

JSON_TYPES = ("application/json",)
MAX_KEY_LENGTH = 255


def media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or the provider's 400/415."""
    kind = media_type(request)
    if kind is not None and kind not in JSON_TYPES and not kind.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json (got {kind or 'empty'})", param=None)
    raw = await request.body()
    if not raw.strip():
        raise bad_request("request body is empty; a JSON object is required")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    return rules.refuse_non_object(body)


def account_id(token: str) -> str:
    """The account a token stands for; the token itself is never kept. Interned: every task of
    an account shares one string."""
    return sys.intern("acct_" + hashlib.sha256(token.encode()).hexdigest()[:16])


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def account_of(request: Request) -> str:
    """'Authorization: Bearer <token>'; each token is its own account. 401 otherwise."""
    header = request.headers.get("authorization")
    token = bearer_token(header)
    if token is None:
        reason = "missing Authorization header" if not header else "Authorization must be 'Bearer <token>'"
        raise ApiError(401, f"{reason}: a bearer token is required", type=AUTHENTICATION, param=None)
    return account_id(token)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise bad_request(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", "Idempotency-Key")
    return key


def submitted(task_id: str, *, replayed: bool = False) -> JSONResponse:
    headers = {"idempotency-replayed": "true"} if replayed else None
    return JSONResponse({"code": 200, "data": [{"status": "submitted", "task_id": task_id}]}, headers=headers)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes", param=None)


# -- error handlers -----------------------------------------------------------------------


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers or None)


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
    return JSONResponse(error_body(status, message, kind), status, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}", SERVER), 500)


EXCEPTION_HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
