"""The provider's error body and the exception that carries it.

Body shape (docs/evidence.md, "Error bodies"):
``{"error": {"message": ..., "type": ..., "code": <http status>, "param": <field or null>}}``

One rule each: ``code`` is the HTTP status as an integer (a 409 names its reason in the message;
``--conflict-code reason`` puts it in ``code``, as the idempotency notes write it), and ``param``
is the request field (``image_urls``, never ``image_urls[0]``: the message names the item).
The control plane, which is the fake's own, keeps the whole path (``tasks[0].clips``).
"""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PAYMENT_REQUIRED = "payment_required"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"
BAD_GATEWAY = "bad_gateway"
APIMART = "apimart_error"  # a missing API key, as observed live
CONFLICT = INVALID_REQUEST  # 409s name their reason (idempotency_key_reused, idempotency_in_progress)


class ApiError(Exception):
    """A refusal in the provider's format. Raised by the core, rendered by the shell."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.headers = headers or {}
        self.code = code  # a reason in place of the status, only under --conflict-code reason

    def body(self, *, field_only: bool = False) -> dict[str, Any]:
        """The error body; ``field_only`` (the provider's routes): ``param`` is the request field."""
        body = error_body(self.status, self.message, self.type, field_of(self.param) if field_only else self.param)
        if self.code is not None:
            body["error"]["code"] = self.code
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, param={self.param!r})"


def field_of(param: str | None) -> str | None:
    """The field a parameter path starts at: ``image_urls[0]`` -> ``image_urls``."""
    return param.partition("[")[0] if param and "[" in param[1:] else param


def error_body(status: int, message: str, type: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "code": status, "param": param}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


class StoreUnavailable(ApiError):
    """The state store cannot answer (down, frozen, read-only, full or locked): 503 ``server_error``
    with ``Retry-After``, in the provider's error body. Raised by the stores, rendered like any refusal."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(
            503,
            f"the state store cannot answer ({reason}); retry shortly",
            type=SERVER,
            param=None,
            headers={"Retry-After": str(retry_after)},
        )
        self.reason = reason
