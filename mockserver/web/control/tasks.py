"""``/tasks``: the fake's tasks with their internals, listed, read, and seeded."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...core.errors import bad_request
from ..http import JSONResponse
from .common import Routes, whole


class Tasks(Routes):
    """List tasks (filtered, ordered, paged), read one, seed one in any state."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/tasks", self.listing, methods=["GET"]),
            Route("/tasks", self.seed, methods=["POST"]),
            Route("/tasks/{task_id}", self.task, methods=["GET"]),
        ]

    async def listing(self, request: Request) -> Response:
        q = request.query_params
        order = q.get("order", "asc")
        if order not in ("asc", "desc"):
            raise bad_request("order must be asc or desc", "order")
        page, total = await self.control.tasks(
            self.account_of(q),
            status=q.get("status"),
            newest_first=order == "desc",
            offset=whole(q, "offset", 0) or 0,
            limit=whole(q, "limit", lowest=1),
        )
        return JSONResponse({"tasks": page, "total": total})

    async def task(self, request: Request) -> Response:
        return JSONResponse(await self.control.task(request.path_params["task_id"]))

    async def seed(self, request: Request) -> Response:
        body = await self.body(request, "SeedTask")
        account = self.account_of(body)
        if account is None:
            raise bad_request("name the account by token or account", "token")
        record = await self.control.seed_task(
            account,
            action=body.get("action", "VIDEO"),
            status=body.get("status", "SUCCESS"),
            progress=body.get("progress"),
            fail_reason=body.get("fail_reason"),
            prompt=body.get("prompt"),
            batch_size=body.get("batch_size", 1),
            video_type=body.get("video_type"),
            speed=body.get("speed"),
            task_seconds=body.get("task_seconds"),
            ended_seconds_ago=body.get("ended_seconds_ago", 0.0),
            expired=body.get("expired", False),
            charged=body.get("charged", False),
            task_id=body.get("id"),
        )
        return JSONResponse({"task_id": record.id, **self.control.internal_task(record)})
