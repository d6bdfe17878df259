"""``/__mock__/`` routes: health, reset, clock, a task's internal view.

Control requests carry no provider token; the plane can be switched off with
``--no-control`` for shared deployments.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import lifecycle
from ..errors import NOT_FOUND, ApiError, bad_request

if TYPE_CHECKING:
    from ..app import Context


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name} must be a number", name)
    return float(value)


def control_app(ctx: Context) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def reset(request: Request) -> Response:
        body = await _json_object(request)
        account = body.get("account")
        if account is not None and not isinstance(account, str):
            raise bad_request("account must be a string", "account")
        ctx.store.reset(account)
        return JSONResponse({"reset": account or "all"})

    def clock_state() -> dict[str, Any]:
        return {"now": ctx.clock.now(), "frozen": bool(getattr(ctx.clock, "frozen", False))}

    async def clock(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(clock_state())
        body = await _json_object(request)
        advance, when = _number(body, "advance"), _number(body, "set")
        freeze = body.get("freeze")
        try:
            if freeze is True and hasattr(ctx.clock, "freeze"):
                ctx.clock.freeze()
            elif freeze is False and hasattr(ctx.clock, "unfreeze"):
                ctx.clock.unfreeze()
            if advance is not None:
                ctx.clock.advance(advance)  # type: ignore[attr-defined]
            if when is not None:
                ctx.clock.set(when)  # type: ignore[attr-defined]
        except AttributeError:
            raise ApiError(409, "this server's clock cannot be moved", param=None) from None
        except ValueError as exc:
            raise bad_request(str(exc), "advance" if advance is not None else "set") from None
        return JSONResponse(clock_state())

    async def task(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        record = ctx.store.get_task(task_id)
        if record is None:
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        view = lifecycle.view(record, ctx.clock.now())
        return JSONResponse(
            {
                "record": record.to_dict(),
                "view": {
                    "status": view.status.value,
                    "progress": view.progress,
                    "started_at": view.started_at,
                    "finished_at": view.finished_at,
                },
            }
        )

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
            Route("/clock", clock, methods=["GET", "POST"]),
            Route("/tasks/{task_id}", task, methods=["GET"]),
        ]
    )
